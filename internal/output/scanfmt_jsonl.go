package output

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"portolan/internal/scan"
)

// appendResultJSON appends r as one JSON object, byte for byte what
// json.Marshal(r) gives (Result's MarshalJSON escapes <, > and &), without
// reflection: a
// full-port scan streams tens of thousands of these from the engine's
// goroutine, and encoding/json cost a quarter of the scan's CPU.
func appendResultJSON(b []byte, r scan.Result) []byte {
	return (*jsonText)(nil).appendResult(b, r)
}

// jsonText keeps the text of the last address and time written: a scan's
// results come in runs from one host at one instant of the engine's clock,
// and formatting them again per line was a fifth of the writer's time.
type jsonText struct {
	addr     netip.Addr
	addrText []byte
	time     time.Time
	timeText []byte
}

// appendResult is appendResultJSON; t may be nil.
func (t *jsonText) appendResult(b []byte, r scan.Result) []byte {
	b = append(b, `{"addr":"`...)
	switch {
	case t == nil:
		b = r.Addr.AppendTo(b)
	case r.Addr == t.addr && t.addrText != nil:
		b = append(b, t.addrText...)
	default:
		t.addr, t.addrText = r.Addr, r.Addr.AppendTo(t.addrText[:0])
		b = append(b, t.addrText...)
	}
	b = append(b, `","port":`...)
	b = strconv.AppendUint(b, uint64(r.Port), 10)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto.String())
	b = append(b, `,"state":`...)
	b = appendJSONString(b, r.State.String())
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, r.Reason)
	b = append(b, `,"rtt_ms":`...)
	b = appendJSONFloat(b, float64(r.RTT.Round(time.Microsecond))/float64(time.Millisecond))
	if r.Service != "" {
		b = append(b, `,"service":`...)
		b = appendJSONString(b, r.Service)
	}
	if r.Banner != "" {
		b = append(b, `,"banner":`...)
		b = appendJSONString(b, r.Banner)
		v := scan.ParseVersion(r.Service, r.Banner)
		for _, f := range [...]struct{ key, val string }{{`,"product":`, v.Product}, {`,"version":`, v.Version}, {`,"extrainfo":`, v.Extra}} {
			if f.val != "" {
				b = append(b, f.key...)
				b = appendJSONString(b, f.val)
			}
		}
	}
	if !r.Time.IsZero() {
		b = append(b, `,"time":"`...)
		switch {
		case t == nil:
			b = r.Time.AppendFormat(b, time.RFC3339Nano)
		case r.Time.Equal(t.time) && r.Time.Location() == t.time.Location() && t.timeText != nil:
			b = append(b, t.timeText...)
		default:
			t.time, t.timeText = r.Time, r.Time.AppendFormat(t.timeText[:0], time.RFC3339Nano)
			b = append(b, t.timeText...)
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendJSONFloat formats f as encoding/json does.
func appendJSONFloat(b []byte, f float64) []byte {
	abs := f
	if abs < 0 {
		abs = -abs
	}
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		out, _ := json.Marshal(f)
		return append(b, out...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// appendJSONString quotes s; plain printable ASCII is copied, anything else
// goes through encoding/json so escaping stays exactly its own.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&', c >= utf8.RuneSelf:
			out, _ := json.Marshal(s)
			return append(b, out...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// masscan reports open (and with --show closed, closed) ports, and banners
// in records of their own. portMerge joins them into one result per port.
type portMerge struct {
	name    string
	results map[portKey]*scan.Result
	order   []portKey
}

type portKey struct {
	addr  netip.Addr
	port  portspec.Port
	proto portspec.Proto
}

func (m *portMerge) get(k portKey, when time.Time) *scan.Result {
	if m.results == nil {
		m.results = map[portKey]*scan.Result{}
	}
	r, ok := m.results[k]
	if !ok {
		r = &scan.Result{Addr: k.addr, Port: k.port, Proto: k.proto, Service: registry.PortName(k.port, k.proto)}
		m.results[k] = r
		m.order = append(m.order, k)
	}
	if r.Time.IsZero() || (!when.IsZero() && when.Before(r.Time)) {
		r.Time = when
	}
	return r
}

// status records a port's state.
func (m *portMerge) status(k portKey, when time.Time, status, reason string) error {
	st, err := scan.ParseState(status)
	if err != nil {
		return err
	}
	r := m.get(k, when)
	r.State, r.Reason = st, reason
	return nil
}

// banner records what a port said. masscan gives several per port (an
// HTTP response and its title, say); the first that is not a title is the
// banner, as portolan's own grabber keeps the greeting.
func (m *portMerge) banner(k portKey, when time.Time, service, text string) {
	r := m.get(k, when)
	if r.State == scan.Unknown {
		r.State, r.Reason = scan.Open, scan.ReasonSynAck // a banner came back: it is open
	}
	if service == "title" || r.Banner != "" {
		return
	}
	r.Banner = unescape(text)
	if service != "" && service != "unknown" {
		r.Service = service
	}
}

func (m *portMerge) scan(format Format, line int) (*Scan, error) {
	s := &Scan{}
	for _, k := range m.order {
		r := m.results[k]
		if r.State == scan.Unknown {
			return nil, errorf(m.name, line, "port %d/%s of %s has no state", k.port, k.proto, k.addr)
		}
		s.Results = append(s.Results, *r)
	}
	s.Info.Command = "masscan"
	s.Info.Prober = "syn"
	if err := finish(m.name, s, options{Imported: m.name, Format: format}); err != nil {
		return nil, err
	}
	return s, nil
}

// unescape undoes masscan's \xNN escapes of bytes outside printable ASCII.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseKey(ip, proto string, port int) (portKey, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return portKey{}, err
	}
	pr, err := portspec.ParseProto(proto)
	if err != nil {
		return portKey{}, err
	}
	if port < 0 || port > 65535 {
		return portKey{}, fmt.Errorf("port %d out of range 0-65535", port)
	}
	return portKey{a.Unmap(), portspec.Port(port), pr}, nil
}

func parseUnix(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, fmt.Errorf("timestamp %q: not a unix time", s)
	}
	return time.Unix(n, 0), nil
}

// masscanRecord is one object of masscan's -oJ array.
type masscanRecord struct {
	IP        string      `json:"ip"`
	Timestamp json.Number `json:"timestamp"`
	Ports     []struct {
		Port    *int   `json:"port"`
		Proto   string `json:"proto"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Service *struct {
			Name   string `json:"name"`
			Banner string `json:"banner"`
		} `json:"service"`
	} `json:"ports"`
}

// parseMasscanJSON reads masscan's -oJ output: an array of records, one
// per line. masscan 1.0 wrote a comma after the last record; that is
// accepted.
func parseMasscanJSON(name string, data []byte) (*Scan, error) {
	m := &portMerge{name: name}
	data = dropTrailingComma(data)
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n")) }
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	jsonErr := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return errorf(name, lineAt(se.Offset), "%v", err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errorf(name, lineAt(int64(len(data))), "%v", io.ErrUnexpectedEOF)
		}
		return errorf(name, lineAt(dec.InputOffset()), "%v", err)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errorf(name, 1, "want a JSON array of masscan records")
	}
	for dec.More() {
		// The record starts past the separator after the previous one.
		off := dec.InputOffset()
		for off < int64(len(data)) && strings.IndexByte(" \t\r\n,", data[off]) >= 0 {
			off++
		}
		at := lineAt(off)
		var rec masscanRecord
		if err := dec.Decode(&rec); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, errorf(name, at, "%v", err) // te.Offset counts from the record
			}
			return nil, jsonErr(err)
		}
		if rec.IP == "" {
			return nil, errorf(name, at, "record without \"ip\"")
		}
		when, err := parseUnix(rec.Timestamp.String())
		if err != nil {
			return nil, errorf(name, at, "%v", err)
		}
		for _, p := range rec.Ports {
			if p.Port == nil {
				return nil, errorf(name, at, "port without a number")
			}
			k, err := parseKey(rec.IP, p.Proto, *p.Port)
			if err != nil {
				return nil, errorf(name, at, "%v", err)
			}
			switch {
			case p.Service != nil:
				m.banner(k, when, p.Service.Name, p.Service.Banner)
			case p.Status != "":
				if err := m.status(k, when, p.Status, p.Reason); err != nil {
					return nil, errorf(name, at, "%v", err)
				}
			default:
				return nil, errorf(name, at, "port %d has neither a status nor a service", *p.Port)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonErr(err)
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return nil, errorf(name, lineAt(dec.InputOffset()), "text after the array")
	}
	return m.scan(MasscanJSON, lineAt(int64(len(data))))
}

// parseMasscanList reads masscan's -oL output:
//
//	#masscan
//	open tcp 80 198.18.0.2 1700000000
//	banner tcp 80 198.18.0.2 1700000000 http HTTP/1.0 200 OK\x0d\x0a...
//	# end
func parseMasscanList(name string, data []byte) (*Scan, error) {
	m := &portMerge{name: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, " ", 7)
		if len(f) < 5 {
			return nil, errorf(name, n, "want \"STATE PROTO PORT ADDR TIME\", got %q", line)
		}
		port, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, errorf(name, n, "port %q: not a number", f[2])
		}
		k, err := parseKey(f[3], f[1], port)
		if err != nil {
			return nil, errorf(name, n, "%v", err)
		}
		when, err := parseUnix(f[4])
		if err != nil {
			return nil, errorf(name, n, "%v", err)
		}
		switch f[0] {
		case "banner":
			if len(f) < 6 {
				return nil, errorf(name, n, "banner without a service name")
			}
			text := ""
			if len(f) == 7 {
				text = f[6]
			}
			m.banner(k, when, f[5], text)
		default:
			if len(f) != 5 {
				return nil, errorf(name, n, "want \"STATE PROTO PORT ADDR TIME\", got %q", line)
			}
			if err := m.status(k, when, f[0], ""); err != nil {
				return nil, errorf(name, n, "%v", err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errorf(name, n+1, "%v", err)
	}
	return m.scan(MasscanList, n)
}

// dropTrailingComma blanks the comma masscan 1.0 wrote after the last
// record of its array, keeping every byte's line.
func dropTrailingComma(data []byte) []byte {
	t := bytes.TrimRight(data, " \t\r\n")
	if !bytes.HasSuffix(t, []byte("]")) {
		return data
	}
	u := bytes.TrimRight(t[:len(t)-1], " \t\r\n")
	if !bytes.HasSuffix(u, []byte(",")) {
		return data
	}
	out := bytes.Clone(data)
	out[len(u)-1] = ' '
	return out
}

package scan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"portolan/internal/portspec"
)

// State is what a probe learned about a port, in nmap's vocabulary.
type State uint8

// The port states. The zero value is Unknown: not probed (yet).
const (
	Unknown        State = iota
	Open                 // a service accepts connections
	Closed               // the host answered that nothing listens
	Filtered             // no answer, or an ICMP error: something in the way
	OpenFiltered         // no answer where no answer is also what open looks like (UDP)
	Unfiltered           // reachable, open or closed unknown (ACK scans)
	ClosedFiltered       // closed or filtered, cannot tell (IP ID idle scans)
)

var stateNames = [...]string{
	Unknown:        "unknown",
	Open:           "open",
	Closed:         "closed",
	Filtered:       "filtered",
	OpenFiltered:   "open|filtered",
	Unfiltered:     "unfiltered",
	ClosedFiltered: "closed|filtered",
}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState reads a state name as String writes it.
func ParseState(text string) (State, error) {
	for i, n := range stateNames {
		if n == text {
			return State(i), nil
		}
	}
	return Unknown, fmt.Errorf("unknown port state %q (want open, closed, filtered, open|filtered, unfiltered or closed|filtered)", text)
}

// MarshalText writes the state name, so JSON shows "open", not 1.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Reasons say why a port has its state; the names are nmap's, so its XML
// and people used to it read them unchanged.
const (
	ReasonSynAck          = "syn-ack"          // open: the handshake completed
	ReasonConnRefused     = "conn-refused"     // closed: connect got RST
	ReasonReset           = "reset"            // closed: RST seen directly (raw scans)
	ReasonNoResponse      = "no-response"      // filtered: nothing came back, after retries
	ReasonHostTimeout     = "host-timeout"     // filtered: given up, the host answered neither the scan nor discovery (Scanner.HostDownAfter)
	ReasonHostUnreach     = "host-unreach"     // filtered: ICMP host unreachable
	ReasonNetUnreach      = "net-unreach"      // filtered: ICMP network unreachable or no route
	ReasonAdminProhibited = "admin-prohibited" // filtered: ICMP administratively prohibited, or a local firewall
	ReasonEchoReply       = "echo-reply"       // host up: it answered an ICMP echo (discovery)
	ReasonTimestampReply  = "timestamp-reply"  // host up: it answered an ICMP timestamp request (discovery)
	ReasonUDPResponse     = "udp-response"     // open: a UDP datagram came back
	ReasonPortUnreach     = "port-unreach"     // closed: ICMP port unreachable (UDP); filtered for a SYN probe, as in nmap
	ReasonProtoUnreach    = "proto-unreach"    // filtered: ICMP protocol unreachable
	ReasonNetProhibited   = "net-prohibited"   // filtered: ICMP network administratively prohibited
	ReasonHostProhibited  = "host-prohibited"  // filtered: ICMP host administratively prohibited
	ReasonTimeExceeded    = "time-exceeded"    // filtered: ICMP time exceeded on the way
)

// Result is the outcome for one port of one address. It is a plain value
// that renderers and the store take as is.
type Result struct {
	Addr    netip.Addr     `json:"addr"`
	Port    portspec.Port  `json:"port"`
	Proto   portspec.Proto `json:"proto"`
	State   State          `json:"state"`
	Reason  string         `json:"reason"`
	RTT     time.Duration  `json:"-"` // in JSON as rtt_ms
	Service string         `json:"service,omitempty"`
	Banner  string         `json:"banner,omitempty"`
	Time    time.Time      `json:"time,omitzero"` // when the verdict came
	// Pos is the position in the permuted sequence. Results at or above a
	// checkpoint may be reported again after a resume; key on Addr, Port and
	// Proto to keep one per port.
	Pos uint64 `json:"-"`
}

// resultJSON is Result with RTT as fractional milliseconds, the unit people
// and nmap's XML use.
type resultJSON struct {
	Addr    netip.Addr     `json:"addr"`
	Port    portspec.Port  `json:"port"`
	Proto   portspec.Proto `json:"proto"`
	State   State          `json:"state"`
	Reason  string         `json:"reason"`
	RTTms   float64        `json:"rtt_ms"`
	Service string         `json:"service,omitempty"`
	Banner  string         `json:"banner,omitempty"`
	Version                // what the banner says: product, version, extrainfo
	Time    time.Time      `json:"time,omitzero"`
}

// MarshalJSON writes the result with rtt_ms in milliseconds (microsecond precision).
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{
		Addr: r.Addr, Port: r.Port, Proto: r.Proto, State: r.State, Reason: r.Reason,
		RTTms:   float64(r.RTT.Round(time.Microsecond)) / float64(time.Millisecond),
		Service: r.Service, Banner: r.Banner, Version: ParseVersion(r.Service, r.Banner), Time: r.Time,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{
		Addr: j.Addr, Port: j.Port, Proto: j.Proto, State: j.State, Reason: j.Reason,
		RTT:     time.Duration(j.RTTms * float64(time.Millisecond)).Round(time.Microsecond),
		Service: j.Service, Banner: j.Banner, Time: j.Time,
	}
	return nil
}

package watch

import (
	"net/netip"
	"time"

	"portolan/internal/portspec"
)

// Kind says what a captured packet was.
type Kind uint8

// The kinds of attempt the capture rules select.
const (
	KindSYN  Kind = iota + 1 // a TCP SYN without ACK: a connection attempt
	KindFIN                  // FIN alone: a FIN scan
	KindNULL                 // no flags: a NULL scan
	KindXmas                 // FIN, PSH and URG: an Xmas scan
	KindOdd                  // another flag mix without SYN, ACK or RST
	KindUDP                  // the first datagram of a UDP flow
	KindEcho                 // an ICMP or ICMPv6 echo request (a ping); no protocol or port
)

var kindNames = [...]string{KindSYN: "syn", KindFIN: "fin", KindNULL: "null", KindXmas: "xmas", KindOdd: "odd", KindUDP: "udp", KindEcho: "echo"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// OddFlags reports whether k is a probe no TCP stack sends on its own
// (FIN, NULL, Xmas and other SYN-less, ACK-less flag mixes).
func (k Kind) OddFlags() bool { return k >= KindFIN && k <= KindOdd }

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n != "" && n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return &ParseError{Input: string(b), What: "kind", Msg: "want syn, fin, null, xmas, odd, udp or echo"}
}

// Attempt is one captured connection attempt.
type Attempt struct {
	Time    time.Time      `json:"time"`
	Src     netip.Addr     `json:"src"`
	SrcPort uint16         `json:"src_port"`
	Dst     netip.Addr     `json:"dst"`
	Proto   portspec.Proto `json:"proto,omitzero"` // zero for an echo request
	Port    portspec.Port  `json:"port"`
	Kind    Kind           `json:"kind"`
	Flags   uint8          `json:"tcp_flags,omitempty"` // TCP flags byte as sent
}

// ScanKind names what a detection saw.
type ScanKind string

// The patterns the detector knows.
const (
	Vertical   ScanKind = "vertical"   // many ports on one address
	Horizontal ScanKind = "horizontal" // one port on many addresses
	Slow       ScanKind = "slow"       // many address and port pairs over the long window
	OddProbe   ScanKind = "odd-flags"  // FIN, NULL, Xmas probes
)

// Detection is a source crossing a threshold.
type Detection struct {
	Time time.Time `json:"time"`
	// Source is the address, or for IPv6 the prefix (see
	// Thresholds.Prefix6), the detection and the ban apply to.
	Source netip.Prefix `json:"source"`
	Kind   ScanKind     `json:"kind"`
	// Score is the highest of the source's counts divided by their
	// thresholds; it is at least 1 at a detection.
	Score float64 `json:"score"`
	// Ports and Hosts are the distinct ports (on the busiest local
	// address) and the distinct local addresses (on the busiest port)
	// the source touched within Window; Pairs the distinct address and
	// port pairs within SlowWindow; Odd the odd-flag probes within Window.
	Ports int `json:"ports"`
	Hosts int `json:"hosts"`
	Pairs int `json:"pairs"`
	Odd   int `json:"odd"`
	// Offence counts this source's detections within Thresholds.Forget,
	// this one included: 1 the first time.
	Offence int `json:"offence"`
	// Trigger is the attempt that crossed the threshold.
	Trigger Attempt `json:"trigger"`
}

// Event is one record of the watch log and the store: an attempt, a
// detection, or a block decision.
type Event struct {
	Type string `json:"type"` // "attempt", "detection" or "block"
	Attempt
	// Detection fields (Type "detection" and "block").
	Source  netip.Prefix `json:"source,omitzero"`
	Scan    ScanKind     `json:"scan,omitempty"`
	Score   float64      `json:"score,omitempty"`
	Offence int          `json:"offence,omitempty"`
	// Block fields.
	Ban    time.Duration `json:"ban_ns,omitempty"` // how long the source is banned; 0 with Action other than "blocked"
	Action string        `json:"action,omitempty"` // "blocked", "dry-run", "never-block: REASON", "error: ..."
}

// The event types.
const (
	TypeAttempt   = "attempt"
	TypeDetection = "detection"
	TypeBlock     = "block"
)

// AttemptEvent wraps a as an Event.
func AttemptEvent(a Attempt) Event { return Event{Type: TypeAttempt, Attempt: a} }

// DetectionEvent wraps d as an Event; its attempt fields are the trigger.
func DetectionEvent(d Detection) Event {
	return Event{Type: TypeDetection, Attempt: d.Trigger, Source: d.Source, Scan: d.Kind, Score: d.Score, Offence: d.Offence}
}

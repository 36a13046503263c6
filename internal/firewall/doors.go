package firewall

import (
	"fmt"
	"net/netip"
	"time"

	"portolan/internal/portspec"
)

// Doors are the knock daemon's part of portolan's table: a chain of their
// own (DoorChain), hooked at input just before the chain Apply writes, and
// sets named knock_*, which Apply and the rule model leave alone (Reset
// removes them with the table).
//
//	ct state established,related accept
//	ip saddr . meta l4proto . th dport @knock_open_v4 accept
//	ip6 saddr . meta l4proto . th dport @knock_open_v6 accept
//	meta l4proto . th dport @knock_protect drop
//	meta l4proto . th dport @knock_watch log prefix P group G queue-threshold 1 drop
//
// An element of knock_open_v4/v6 carries a kernel timeout, so a port
// opened for a source closes on time whether or not the daemon still
// runs. An accept here ends only this chain: under a drop policy the
// protected ports must also be allowed by a rule (`portolan firewall allow
// 22/tcp`), which the door then narrows to the sources it opened for.
type Doors struct {
	// Protect lists the ports dropped unless opened for the source.
	Protect []DoorPort
	// Watch lists the knock and SPA ports: their packets are logged to
	// the NFLOG group Group with queue threshold 1, and dropped.
	Watch  []DoorPort
	Group  uint16
	Prefix string // the log prefix of the watch rule
	// NoLog drops the watched packets without logging them, for a daemon
	// that captures them with AF_PACKET (which sees packets before
	// netfilter) where NFLOG is missing: a log rule would not even load.
	NoLog bool
}

// DoorPort is a port with its protocol.
type DoorPort struct {
	Proto portspec.Proto
	Port  portspec.Port
}

// DoorHolder is a source a door is open for, on one port, until Expires.
type DoorHolder struct {
	Src     netip.Addr
	Port    DoorPort
	Expires time.Time
}

// DoorChain is the name of the doors' chain in table inet portolan.
const DoorChain = "knock"

const (
	doorOpen4   = "knock_open_v4"
	doorOpen6   = "knock_open_v6"
	doorProtect = "knock_protect"
	doorWatch   = "knock_watch"
	// doorPriority runs the doors' chain before the input chain (filter, 0).
	doorPriority = -5
)

// SSHDoor says what the knock doors do to new SSH connections like p; ok
// is false when no door protects p's port. The doors' chain comes before
// the rules: a client whose SSH port a door protects gets in only while
// the door is open for it, whatever the rules say; and since an accept of
// the door only ends the doors' chain, the rules must accept it too.
func SSHDoor(p Packet, protected []DoorPort, holders []DoorHolder, now time.Time) (note string, ok bool) {
	port := DoorPort{Proto: p.Proto, Port: p.Port}
	found := false
	for _, d := range protected {
		found = found || d == port
	}
	if !found {
		return "", false
	}
	src := p.Src.Unmap().WithZone("")
	var until time.Time
	for _, h := range holders {
		if h.Port == port && h.Src.Unmap() == src && h.Expires.After(until) {
			until = h.Expires
		}
	}
	if until.After(now) {
		return fmt.Sprintf("a knock door protects %d/%v: it is open for %s until %s, then new SSH connections from it need a knock or SPA request first",
			p.Port, p.Proto, src, until.Format(time.RFC3339)), true
	}
	return fmt.Sprintf("a knock door protects %d/%v and is closed for %s: new SSH connections from it need a knock or SPA request first (open sessions stay up)",
		p.Port, p.Proto, src), true
}

// Package scandiff compares stored scans: what changed between two of them
// (hosts that appeared or vanished, ports opened or closed, other state
// changes, services, versions and banners that changed), and when each
// port of a host was seen in each state across many (Timeline).
//
// A diff streams both scans host by host in the store's order (address,
// protocol, port), so two scans of millions of ports are compared in
// memory of a host at a time. Its notion of a change is ndiff's: ports in
// the states most of a scan shares (closed, filtered) are compared as
// counts per host, as nmap collapses them into "Not shown" lines; every
// other port is compared one by one.
package scandiff

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"net/netip"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// Kind is what changed.
type Kind string

// The kinds of change.
const (
	HostAppeared Kind = "host-appeared" // answered in B, not in A (down there, or not scanned)
	HostVanished Kind = "host-vanished" // answered in A, not in B
	HostHidden   Kind = "hidden-counts" // the counts of closed and filtered ports differ
	PortAdded    Kind = "port-added"    // open in B, not in A
	PortRemoved  Kind = "port-removed"  // open in A, not in B
	PortState    Kind = "state"         // another change of state involving a port not closed or filtered
	PortService  Kind = "service"       // same state; service name, product, version or banner differ
)

// Port is what one scan says about one port. The zero State (Unknown)
// means the scan has no result for it.
type Port struct {
	State   scan.State   `json:"state"`
	Reason  string       `json:"reason,omitempty"`
	Service string       `json:"service,omitempty"`
	Version scan.Version `json:"version,omitzero"`
	Banner  string       `json:"banner,omitempty"`
}

// PortChange is a port whose state or service differs between A and B.
type PortChange struct {
	Addr  netip.Addr     `json:"addr"`
	Port  portspec.Port  `json:"port"`
	Proto portspec.Proto `json:"proto"`
	Kind  Kind           `json:"kind"`
	// Fields names what differs for a PortService change: "service",
	// "version", "banner".
	Fields []string `json:"fields,omitempty"`
	A      Port     `json:"a"`
	B      Port     `json:"b"`
}

// Hidden counts a host's ports in the collapsed states.
type Hidden struct {
	Closed   int `json:"closed"`
	Filtered int `json:"filtered"`
}

// HostChange is a host that appeared, vanished, or whose collapsed port
// counts changed.
type HostChange struct {
	Addr netip.Addr `json:"addr"`
	Kind Kind       `json:"kind"`
	// Open is how many ports are open on the side the host is up in
	// (appeared: B, vanished: A).
	Open int    `json:"open"`
	A    Hidden `json:"a"`
	B    Hidden `json:"b"`
}

// Summary counts the changes by kind.
type Summary struct {
	HostsAppeared int `json:"hosts_appeared"`
	HostsVanished int `json:"hosts_vanished"`
	HostsHidden   int `json:"hosts_hidden_counts"`
	PortsAdded    int `json:"ports_added"`
	PortsRemoved  int `json:"ports_removed"`
	StateChanges  int `json:"state_changes"`
	ServiceChange int `json:"service_changes"`
	// HostsCompared and PortsCompared say how much was looked at.
	HostsCompared int `json:"hosts_compared"`
	PortsCompared int `json:"ports_compared"`
}

// ScanRef names one side of a diff.
type ScanRef struct {
	ID      int64     `json:"id"`
	Started time.Time `json:"started,omitzero"`
	Targets string    `json:"targets,omitempty"`
	Ports   string    `json:"ports,omitempty"`
}

// Diff is what changed from scan A to scan B, hosts and ports in address,
// protocol and port order.
type Diff struct {
	A       ScanRef      `json:"a"`
	B       ScanRef      `json:"b"`
	Summary Summary      `json:"summary"`
	Hosts   []HostChange `json:"hosts"`
	Ports   []PortChange `json:"ports"`
}

// Changed reports whether anything differs.
func (d *Diff) Changed() bool { return len(d.Hosts) > 0 || len(d.Ports) > 0 }

// Side is one scan to compare: its description and its results in the
// store's order (address, then protocol name, then port), as
// store.ResultsSeq yields them.
type Side struct {
	Ref     ScanRef
	Results iter.Seq2[scan.Result, error]
	// Version says what a result's service is, when a scan knows more than
	// its banner says (an imported nmap -sV scan). Nil means
	// scan.ParseVersion of the service and banner.
	Version func(scan.Result) scan.Version
}

// Compare returns what changed from a to b. Each side is read once, in a
// goroutine of its own, a host at a time.
func Compare(ctx context.Context, a, b Side) (*Diff, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ha, hb := hosts(ctx, a), hosts(ctx, b)
	d := &Diff{A: a.Ref, B: b.Ref, Hosts: []HostChange{}, Ports: []PortChange{}}
	var x, y hostResults
	var okx, oky bool
	nextA := func() error { x, okx = <-ha; return x.err }
	nextB := func() error { y, oky = <-hb; return y.err }
	if err := nextA(); err != nil {
		return nil, err
	}
	if err := nextB(); err != nil {
		return nil, err
	}
	for okx || oky {
		var c int
		switch {
		case !oky:
			c = -1
		case !okx:
			c = 1
		default:
			c = x.addr.Compare(y.addr)
		}
		switch {
		case c < 0:
			d.host(x, hostResults{addr: x.addr}, a, b)
			if err := nextA(); err != nil {
				return nil, err
			}
		case c > 0:
			d.host(hostResults{addr: y.addr}, y, a, b)
			if err := nextB(); err != nil {
				return nil, err
			}
		default:
			d.host(x, y, a, b)
			if err := nextA(); err != nil {
				return nil, err
			}
			if err := nextB(); err != nil {
				return nil, err
			}
		}
	}
	return d, ctx.Err()
}

// hostResults are the results of one address, in protocol and port order.
type hostResults struct {
	addr    netip.Addr
	results []scan.Result
	err     error
}

// hosts groups a side's results by address on a channel. A read error
// arrives as the last item.
func hosts(ctx context.Context, s Side) <-chan hostResults {
	ch := make(chan hostResults, 64)
	go func() {
		defer close(ch)
		send := func(h hostResults) bool {
			select {
			case ch <- h:
				return true
			case <-ctx.Done():
				return false
			}
		}
		var cur hostResults
		for r, err := range s.Results {
			if err != nil {
				send(hostResults{err: fmt.Errorf("read scan %d: %w", s.Ref.ID, err)})
				return
			}
			if len(cur.results) > 0 && r.Addr != cur.addr {
				if !send(cur) {
					return
				}
				cur = hostResults{results: make([]scan.Result, 0, len(cur.results))}
			}
			cur.addr = r.Addr
			cur.results = append(cur.results, r)
		}
		if len(cur.results) > 0 {
			send(cur)
		}
	}()
	return ch
}

// collapsed reports whether ports in state s are compared as counts.
func collapsed(s scan.State) bool { return s == scan.Closed || s == scan.Filtered }

// answered reports whether a host with this port is up: something came
// back from it.
func answered(r scan.Result) bool {
	switch r.State {
	case scan.Open, scan.Closed, scan.Unfiltered:
		return true
	}
	return false
}

func portOf(s Side, r scan.Result) Port {
	p := Port{State: r.State, Reason: r.Reason, Service: r.Service, Banner: r.Banner}
	if s.Version != nil {
		p.Version = s.Version(r)
	} else {
		p.Version = scan.ParseVersion(r.Service, r.Banner)
	}
	return p
}

// host compares one address's results in a and b (either may be empty).
func (d *Diff) host(x, y hostResults, a, b Side) {
	d.Summary.HostsCompared++
	var upA, upB bool
	var hidA, hidB Hidden
	var openA, openB int
	count := func(r scan.Result, up *bool, h *Hidden, open *int, listed bool) {
		*up = *up || answered(r)
		switch {
		case r.State == scan.Open:
			(*open)++
		case listed:
		case r.State == scan.Closed:
			h.Closed++
		case r.State == scan.Filtered:
			h.Filtered++
		}
	}
	first := len(d.Ports)
	i, j := 0, 0
	for i < len(x.results) || j < len(y.results) {
		var c int
		switch {
		case j == len(y.results):
			c = -1
		case i == len(x.results):
			c = 1
		default:
			c = comparePort(x.results[i], y.results[j])
		}
		var ra, rb scan.Result
		switch {
		case c < 0:
			ra = x.results[i]
			i++
		case c > 0:
			rb = y.results[j]
			j++
		default:
			ra, rb = x.results[i], y.results[j]
			i++
			j++
		}
		d.Summary.PortsCompared++
		pc, changed := comparePorts(ra, rb, a, b)
		// A port listed as changed is not counted again among the
		// collapsed ones: ndiff's "Not shown" counts leave listed ports out.
		if ra.State != scan.Unknown {
			count(ra, &upA, &hidA, &openA, changed)
		}
		if rb.State != scan.Unknown {
			count(rb, &upB, &hidB, &openB, changed)
		}
		if changed {
			d.Ports = append(d.Ports, pc)
			switch pc.Kind {
			case PortAdded:
				d.Summary.PortsAdded++
			case PortRemoved:
				d.Summary.PortsRemoved++
			case PortState:
				d.Summary.StateChanges++
			case PortService:
				d.Summary.ServiceChange++
			}
		}
	}
	addr := cmp.Or(x.addr, y.addr)
	for k := first; k < len(d.Ports); k++ {
		d.Ports[k].Addr = addr
	}
	switch {
	case upB && !upA:
		d.Hosts = append(d.Hosts, HostChange{Addr: addr, Kind: HostAppeared, Open: openB, A: hidA, B: hidB})
		d.Summary.HostsAppeared++
	case upA && !upB:
		d.Hosts = append(d.Hosts, HostChange{Addr: addr, Kind: HostVanished, Open: openA, A: hidA, B: hidB})
		d.Summary.HostsVanished++
	case upA && upB && hidA != hidB:
		d.Hosts = append(d.Hosts, HostChange{Addr: addr, Kind: HostHidden, Open: openB, A: hidA, B: hidB})
		d.Summary.HostsHidden++
	}
}

// comparePort orders results of one address as the store does: protocol
// name, then port.
func comparePort(a, b scan.Result) int {
	if c := strings.Compare(a.Proto.String(), b.Proto.String()); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// comparePorts returns the change from ra to rb, one of which may be the
// zero Result (no result in that scan).
func comparePorts(ra, rb scan.Result, a, b Side) (PortChange, bool) {
	sa, sb := ra.State, rb.State
	// Most ports of a scan are closed or filtered in both: settle them
	// before building anything.
	if (collapsed(sa) || sa == scan.Unknown) && (collapsed(sb) || sb == scan.Unknown) {
		return PortChange{}, false
	}
	if sa == sb && ra.Service == rb.Service && ra.Banner == rb.Banner && a.Version == nil && b.Version == nil {
		return PortChange{}, false // the same banner says the same version
	}
	pc := PortChange{Port: max(ra.Port, rb.Port), Proto: ra.Proto}
	if sa == scan.Unknown {
		pc.Proto = rb.Proto
	}
	if sa != scan.Unknown {
		pc.A = portOf(a, ra)
	}
	if sb != scan.Unknown {
		pc.B = portOf(b, rb)
	}
	if sa != sb {
		switch {
		case sb == scan.Open:
			pc.Kind = PortAdded
		case sa == scan.Open:
			pc.Kind = PortRemoved
		default:
			pc.Kind = PortState
		}
		return pc, true
	}
	if pc.A.Service != pc.B.Service {
		pc.Fields = append(pc.Fields, "service")
	}
	if pc.A.Version != pc.B.Version {
		pc.Fields = append(pc.Fields, "version")
	}
	if pc.A.Banner != pc.B.Banner {
		pc.Fields = append(pc.Fields, "banner")
	}
	if len(pc.Fields) == 0 {
		return pc, false
	}
	pc.Kind = PortService
	return pc, true
}

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
	"portolan/internal/registry"
	"portolan/internal/scan"
	"portolan/internal/store"
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
	ID      int64     `json:"id"`             // 0 for a named scan's shards merged
	Name    string    `json:"name,omitempty"` // NAME@RUN of a named scan's shards merged
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

// Side is one scan to compare: its description and its results a host at
// a time in the store's order (address, then protocol name, then port), as
// store.ScanHosts yields them. FromResults makes one from results.
type Side struct {
	Ref   ScanRef
	Hosts iter.Seq2[*store.HostPorts, error]
	// Version says what a result's service is, when a scan knows more than
	// its banner says (an imported nmap -sV scan). Nil means
	// scan.ParseVersion of the service and banner.
	Version func(scan.Result) scan.Version
}

// FromResults is a Side reading results in the store's order.
func FromResults(ref ScanRef, results iter.Seq2[scan.Result, error]) Side {
	return Side{Ref: ref, Hosts: func(yield func(*store.HostPorts, error) bool) {
		var h store.HostPorts
		flush := func() bool {
			if len(h.Ports) == 0 {
				return true
			}
			ok := yield(&h, nil)
			h.Ports, h.Rows = h.Ports[:0], h.Rows[:0]
			return ok
		}
		for r, err := range results {
			if err != nil {
				yield(nil, err)
				return
			}
			if r.Addr != h.Addr && !flush() {
				return
			}
			h.Addr = r.Addr
			h.Ports = append(h.Ports, store.PortState{Port: r.Port, Proto: r.Proto, State: r.State, Reason: r.Reason, Row: int32(len(h.Rows))})
			h.Rows = append(h.Rows, r)
		}
		flush()
	}}
}

// Compare returns what changed from a to b. Each side is read once, in a
// goroutine of its own, in batches of hosts.
func Compare(ctx context.Context, a, b Side) (*Diff, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ca, cb := newCursor(ctx, a), newCursor(ctx, b)
	d := &Diff{A: a.Ref, B: b.Ref, Hosts: []HostChange{}, Ports: []PortChange{}}
	if err := ca.next(); err != nil {
		return nil, err
	}
	if err := cb.next(); err != nil {
		return nil, err
	}
	for ca.ok || cb.ok {
		var c int
		switch {
		case !cb.ok:
			c = -1
		case !ca.ok:
			c = 1
		default:
			c = ca.addr().Compare(cb.addr())
		}
		switch {
		case c < 0:
			d.host(ca.addr(), ca, nil, a, b)
			if err := ca.next(); err != nil {
				return nil, err
			}
		case c > 0:
			d.host(cb.addr(), nil, cb, a, b)
			if err := cb.next(); err != nil {
				return nil, err
			}
		default:
			d.host(ca.addr(), ca, cb, a, b)
			if err := ca.next(); err != nil {
				return nil, err
			}
			if err := cb.next(); err != nil {
				return nil, err
			}
		}
	}
	return d, ctx.Err()
}

// batchHosts is how many hosts go from a reader to the comparison at a
// time: a channel operation per host cost more than comparing one.
const batchHosts = 256

// batch is the results of some hosts, copied out of the reader's buffers.
type batch struct {
	hosts []hostSpan
	ports []store.PortState
	rows  []scan.Result
	err   error
}

// hostSpan locates one host's ports and rows in its batch.
type hostSpan struct {
	addr           netip.Addr
	p0, p1, r0, r1 int
}

// cursor walks the hosts of one side, batch by batch; used batches go
// back to the reader to be filled again.
type cursor struct {
	in   chan *batch
	free chan *batch
	b    *batch
	i    int
	ok   bool
}

func newCursor(ctx context.Context, s Side) *cursor {
	c := &cursor{in: make(chan *batch, 4), free: make(chan *batch, 6), i: -1}
	go func() {
		defer close(c.in)
		get := func() *batch {
			select {
			case b := <-c.free:
				b.hosts, b.ports, b.rows = b.hosts[:0], b.ports[:0], b.rows[:0]
				return b
			default:
				return &batch{}
			}
		}
		send := func(b *batch) bool {
			select {
			case c.in <- b:
				return true
			case <-ctx.Done():
				return false
			}
		}
		cur := get()
		for h, err := range s.Hosts {
			if err != nil {
				cur.err = fmt.Errorf("read scan %d: %w", s.Ref.ID, err)
				send(cur)
				return
			}
			sp := hostSpan{addr: h.Addr, p0: len(cur.ports), r0: len(cur.rows)}
			cur.ports = append(cur.ports, h.Ports...)
			cur.rows = append(cur.rows, h.Rows...)
			sp.p1, sp.r1 = len(cur.ports), len(cur.rows)
			cur.hosts = append(cur.hosts, sp)
			if len(cur.hosts) == batchHosts {
				if !send(cur) {
					return
				}
				cur = get()
			}
		}
		if len(cur.hosts) > 0 {
			send(cur)
		}
	}()
	return c
}

// next moves to the next host; ok is false after the last.
func (c *cursor) next() error {
	c.i++
	for c.b == nil || c.i >= len(c.b.hosts) {
		if c.b != nil {
			select {
			case c.free <- c.b:
			default:
			}
		}
		b, more := <-c.in
		if !more {
			c.b, c.ok = nil, false
			return nil
		}
		if b.err != nil {
			c.ok = false
			return b.err
		}
		c.b, c.i = b, 0
	}
	c.ok = true
	return nil
}

func (c *cursor) addr() netip.Addr { return c.b.hosts[c.i].addr }

// ports returns the current host's ports and rows.
func (c *cursor) ports() ([]store.PortState, []scan.Result) {
	if c == nil {
		return nil, nil
	}
	h := c.b.hosts[c.i]
	return c.b.ports[h.p0:h.p1], c.b.rows[h.r0:h.r1]
}

// collapsed reports whether ports in state s are compared as counts.
func collapsed(s scan.State) bool { return s == scan.Closed || s == scan.Filtered }

// answered reports whether a host with this port is up: something came
// back from it.
func answered(st scan.State) bool {
	switch st {
	case scan.Open, scan.Closed, scan.Unfiltered:
		return true
	}
	return false
}

func portOf(s Side, r scan.Result) Port {
	if r.Service == groupService {
		r.Service = registry.PortName(r.Port, r.Proto)
	}
	p := Port{State: r.State, Reason: r.Reason, Service: r.Service, Banner: r.Banner}
	if s.Version != nil {
		p.Version = s.Version(r)
	} else {
		p.Version = scan.ParseVersion(r.Service, r.Banner)
	}
	return p
}

// host compares one address's ports in a and b (either cursor may be nil:
// the host is not in that scan).
func (d *Diff) host(addr netip.Addr, x, y *cursor, a, b Side) {
	d.Summary.HostsCompared++
	pa, rowsA := x.ports()
	pb, rowsB := y.ports()
	var upA, upB bool
	var hidA, hidB Hidden
	var openA, openB int
	count := func(st scan.State, up *bool, h *Hidden, open *int, listed bool) {
		*up = *up || answered(st)
		switch {
		case st == scan.Open:
			(*open)++
		case listed:
		case st == scan.Closed:
			h.Closed++
		case st == scan.Filtered:
			h.Filtered++
		}
	}
	i, j := 0, 0
	for i < len(pa) || j < len(pb) {
		var c int
		switch {
		case j == len(pb):
			c = -1
		case i == len(pa):
			c = 1
		default:
			c = store.ComparePortState(pa[i], pb[j])
		}
		var sa, sb *store.PortState
		switch {
		case c < 0:
			sa = &pa[i]
			i++
		case c > 0:
			sb = &pb[j]
			j++
		default:
			sa, sb = &pa[i], &pb[j]
			i++
			j++
		}
		d.Summary.PortsCompared++
		var pc PortChange
		changed := false
		if !quiet(sa) || !quiet(sb) {
			var ra, rb scan.Result
			if sa != nil {
				ra = resultOf(addr, *sa, rowsA)
			}
			if sb != nil {
				rb = resultOf(addr, *sb, rowsB)
			}
			pc, changed = comparePorts(ra, rb, a, b)
		}
		// A port listed as changed is not counted again among the
		// collapsed ones: ndiff's "Not shown" counts leave listed ports out.
		if sa != nil {
			count(sa.State, &upA, &hidA, &openA, changed)
		}
		if sb != nil {
			count(sb.State, &upB, &hidB, &openB, changed)
		}
		if changed {
			pc.Addr = addr
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

// quiet reports whether a port is missing or closed or filtered: a pair of
// such is no change to list (most ports of a scan).
func quiet(ps *store.PortState) bool { return ps == nil || collapsed(ps.State) }

// resultOf is the result of a port: its row, or for a grouped port what
// the group holds. The service name of a grouped port is needed only when
// the port is reported, and comparePorts asks only then.
func resultOf(addr netip.Addr, ps store.PortState, rows []scan.Result) scan.Result {
	if ps.Row >= 0 {
		return rows[ps.Row]
	}
	return scan.Result{Addr: addr, Port: ps.Port, Proto: ps.Proto, State: ps.State, Reason: ps.Reason, Service: groupService}
}

// groupService marks a grouped port's service name as the registry's, to
// be looked up when the port is reported.
const groupService = "\x00registry"

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

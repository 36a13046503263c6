package scandiff

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// res builds a TCP result; service is the registry's unless given.
func res(addr string, port portspec.Port, st scan.State, banner string) scan.Result {
	r := scan.Result{Addr: netip.MustParseAddr(addr), Port: port, Proto: portspec.TCP, State: st,
		Service: registry.PortName(port, portspec.TCP), Banner: banner}
	switch st {
	case scan.Open:
		r.Reason = scan.ReasonSynAck
	case scan.Closed:
		r.Reason = scan.ReasonConnRefused
	case scan.Filtered:
		r.Reason = scan.ReasonNoResponse
	}
	return r
}

// side sorts rs in the store's order and serves them as a Side.
func side(id int64, rs []scan.Result) Side {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b scan.Result) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return comparePort(a, b)
	})
	return FromResults(ScanRef{ID: id}, func(yield func(scan.Result, error) bool) {
		for _, r := range rs {
			if !yield(r, nil) {
				return
			}
		}
	})
}

// closedHost is ports lo..hi of addr, all closed.
func closedHost(addr string, lo, hi portspec.Port) []scan.Result {
	var rs []scan.Result
	for p := lo; p <= hi; p++ {
		rs = append(rs, res(addr, p, scan.Closed, ""))
	}
	return rs
}

// with replaces the results of rs for the same port with r.
func with(rs []scan.Result, rr ...scan.Result) []scan.Result {
	rs = slices.Clone(rs)
	for _, r := range rr {
		i := slices.IndexFunc(rs, func(x scan.Result) bool { return x.Addr == r.Addr && x.Port == r.Port && x.Proto == r.Proto })
		if i < 0 {
			rs = append(rs, r)
		} else {
			rs[i] = r
		}
	}
	return rs
}

func TestCompare(t *testing.T) {
	const h = "198.18.0.1"
	base := closedHost(h, 1, 30)
	tests := []struct {
		name  string
		a, b  []scan.Result
		hosts []HostChange
		ports []PortChange
	}{
		{name: "same", a: with(base, res(h, 22, scan.Open, "SSH-2.0-OpenSSH_9.2p1")), b: with(base, res(h, 22, scan.Open, "SSH-2.0-OpenSSH_9.2p1"))},
		{name: "empty"},
		{
			name: "port added", a: base, b: with(base, res(h, 22, scan.Open, "")),
			ports: []PortChange{{Port: 22, Kind: PortAdded, A: Port{State: scan.Closed, Reason: "conn-refused", Service: "ssh"},
				B: Port{State: scan.Open, Reason: "syn-ack", Service: "ssh"}}},
		},
		{
			name: "port removed to filtered", a: with(base, res(h, 22, scan.Open, "")), b: with(base, res(h, 22, scan.Filtered, "")),
			ports: []PortChange{{Port: 22, Kind: PortRemoved, A: Port{State: scan.Open, Reason: "syn-ack", Service: "ssh"},
				B: Port{State: scan.Filtered, Reason: "no-response", Service: "ssh"}}},
		},
		{
			name: "port not scanned again", a: with(base, res(h, 443, scan.Open, "")), b: base,
			ports: []PortChange{{Port: 443, Kind: PortRemoved, A: Port{State: scan.Open, Reason: "syn-ack", Service: "https"}}},
		},
		{
			name: "other state", a: with(base, res(h, 53, scan.Filtered, "")), b: with(base, func() scan.Result {
				r := res(h, 53, scan.OpenFiltered, "")
				r.Reason = scan.ReasonNoResponse
				return r
			}()),
			ports: []PortChange{{Port: 53, Kind: PortState, A: Port{State: scan.Filtered, Reason: "no-response", Service: "domain"},
				B: Port{State: scan.OpenFiltered, Reason: "no-response", Service: "domain"}}},
		},
		{
			name: "banner and version", a: with(base, res(h, 22, scan.Open, "SSH-2.0-OpenSSH_9.2p1")), b: with(base, res(h, 22, scan.Open, "SSH-2.0-OpenSSH_9.6p1")),
			ports: []PortChange{{Port: 22, Kind: PortService, Fields: []string{"version", "banner"},
				A: Port{State: scan.Open, Reason: "syn-ack", Service: "ssh", Version: scan.Version{Product: "OpenSSH", Version: "9.2p1"}, Banner: "SSH-2.0-OpenSSH_9.2p1"},
				B: Port{State: scan.Open, Reason: "syn-ack", Service: "ssh", Version: scan.Version{Product: "OpenSSH", Version: "9.6p1"}, Banner: "SSH-2.0-OpenSSH_9.6p1"}}},
		},
		{
			name: "service name", a: with(base, res(h, 8080, scan.Open, "")), b: with(base, func() scan.Result {
				r := res(h, 8080, scan.Open, "")
				r.Service = "http"
				return r
			}()),
			ports: []PortChange{{Port: 8080, Kind: PortService, Fields: []string{"service"},
				A: Port{State: scan.Open, Reason: "syn-ack", Service: "http-alt"}, B: Port{State: scan.Open, Reason: "syn-ack", Service: "http"}}},
		},
		{
			name: "host appeared", a: nil, b: with(base, res(h, 80, scan.Open, "")),
			hosts: []HostChange{{Addr: netip.MustParseAddr(h), Kind: HostAppeared, Open: 1, B: Hidden{Closed: 30}}},
			ports: []PortChange{{Port: 80, Kind: PortAdded, B: Port{State: scan.Open, Reason: "syn-ack", Service: "http"}}},
		},
		{
			name: "host vanished to filtered", a: []scan.Result{res(h, 1, scan.Closed, "")}, b: []scan.Result{res(h, 1, scan.Filtered, "")},
			hosts: []HostChange{{Addr: netip.MustParseAddr(h), Kind: HostVanished, A: Hidden{Closed: 1}, B: Hidden{Filtered: 1}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Compare(context.Background(), side(1, tt.a), side(2, tt.b))
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.ports {
				tt.ports[i].Addr, tt.ports[i].Proto = netip.MustParseAddr(h), portspec.TCP
			}
			want := &Diff{A: ScanRef{ID: 1}, B: ScanRef{ID: 2}, Hosts: tt.hosts, Ports: tt.ports}
			if want.Hosts == nil {
				want.Hosts = []HostChange{}
			}
			if want.Ports == nil {
				want.Ports = []PortChange{}
			}
			d.Summary = Summary{}
			if diff := cmp.Diff(want, d, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Compare: (-want +got)\n%s", diff)
			}
			if d.Changed() != (len(tt.hosts)+len(tt.ports) > 0) {
				t.Errorf("Changed() = %v", d.Changed())
			}
		})
	}
}

// TestCompareInterleaved checks the merge of hosts that only one side has,
// in both orders, IPv4 before IPv6, and a summary that counts each kind.
func TestCompareInterleaved(t *testing.T) {
	a := slices.Concat(
		closedHost("198.18.0.1", 1, 3), with(closedHost("198.18.0.3", 1, 3), res("198.18.0.3", 2, scan.Open, "")),
		closedHost("fd00::1", 1, 3))
	b := slices.Concat(
		closedHost("198.18.0.2", 1, 3), with(closedHost("198.18.0.3", 1, 3), res("198.18.0.3", 3, scan.Open, "")),
		closedHost("fd00::1", 1, 3), with(closedHost("fd00::2", 1, 3), res("fd00::2", 1, scan.Open, "")))
	d, err := Compare(context.Background(), side(1, a), side(2, b))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range d.Hosts {
		got = append(got, h.Addr.String()+" "+string(h.Kind))
	}
	for _, p := range d.Ports {
		got = append(got, p.Addr.String()+":"+strconv.Itoa(int(p.Port))+" "+string(p.Kind))
	}
	want := []string{
		"198.18.0.1 host-vanished", "198.18.0.2 host-appeared", "fd00::2 host-appeared",
		"198.18.0.3:2 port-removed", "198.18.0.3:3 port-added", "fd00::2:1 port-added",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got)\n%s", diff)
	}
	wantSum := Summary{HostsAppeared: 2, HostsVanished: 1, PortsAdded: 2, PortsRemoved: 1, HostsCompared: 5, PortsCompared: 15}
	if d.Summary != wantSum {
		t.Errorf("Summary = %+v; want %+v", d.Summary, wantSum)
	}
}

// TestCompareError passes a read error on.
func TestCompareError(t *testing.T) {
	bad := FromResults(ScanRef{ID: 7}, func(yield func(scan.Result, error) bool) {
		if yield(res("198.18.0.1", 1, scan.Open, ""), nil) {
			yield(scan.Result{}, context.DeadlineExceeded)
		}
	})
	if _, err := Compare(context.Background(), side(1, closedHost("198.18.0.9", 1, 2)), bad); err == nil {
		t.Fatal("Compare with a failing side: no error")
	}
}

// TestCompareBatches compares sides of many hosts, so that the hosts of
// each arrive in several batches whose boundaries do not line up: A has
// the even hosts of 1000, B the multiples of 3.
func TestCompareBatches(t *testing.T) {
	var a, b []scan.Result
	for i := range 1000 {
		addr := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		if i%2 == 0 {
			a = append(a, res(addr, 22, scan.Open, ""), res(addr, 23, scan.Closed, ""))
		}
		if i%3 == 0 {
			b = append(b, res(addr, 22, scan.Open, ""), res(addr, 23, scan.Closed, ""))
		}
	}
	d, err := Compare(context.Background(), side(1, a), side(2, b))
	if err != nil {
		t.Fatal(err)
	}
	// Both: multiples of 6 (167); A only: 500-167; B only: 334-167.
	hosts := 167 + 333 + 167
	want := Summary{HostsAppeared: 167, HostsVanished: 333, PortsAdded: 167, PortsRemoved: 333, HostsCompared: hosts, PortsCompared: 2 * hosts}
	if d.Summary != want {
		t.Errorf("Summary = %+v; want %+v", d.Summary, want)
	}
	for i := 1; i < len(d.Hosts); i++ {
		if !d.Hosts[i-1].Addr.Less(d.Hosts[i].Addr) {
			t.Fatalf("hosts out of order at %d: %s, %s", i, d.Hosts[i-1].Addr, d.Hosts[i].Addr)
		}
	}
}

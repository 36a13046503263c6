package watch

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"time"
)

// NeverBlock is the list of sources that are never banned, whatever they
// send: spoofed probes from the gateway's or a resolver's address must
// not cut the host off, nor may a scan-like burst from the operator's own
// SSH client. Detections of them are still reported.
type NeverBlock struct {
	entries []neverEntry
}

type neverEntry struct {
	p      netip.Prefix
	reason string
}

// Add puts p on the list with a reason ("gateway", "resolver", "ssh
// peer", "allow-list").
func (n *NeverBlock) Add(p netip.Prefix, reason string) {
	p = netip.PrefixFrom(p.Addr().Unmap().WithZone(""), p.Bits()).Masked()
	for _, e := range n.entries {
		if e.p == p && e.reason == reason {
			return
		}
	}
	n.entries = append(n.entries, neverEntry{p, reason})
}

// AddAddr puts one address on the list.
func (n *NeverBlock) AddAddr(a netip.Addr, reason string) {
	a = a.Unmap().WithZone("")
	n.Add(netip.PrefixFrom(a, a.BitLen()), reason)
}

// Check returns why a ban of p is refused: the reason of an entry p
// overlaps (a /64 ban holding the gateway's address is refused too).
func (n *NeverBlock) Check(p netip.Prefix) (reason string, refused bool) {
	for _, e := range n.entries {
		if e.p.Overlaps(p) {
			return e.reason + " " + e.p.String(), true
		}
	}
	return "", false
}

// Entries lists the entries as "PREFIX (REASON)", for logs.
func (n *NeverBlock) Entries() []string {
	out := make([]string, len(n.entries))
	for i, e := range n.entries {
		out[i] = e.p.String() + " (" + e.reason + ")"
	}
	return out
}

// ParseResolvConf returns the nameserver addresses of a resolv.conf
// (name is for errors). Other directives are ignored; a nameserver line
// whose address does not parse is an error naming the line.
func ParseResolvConf(name string, data []byte) ([]netip.Addr, error) {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "nameserver" {
			continue
		}
		if len(f) < 2 {
			return nil, &ParseError{What: "resolv.conf " + name, Input: sc.Text(), Pos: line, Msg: "nameserver without an address"}
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return nil, &ParseError{What: "resolv.conf " + name, Input: sc.Text(), Pos: line, Msg: "nameserver address: " + err.Error()}
		}
		out = append(out, a.Unmap().WithZone(""))
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{What: "resolv.conf " + name, Input: "", Pos: line + 1, Msg: err.Error()}
	}
	return out, nil
}

// BanFor is the ban of a source's offence-th detection: base, doubled for
// each earlier offence, at most max (0: 30 days).
func BanFor(base, max time.Duration, offence int) time.Duration {
	if max <= 0 {
		max = 30 * 24 * time.Hour
	}
	d := base
	for i := 1; i < offence && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

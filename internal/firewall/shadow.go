package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"portolan/internal/portspec"
)

// Shadow is a rule that never decides anything: an earlier rule matches
// every packet it would match and decides first.
type Shadow struct {
	Rule int `json:"rule"` // the shadowed rule's number (1-based)
	By   int `json:"by"`   // the earlier rule's number
}

// Warning says what a shadow means to a person, with rs's rules.
func (s Shadow) Warning(rs *Ruleset) string {
	r, by := &rs.Rules[s.Rule-1], &rs.Rules[s.By-1]
	until := ""
	if !by.Expires.IsZero() {
		until = fmt.Sprintf(" (until rule %d expires)", s.By)
	}
	if by.Action == r.Action || (r.Action == Allow && by.Action == Limit) {
		return fmt.Sprintf("rule %d (%s) is redundant: rule %d (%s) decides every packet it would match%s; delete it", s.Rule, r, s.By, by, until)
	}
	return fmt.Sprintf("rule %d (%s) never matches: rule %d (%s) takes every packet it would match first%s; to make it count, put it first (delete it and add it again with --insert %d)", s.Rule, r, s.By, by, until, s.By)
}

// smallPorts bounds the port sets indexed by port in Shadowed; larger
// ones are checked against every later rule.
const smallPorts = 64

// Shadowed returns the rules of rs that an earlier rule shadows: the
// earlier rule decides (allow, deny, reject or limit; a log rule goes on
// to the next) and matches all the later rule's packets: its ports,
// addresses and interface include the later rule's. Earlier rules are
// indexed by port, so a large ruleset takes about linear time. It stops
// with ctx's error when ctx ends.
func (rs *Ruleset) Shadowed(ctx context.Context) ([]Shadow, error) {
	byPort := map[protoPort][]int{} // earlier deciding rules with small port sets, by each of their ports
	var wide []int                  // earlier deciding rules with any or many ports
	var out []Shadow
	for j := range rs.Rules {
		if j%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		r := &rs.Rules[j]
		var cands []int
		cands = append(cands, wide...)
		if first, ok := firstPort(r.Ports); ok {
			cands = append(cands, byPort[first]...)
		}
		best := -1
		for _, i := range cands {
			if (best < 0 || i < best) && covers(&rs.Rules[i], r) {
				best = i
			}
		}
		if best >= 0 {
			out = append(out, Shadow{Rule: j + 1, By: best + 1})
		}
		if r.Action == Log {
			continue
		}
		if r.Ports == nil || r.Ports.Len() > smallPorts {
			wide = append(wide, j)
			continue
		}
		for _, p := range portspec.Protos {
			for _, port := range r.Ports.Ports(p) {
				byPort[protoPort{p, port}] = append(byPort[protoPort{p, port}], j)
			}
		}
	}
	return out, nil
}

type protoPort struct {
	proto portspec.Proto
	port  portspec.Port
}

// firstPort returns the lowest port of the first protocol of s.
func firstPort(s *portspec.Set) (protoPort, bool) {
	var z protoPort
	if s == nil {
		return z, false
	}
	for _, p := range portspec.Protos {
		if ps := s.Ports(p); len(ps) > 0 {
			z.proto, z.port = p, ps[0]
			return z, true
		}
	}
	return z, false
}

// covers reports whether every packet r matches is matched by a, which
// decides it.
func covers(a, r *Rule) bool {
	if a.Action == Log {
		return false // it goes on to the next rule
	}
	if a.Dir != r.Dir || (a.Ports != nil && a.Translated != r.Translated) {
		return false // another chain, or the port before DNAT against the one after
	}
	if a.Ports != nil {
		if r.Ports == nil {
			return false
		}
		for _, p := range portspec.Protos {
			for _, port := range r.Ports.Ports(p) {
				if !a.Ports.Has(p, port) {
					return false
				}
			}
		}
	}
	if !prefixesCover(a.From, r.From) || !prefixesCover(a.To, r.To) {
		return false
	}
	switch {
	case a.Iface == "":
	case r.Iface == "":
		return false
	case strings.HasSuffix(a.Iface, "*"):
		if !strings.HasPrefix(strings.TrimSuffix(r.Iface, "*"), strings.TrimSuffix(a.Iface, "*")) {
			return false
		}
	case a.Iface != r.Iface:
		return false
	}
	return true
}

// prefixesCover reports whether the addresses of outer include those of
// inner; empty means every address.
func prefixesCover(outer, inner []netip.Prefix) bool {
	if len(outer) == 0 {
		return true
	}
	if len(inner) == 0 {
		return hasAll(outer, 4) && hasAll(outer, 6)
	}
	for _, p := range inner {
		ok := false
		for _, o := range outer {
			if o.Bits() <= p.Bits() && o.Contains(p.Addr()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// hasAll reports whether ps holds the whole address space of family f.
func hasAll(ps []netip.Prefix, f int) bool {
	for _, p := range ps {
		if p.Bits() == 0 && familyOf(p.Addr()) == f {
			return true
		}
	}
	return false
}

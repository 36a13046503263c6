package firewall

import (
	"fmt"

	"portolan/internal/portspec"
)

// Publication is a port another table forwards elsewhere by DNAT in
// prerouting, as Docker does for published container ports. Such
// packets go through the forward hook, not input, so portolan's rules
// never see them.
type Publication struct {
	Table string         `json:"table"`           // family and name: "ip nat"
	Chain string         `json:"chain"`           // the chain holding the DNAT rule
	Proto portspec.Proto `json:"proto,omitempty"` // 0: any protocol
	Lo    portspec.Port  `json:"lo"`              // destination ports Lo-Hi; 0-0: any
	Hi    portspec.Port  `json:"hi"`
	To    string         `json:"to,omitempty"` // where it goes, when the rule says so plainly ("172.17.0.2:80")
}

func (p Publication) String() string {
	s := fmt.Sprintf("%s is forwarded by DNAT in table %s chain %s", portMatch{p.Proto, p.Lo, p.Hi}, p.Table, p.Chain)
	if p.To != "" {
		s += " to " + p.To
	}
	return s
}

// covers reports whether rule r names a port of p.
func (p Publication) covers(r *Rule) bool {
	if r.Ports == nil || r.Dir != In {
		return false // a rule on all traffic: a warning would only be noise; a routed rule sees it
	}
	lo, hi := p.Lo, p.Hi
	if lo == 0 && hi == 0 {
		lo, hi = 0, 65535
	}
	for _, proto := range r.Ports.Protos() {
		if p.Proto != 0 && p.Proto != proto {
			continue
		}
		if r.Ports.LenRange(proto, lo, hi) > 0 {
			return true
		}
	}
	return false
}

// PublishedWarnings says which rules of rs name ports that pubs forward
// away, one line per rule and publication.
func PublishedWarnings(rs *Ruleset, pubs []Publication) []string {
	var out []string
	for i := range rs.Rules {
		r := &rs.Rules[i]
		for _, p := range pubs {
			if p.covers(r) {
				out = append(out, fmt.Sprintf("rule %d (%s): %s, so input rules never see it; a routed rule does (portolan firewall %s %s --routed)", i+1, r, p, r.Action, FormatPorts(r.Ports)))
			}
		}
	}
	return out
}

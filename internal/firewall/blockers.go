package firewall

import (
	"fmt"
	"strconv"

	"portolan/internal/portspec"
)

// Blocker is something in another table that drops or rejects incoming
// packets on their way to the host: a rule at the input hook, or a base
// chain whose policy is drop. A drop in any table is final, so a port
// portolan allows is still closed if a blocker covers it.
type Blocker struct {
	Table   string         `json:"table"` // family and name: "inet filter"
	Chain   string         `json:"chain"`
	Verdict string         `json:"verdict"`         // "drop" or "reject"
	Policy  bool           `json:"policy"`          // the chain's policy rather than a rule
	Proto   portspec.Proto `json:"proto,omitempty"` // 0: any protocol
	Lo      portspec.Port  `json:"lo"`              // destination ports Lo-Hi; 0-0: any
	Hi      portspec.Port  `json:"hi"`
	// Accepts are what a policy-drop chain accepts by a plain port rule.
	Accepts []portMatch `json:"-"`
}

// portMatch is a protocol and a destination port range; zero values match
// any.
type portMatch struct {
	proto  portspec.Proto
	lo, hi portspec.Port
}

func (m portMatch) String() string {
	port := "all ports"
	if m.lo != 0 || m.hi != 0 {
		port = strconv.Itoa(int(m.lo))
		if m.hi != m.lo {
			port += "-" + strconv.Itoa(int(m.hi))
		}
	}
	if m.proto != 0 {
		port += "/" + m.proto.String()
	}
	return port
}

// overlaps returns a port of r's that m matches, if any.
func (m portMatch) overlaps(r *Rule) (portspec.Proto, portspec.Port, bool) {
	if r.Ports == nil {
		return 0, 0, false // a rule on all traffic: a warning would only be noise
	}
	lo, hi := m.lo, m.hi
	if lo == 0 && hi == 0 {
		lo, hi = 0, 65535
	}
	for _, proto := range r.Ports.Protos() {
		if m.proto != 0 && m.proto != proto {
			continue
		}
		for _, p := range r.Ports.Ports(proto) {
			if p >= lo && p <= hi {
				return proto, p, true
			}
		}
	}
	return 0, 0, false
}

// BlockerWarnings says which allow and limit rules of rs another table
// undoes, one line per rule and blocker.
func BlockerWarnings(rs *Ruleset, bs []Blocker) []string {
	var out []string
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if (r.Action != Allow && r.Action != Limit) || r.Dir != In { // blockers are read from the input hook
			continue
		}
		for _, b := range bs {
			m := portMatch{b.Proto, b.Lo, b.Hi}
			proto, port, ok := m.overlaps(r)
			if !ok {
				continue
			}
			pp := portMatch{proto, port, port}
			if b.Policy {
				accepted := false
				for _, a := range b.Accepts {
					if a.proto == 0 || a.proto == proto {
						lo, hi := a.lo, a.hi
						if lo == 0 && hi == 0 {
							hi = 65535
						}
						accepted = accepted || (port >= lo && port <= hi)
					}
				}
				if accepted {
					continue
				}
				out = append(out, fmt.Sprintf("rule %d (%s): table %s chain %s has policy %s and no rule there accepts %s: a drop in any table is final, so it stays closed unless that chain lets it in", i+1, r, b.Table, b.Chain, b.Verdict, pp))
				continue
			}
			out = append(out, fmt.Sprintf("rule %d (%s): table %s chain %s %ss %s: a drop in any table is final, so it stays closed", i+1, r, b.Table, b.Chain, b.Verdict, m))
		}
	}
	return out
}

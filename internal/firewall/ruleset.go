package firewall

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Upsert puts r into rs. A rule with the same action, ports, addresses
// and interface is updated in place (rate, log group, comment, expiry);
// otherwise r goes before rule number pos
// (1-based; 0 or past the end appends). It returns r's number and whether
// rs changed.
func (rs *Ruleset) Upsert(r Rule, pos int) (n int, changed bool) {
	r.id = 0
	for i := range rs.Rules {
		old := &rs.Rules[i]
		if old.Action != r.Action || old.selector() != r.selector() {
			continue
		}
		if old.Equal(&r) {
			return i + 1, false
		}
		rs.Rules[i] = r // a new id: a new expiry set
		return i + 1, true
	}
	if pos <= 0 || pos > len(rs.Rules) {
		rs.Rules = append(rs.Rules, r)
	} else {
		rs.Rules = slices.Insert(rs.Rules, pos-1, r)
	}
	// A rule goes among those of its direction (see Grouped): before pos
	// when pos is among them, else at their end or start.
	rs.Grouped()
	return rs.Find(&r), true
}

// Find returns the number (1-based) of the rule with r's action, ports,
// addresses and interface, or 0.
func (rs *Ruleset) Find(r *Rule) int {
	for i := range rs.Rules {
		if rs.Rules[i].Action == r.Action && rs.Rules[i].selector() == r.selector() {
			return i + 1
		}
	}
	return 0
}

// Delete removes the rules with the given numbers (1-based) and returns
// them. Numbers out of range are an error and remove nothing.
func (rs *Ruleset) Delete(numbers ...int) ([]Rule, error) {
	del := map[int]bool{}
	for _, n := range numbers {
		if n < 1 || n > len(rs.Rules) {
			return nil, fmt.Errorf("no rule %d (there are %d)", n, len(rs.Rules))
		}
		del[n-1] = true
	}
	var gone []Rule
	kept := rs.Rules[:0:0]
	for i, r := range rs.Rules {
		if del[i] {
			gone = append(gone, r)
		} else {
			kept = append(kept, r)
		}
	}
	rs.Rules = kept
	return gone, nil
}

// ruleJSON is the JSON form of a Rule, the same fields a profile has.
type ruleJSON struct {
	Action Action   `json:"action"`
	Ports  string   `json:"ports"`
	From   []string `json:"from,omitempty"`
	To     []string `json:"to,omitempty"`
	Iface  string   `json:"iface,omitempty"`
	// Direction is left out for incoming rules, as before it existed.
	Direction  Direction `json:"direction,omitempty"`
	Translated bool      `json:"translated,omitempty"`
	Rate       string    `json:"rate,omitempty"`
	Prefix6    uint8     `json:"prefix6,omitempty"`
	Group      uint16    `json:"group,omitempty"`
	Expires    string    `json:"expires,omitempty"`
	Comment    string    `json:"comment,omitempty"`
}

// MarshalJSON writes the rule with ports as FormatPorts writes them and
// the expiry in RFC 3339.
func (r Rule) MarshalJSON() ([]byte, error) {
	j := ruleJSON{Action: r.Action, Ports: FormatPorts(r.Ports), Iface: r.Iface, Direction: r.Dir, Translated: r.Translated, Prefix6: r.Prefix6, Group: r.Group, Comment: r.Comment}
	for _, p := range r.From {
		j.From = append(j.From, formatPrefix(p))
	}
	for _, p := range r.To {
		j.To = append(j.To, formatPrefix(p))
	}
	if !r.Rate.IsZero() {
		j.Rate = r.Rate.String()
	}
	if !r.Expires.IsZero() {
		j.Expires = r.Expires.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Rule) UnmarshalJSON(b []byte) error {
	var j ruleJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	v := Rule{Action: j.Action, Iface: j.Iface, Dir: j.Direction, Translated: j.Translated, Prefix6: j.Prefix6, Group: j.Group, Comment: j.Comment}
	if v.Ports, err = ParsePorts(j.Ports, nil); err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	for _, s := range j.From {
		p, err := parsePrefix(s)
		if err != nil {
			return fmt.Errorf("from: %w", err)
		}
		v.From = append(v.From, p)
	}
	for _, s := range j.To {
		p, err := parsePrefix(s)
		if err != nil {
			return fmt.Errorf("to: %w", err)
		}
		v.To = append(v.To, p)
	}
	v.From, v.To = CanonPrefixes(v.From), CanonPrefixes(v.To)
	if j.Rate != "" {
		if v.Rate, err = ParseRate(j.Rate); err != nil {
			return err
		}
	}
	if j.Expires != "" {
		if v.Expires, err = time.Parse(time.RFC3339Nano, j.Expires); err != nil {
			return fmt.Errorf("expires: %w", err)
		}
	}
	*r = v
	return r.Validate()
}

// Snapshot is a table as it was, for restoring it exactly: the rules keep
// the ids that name their sets.
type Snapshot struct {
	Exists  bool     `json:"exists"`
	Ruleset Ruleset  `json:"ruleset"`
	IDs     []uint32 `json:"ids"`
}

// Snapshot returns t in a form that survives JSON.
func (t *Table) Snapshot() *Snapshot {
	s := &Snapshot{Exists: t.Exists, Ruleset: *t.Ruleset.Clone()}
	for _, r := range t.Ruleset.Rules {
		s.IDs = append(s.IDs, r.id)
	}
	return s
}

// ruleset returns the snapshot's rules with their ids back.
func (s *Snapshot) ruleset() (*Ruleset, error) {
	if len(s.IDs) != len(s.Ruleset.Rules) {
		return nil, fmt.Errorf("snapshot: %d ids for %d rules", len(s.IDs), len(s.Ruleset.Rules))
	}
	rs := s.Ruleset.Clone()
	for i := range rs.Rules {
		rs.Rules[i].id = s.IDs[i]
	}
	return rs, nil
}

// prefixStrings writes prefixes as the parsers read them back.
func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = formatPrefix(p)
	}
	return out
}

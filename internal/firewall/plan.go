package firewall

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Change is one rule in a Plan.
type Change struct {
	// Op is "+" (added), "-" (removed), "~" (kept, with a new comment
	// or expiry) or " " (unchanged).
	Op     string   `json:"op"`
	Number int      `json:"number"` // in the new table; for "-", in the live one
	Rule   Rule     `json:"rule"`
	Old    *Rule    `json:"old,omitempty"` // for "~": the live rule
	Note   string   `json:"note,omitempty"`
	NFT    []string `json:"nft"` // the kernel rules, in nft syntax
}

// Plan is what applying a ruleset would change in the live table.
type Plan struct {
	CreateTable bool     `json:"create_table"`
	PolicyFrom  Policy   `json:"policy_from"`
	PolicyTo    Policy   `json:"policy_to"`
	Changes     []Change `json:"rules"`
}

// Empty reports whether applying would change nothing.
func (p *Plan) Empty() bool {
	if p.CreateTable || p.PolicyFrom != p.PolicyTo {
		return false
	}
	for _, c := range p.Changes {
		if c.Op != " " {
			return false
		}
	}
	return true
}

// Counts returns how many rules are added, removed and changed.
func (p *Plan) Counts() (add, remove, change int) {
	for _, c := range p.Changes {
		switch c.Op {
		case "+":
			add++
		case "-":
			remove++
		case "~":
			change++
		}
	}
	return
}

// Diff plans the change from the live table have to want. Rules are
// paired in order by action and match (a longest common subsequence), so
// a moved rule shows as removed and added. Expired live rules are removed.
func Diff(have *Table, want *Ruleset, now time.Time) (*Plan, error) {
	if err := want.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{CreateTable: !have.Exists, PolicyFrom: have.Ruleset.Policy, PolicyTo: want.Policy}
	old := have.Ruleset.Rules
	nw := want.WithoutExpired(now)
	matchIDs(nw, &have.Ruleset) // the ids, and so the set names, Apply would give
	key := func(r *Rule) string { return r.Action.String() + " " + r.Match() }
	// lcs[i][j] is the length of the longest common subsequence of
	// old[i:] and nw.Rules[j:].
	n, m := len(old), len(nw.Rules)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if !old[i].Expired(now) && key(&old[i]) == key(&nw.Rules[j]) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	add := func(op string, num int, r Rule, o *Rule, note string) error {
		lines, err := RuleNFT(&r)
		if err != nil {
			return err
		}
		p.Changes = append(p.Changes, Change{Op: op, Number: num, Rule: r, Old: o, Note: note, NFT: lines})
		return nil
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && !old[i].Expired(now) && key(&old[i]) == key(&nw.Rules[j]):
			op, note := " ", ""
			if !old[i].Equal(&nw.Rules[j]) {
				op, note = "~", changeNote(&old[i], &nw.Rules[j], now)
			}
			o := old[i]
			if err := add(op, j+1, nw.Rules[j], &o, note); err != nil {
				return nil, err
			}
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] > lcs[i+1][j]): // on a tie, removals first
			if err := add("+", j+1, nw.Rules[j], nil, expiryNote(&nw.Rules[j], now)); err != nil {
				return nil, err
			}
			j++
		default:
			note := ""
			if old[i].Expired(now) {
				note = "expired"
			}
			if err := add("-", i+1, old[i], nil, note); err != nil {
				return nil, err
			}
			i++
		}
	}
	for k := range p.Changes {
		if p.Changes[k].Op == " " {
			p.Changes[k].Old = nil
		}
	}
	return p, nil
}

func expiryNote(r *Rule, now time.Time) string {
	if r.Expires.IsZero() {
		return ""
	}
	return "expires in " + r.Expires.Sub(now).Round(time.Second).String()
}

func changeNote(old, nw *Rule, now time.Time) string {
	var notes []string
	if old.Comment != nw.Comment {
		notes = append(notes, fmt.Sprintf("comment %q (was %q)", nw.Comment, old.Comment))
	}
	if o := *old; func() bool { o.Comment = nw.Comment; return !o.Equal(nw) }() {
		was, is := expiryNote(old, now), expiryNote(nw, now)
		if was == "" {
			was = "never expires"
		}
		if is == "" {
			is = "never expires"
		}
		notes = append(notes, is+" (was: "+was+")")
	}
	return strings.Join(notes, ", ")
}

// Render writes the plan as the chain's rules in nft syntax, each line
// marked "+" (added), "-" (removed), "~" (changed) or " " (kept).
func (p *Plan) Render(w io.Writer) error {
	var b strings.Builder
	if p.CreateTable {
		fmt.Fprintf(&b, "+ table inet %s { chain %s { %s } }\n", TableName, ChainName, chainHeader(p.PolicyTo == PolicyDrop))
	} else if p.PolicyFrom != p.PolicyTo {
		fmt.Fprintf(&b, "~ policy %s (was %s)\n", p.PolicyTo, p.PolicyFrom)
	}
	for _, c := range p.Changes {
		for k, l := range c.NFT {
			fmt.Fprintf(&b, "%s %s", c.Op, l)
			if k == 0 && c.Note != "" {
				fmt.Fprintf(&b, "  # %s", c.Note)
			}
			b.WriteByte('\n')
		}
	}
	if p.PolicyTo == PolicyReject && p.PolicyFrom != PolicyReject {
		b.WriteString("+ reject  # policy reject\n")
	} else if p.PolicyFrom == PolicyReject && p.PolicyTo != PolicyReject {
		b.WriteString("- reject  # policy reject\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

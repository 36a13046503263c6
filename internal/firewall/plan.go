package firewall

import (
	"context"
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
	CreateTable bool   `json:"create_table"`
	PolicyFrom  Policy `json:"policy_from"`
	PolicyTo    Policy `json:"policy_to"`
	// PolicyLogFrom and PolicyLogTo say whether what the policy drops is
	// logged before and after (see Ruleset.PolicyLog).
	PolicyLogFrom bool     `json:"policy_log_from,omitempty"`
	PolicyLogTo   bool     `json:"policy_log_to,omitempty"`
	Changes       []Change `json:"rules"`
}

// Empty reports whether applying would change nothing.
func (p *Plan) Empty() bool {
	if p.CreateTable || p.PolicyFrom != p.PolicyTo || p.PolicyLogFrom != p.PolicyLogTo {
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
// paired in order by action and match (a longest common subsequence, by
// Myers' algorithm on the rules' hashed keys: near-linear when few rules
// change), so a moved rule shows as removed and added. Expired live rules
// are removed. It stops with ctx's error when ctx ends.
func Diff(ctx context.Context, have *Table, want *Ruleset, now time.Time) (*Plan, error) {
	return diff(ctx, have, want, now, true)
}

// DiffRules is Diff without the nft rendering of each change (Change.NFT
// stays nil), for callers that need to know only what changes: rendering
// every rule of a large ruleset cost apply as much as the rest of the
// plan.
func DiffRules(ctx context.Context, have *Table, want *Ruleset, now time.Time) (*Plan, error) {
	return diff(ctx, have, want, now, false)
}

func diff(ctx context.Context, have *Table, want *Ruleset, now time.Time, render bool) (*Plan, error) {
	if err := want.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{CreateTable: !have.Exists, PolicyFrom: have.Ruleset.Policy, PolicyTo: want.Policy,
		PolicyLogFrom: have.Ruleset.PolicyLog, PolicyLogTo: want.PolicyLog}
	if p.PolicyLogFrom && p.PolicyLogTo && have.Ruleset.PolicyLogGroup != want.PolicyLogGroup {
		p.PolicyLogFrom = false // a new group: shown as added
	}
	old := have.Ruleset.Rules
	nw := want.WithoutExpired(now)
	kc := newKeyCache(len(have.Ruleset.Rules) + len(want.Rules))
	matchIDs(nw, &have.Ruleset, kc) // the ids, and so the set names, Apply would give
	// Each distinct key (action and match) gets a number; an expired live
	// rule gets one of its own, so it pairs with nothing.
	ids := make(map[string]int, len(want.Rules))
	keyID := func(r *Rule) int {
		k := r.Action.String() + " " + r.matchWith(kc)
		id, ok := ids[k]
		if !ok {
			id = len(ids)
			ids[k] = id
		}
		return id
	}
	a := make([]int, len(old))
	for i := range old {
		if old[i].Expired(now) {
			a[i] = -1 - i
		} else {
			a[i] = keyID(&old[i])
		}
	}
	b := make([]int, len(nw.Rules))
	for j := range nw.Rules {
		b[j] = keyID(&nw.Rules[j])
	}
	pairs, err := commonPairs(ctx, a, b)
	if err != nil {
		return nil, err
	}
	add := func(op string, num int, r Rule, o *Rule, note string) error {
		var lines []string
		if render {
			var err error
			if lines, err = RuleNFT(&r); err != nil {
				return err
			}
		}
		p.Changes = append(p.Changes, Change{Op: op, Number: num, Rule: r, Old: o, Note: note, NFT: lines})
		return nil
	}
	if n := len(old) + len(nw.Rules) - len(pairs); n > 0 {
		p.Changes = make([]Change, 0, n)
	}
	i, j := 0, 0
	pairs = append(pairs, [2]int{len(old), len(nw.Rules)}) // a sentinel after the last rules
	for _, pr := range pairs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for ; i < pr[0]; i++ { // on a tie, removals first
			note := ""
			if old[i].Expired(now) {
				note = "expired"
			}
			if err := add("-", i+1, old[i], nil, note); err != nil {
				return nil, err
			}
		}
		for ; j < pr[1]; j++ {
			if err := add("+", j+1, nw.Rules[j], nil, expiryNote(&nw.Rules[j], now)); err != nil {
				return nil, err
			}
		}
		if i == len(old) && j == len(nw.Rules) {
			break
		}
		op, note := " ", ""
		var o *Rule
		// Paired rules have the same action and match.
		if old[i].Comment != nw.Rules[j].Comment || !old[i].sameExpiry(&nw.Rules[j]) {
			op, note = "~", changeNote(&old[i], &nw.Rules[j], now)
			c := old[i]
			o = &c
		}
		if err := add(op, j+1, nw.Rules[j], o, note); err != nil {
			return nil, err
		}
		i, j = i+1, j+1
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
		fmt.Fprintf(&b, "+ table inet %s { chain %s { %s } }\n", TableName, ChainName, chainHeader(In, p.PolicyTo == PolicyDrop))
	} else if p.PolicyFrom != p.PolicyTo {
		fmt.Fprintf(&b, "~ policy %s (was %s)\n", p.PolicyTo, p.PolicyFrom)
	}
	for _, c := range p.Changes {
		in := ""
		if c.Rule.Dir != In {
			in = "chain " + c.Rule.Dir.chain() + ": " // the input chain's rules go unmarked
		}
		for k, l := range c.NFT {
			fmt.Fprintf(&b, "%s %s%s", c.Op, in, l)
			if k == 0 && c.Note != "" {
				fmt.Fprintf(&b, "  # %s", c.Note)
			}
			b.WriteByte('\n')
		}
	}
	switch {
	case p.PolicyLogTo && !p.PolicyLogFrom:
		fmt.Fprintf(&b, "+ log what the policy %s (%d a minute, bursts of %d)\n", pastTense(p.PolicyTo.String()), logRate, logBurst)
	case p.PolicyLogFrom && !p.PolicyLogTo:
		b.WriteString("- log what the policy drops\n")
	}
	if p.PolicyTo == PolicyReject && p.PolicyFrom != PolicyReject {
		b.WriteString("+ reject  # policy reject\n")
	} else if p.PolicyFrom == PolicyReject && p.PolicyTo != PolicyReject {
		b.WriteString("- reject  # policy reject\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

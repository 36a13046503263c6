package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
	"portolan/internal/output"
)

// FirewallListOptions are the inputs of `portolan firewall list`.
type FirewallListOptions struct {
	*FirewallOptions
	NFT bool // print the chain in nft syntax instead of the table
}

func newFirewallListCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallListOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "status"},
		Short:   "Show portolan's rules, numbered",
		Long: `Show the default policy and portolan's rules in order, numbered for delete.
Expired rules are listed (as expired) until the next change removes them.
--nft prints the chain as nft would, one line per kernel rule.

Also warns about ports that another table forwards by DNAT (Docker's
published ports): those never reach the input rules.`,
		Example: `  portolan firewall list
  portolan firewall list --nft
  portolan firewall list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallList(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.NFT, "nft", false, "print the chain in nft syntax")
	return cmd
}

// fwRule is a rule as list shows it.
type fwRule struct {
	Number    int    `json:"number"`
	Text      string `json:"text"`
	Expired   bool   `json:"expired,omitempty"`
	ExpiresIn string `json:"expires_in,omitempty"`
	firewall.Rule
	NFT []string `json:"nft"`
}

func newFwRule(n int, r *firewall.Rule, now time.Time) fwRule {
	fr := fwRule{Number: n, Text: r.String(), Rule: *r, Expired: r.Expired(now)}
	if !r.Expires.IsZero() && !fr.Expired {
		fr.ExpiresIn = humanDuration(r.Expires.Sub(now))
	}
	fr.NFT, _ = firewall.RuleNFT(r)
	return fr
}

// MarshalJSON flattens the rule's own fields into the object.
func (fr fwRule) MarshalJSON() ([]byte, error) {
	rb, err := fr.Rule.MarshalJSON()
	if err != nil {
		return nil, err
	}
	type head struct {
		Number    int      `json:"number"`
		Text      string   `json:"text"`
		Expired   bool     `json:"expired,omitempty"`
		ExpiresIn string   `json:"expires_in,omitempty"`
		NFT       []string `json:"nft"`
	}
	hb, err := json.Marshal(head{fr.Number, fr.Text, fr.Expired, fr.ExpiresIn, fr.NFT})
	if err != nil {
		return nil, err
	}
	// {"number":...} + {"action":...} = {"number":...,"action":...}
	return append(hb[:len(hb)-1], append([]byte{','}, rb[1:]...)...), nil
}

// fwListResult is the JSON form of list.
type fwListResult struct {
	Namespace string                 `json:"namespace"`
	Exists    bool                   `json:"exists"`
	Policy    firewall.Policy        `json:"policy"`
	Rules     []fwRule               `json:"rules"`
	Unmanaged int                    `json:"unmanaged,omitempty"`
	Pending   *fwPending             `json:"pending,omitempty"`
	Published []firewall.Publication `json:"published,omitempty"`
	Blockers  []firewall.Blocker     `json:"blockers,omitempty"` // other tables' drops at the input hook
	Doors     *fwDoors               `json:"doors,omitempty"`    // portolan knockd's
}

// fwDoors are the knock daemon's doors: the ports they protect and who
// holds them open until when.
type fwDoors struct {
	Protected []string   `json:"protected"`
	Open      []fwHolder `json:"open"`
}

type fwHolder struct {
	Src       netip.Addr `json:"src"`
	Port      string     `json:"port"`
	Expires   time.Time  `json:"expires"`
	ExpiresIn string     `json:"expires_in"`
}

// fwPending is a pending rollback as list shows it.
type fwPending struct {
	Deadline time.Time `json:"deadline"`
	GuardPID int       `json:"guard_pid,omitempty"`
}

func runFirewallList(ctx context.Context, g *Globals, opts FirewallListOptions) error {
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, false)
	if err != nil {
		return err
	}
	defer s.Close()
	pubs, err := s.fw.Published(ctx)
	if err != nil {
		g.Logger().Debug("read other tables for DNAT", "err", err)
	}
	blockers, err := s.fw.Blockers(ctx)
	if err != nil {
		g.Logger().Debug("read other tables for drops", "err", err)
	}
	now := time.Now()
	res := fwListResult{Namespace: opts.NetNS, Exists: tab.Exists, Policy: tab.Ruleset.Policy, Rules: []fwRule{}, Unmanaged: tab.Unmanaged, Published: pubs, Blockers: blockers}
	if res.Namespace == "" {
		res.Namespace = "self"
	}
	for i := range tab.Ruleset.Rules {
		res.Rules = append(res.Rules, newFwRule(i+1, &tab.Ruleset.Rules[i], now))
	}
	if p, err := s.state.ReadPending(); err == nil {
		res.Pending = &fwPending{Deadline: p.Deadline, GuardPID: p.GuardPID}
	}
	if holders, protected, err := s.fw.DoorHolders(ctx); err == nil && len(protected) > 0 {
		res.Doors = &fwDoors{Open: []fwHolder{}}
		for _, p := range protected {
			res.Doors.Protected = append(res.Doors.Protected, fmt.Sprintf("%d/%s", p.Port, p.Proto))
		}
		for _, h := range holders {
			res.Doors.Open = append(res.Doors.Open, fwHolder{h.Src, fmt.Sprintf("%d/%s", h.Port.Port, h.Port.Proto), h.Expires, humanDuration(h.Expires.Sub(now))})
		}
	}
	if g.JSON {
		return writeJSON(g, res)
	}
	if opts.NFT {
		chains, err := tab.Ruleset.NFTChains()
		if err != nil {
			return err
		}
		if !tab.Exists {
			fmt.Fprintln(g.io.ErrOut, "no table inet portolan: this is what an empty one holds")
		}
		fmt.Fprintf(g.io.Out, "table inet %s {\n", firewall.TableName)
		for i, c := range chains {
			if i > 0 {
				fmt.Fprintln(g.io.Out)
			}
			fmt.Fprintf(g.io.Out, "\tchain %s {\n", c.Name)
			for _, l := range c.Lines {
				fmt.Fprintf(g.io.Out, "\t\t%s\n", l)
			}
			fmt.Fprint(g.io.Out, "\t}\n")
		}
		_, err = fmt.Fprint(g.io.Out, "}\n")
		return err
	}
	state := "policy " + tab.Ruleset.Policy.String()
	if tab.Ruleset.PolicyLog {
		state += ", logged"
		if tab.Ruleset.PolicyLogGroup != 0 {
			state += fmt.Sprintf(" to NFLOG group %d", tab.Ruleset.PolicyLogGroup)
		}
	}
	if !tab.Exists {
		state += " (no table inet portolan: portolan filters nothing)"
	}
	fmt.Fprintln(g.io.Out, state)
	if len(res.Rules) > 0 {
		t := output.Table{Header: []string{"#", "ACTION", "PORTS", "FROM", "TO", "IFACE", "EXPIRES", "COMMENT"}, RightAlign: []int{0}}
		for _, fr := range res.Rules {
			r := &fr.Rule
			action := r.Action.String()
			switch {
			case r.Action == firewall.Limit:
				action += " " + r.Rate.String()
				if r.Prefix6 != 0 {
					action += " per /" + strconv.Itoa(int(r.Prefix6))
				}
			case r.Action == firewall.Log && r.Group != 0:
				action += " group " + strconv.Itoa(int(r.Group))
			}
			if r.Dir != firewall.In {
				action += " (" + r.Dir.String() + ")"
			}
			if r.Translated {
				action = strings.TrimSuffix(action, ")") + ", after DNAT)"
			}
			expires := fr.ExpiresIn
			if fr.ExpiresIn != "" {
				expires = "in " + expires
			}
			if fr.Expired {
				expires = "expired"
			}
			t.Add(strconv.Itoa(fr.Number), action, firewall.FormatPorts(r.Ports), prefixList(r.From), prefixList(r.To), orAny(r.Iface), expires, r.Comment)
		}
		if err := t.Write(g.io.Out, g.color()); err != nil {
			return err
		}
	}
	if d := res.Doors; d != nil {
		fmt.Fprintf(g.io.Out, "doors (portolan knockd) protect %s\n", strings.Join(d.Protected, ", "))
		if len(d.Open) > 0 {
			t := output.Table{Header: []string{"OPEN FOR", "PORT", "EXPIRES"}}
			for _, h := range d.Open {
				t.Add(h.Src.String(), h.Port, "in "+h.ExpiresIn)
			}
			if err := t.Write(g.io.Out, g.color()); err != nil {
				return err
			}
		}
	}
	if tab.Unmanaged > 0 {
		s.warn("%d rules in the chain were not written by portolan (or were changed); the next change removes them", tab.Unmanaged)
	}
	if res.Pending != nil {
		s.warn("an apply rolls back at %s unless confirmed (portolan firewall confirm)", res.Pending.Deadline.Format(time.TimeOnly))
	}
	for _, w := range firewall.PublishedWarnings(&tab.Ruleset, pubs) {
		s.warn("%s", w)
	}
	for _, w := range firewall.BlockerWarnings(&tab.Ruleset, blockers) {
		s.warn("%s", w)
	}
	return nil
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "any"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
		if p.IsSingleIP() {
			s[i] = p.Addr().String()
		}
	}
	return strings.Join(s, ",")
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// humanDuration writes d to the second under an hour and to the minute
// above, without zero units: 45s, 12m30s, 2h, 1d3h.
func humanDuration(d time.Duration) string {
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	var b strings.Builder
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * 24 * time.Hour
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}

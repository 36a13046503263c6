package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
)

// FirewallAddOptions are the inputs of `portolan firewall allow|deny|reject|limit|log`.
type FirewallAddOptions struct {
	*FirewallOptions
	Spec   firewall.RuleSpec
	Insert int // put the rule before this number; 0 appends
	Force  bool
}

// ruleFlags binds the flags that describe a rule (everything but the
// action and ports) into spec.
func ruleFlags(cmd *cobra.Command, spec *firewall.RuleSpec, action firewall.Action) {
	matchFlags(cmd, spec)
	f := cmd.Flags()
	f.StringVar(&spec.For, "for", "", "remove the rule after this long (90s, 2h, 3d); the kernel times it out")
	f.StringVar(&spec.Expires, "expires", "", "remove the rule at this RFC 3339 time")
	f.StringVar(&spec.Comment, "comment", "", "a note shown by list and by nft")
	switch action {
	case firewall.Limit:
		f.StringVar(&spec.Rate, "rate", "", "new connections allowed per source: COUNT/PERIOD (default 6/30s)")
		f.StringVar(&spec.Prefix6, "prefix6", "", "count IPv6 sources by this prefix length, 1-128 (default 64: a host's usual /64)")
	case firewall.Log:
		f.StringVar(&spec.Group, "group", "", "send packets to this NFLOG group instead of the kernel log")
	}
}

// matchFlags binds the flags that say which packets a rule matches.
func matchFlags(cmd *cobra.Command, spec *firewall.RuleSpec) {
	f := cmd.Flags()
	f.StringVar(&spec.From, "from", "", "source addresses or prefixes, comma-separated (default: any)")
	f.StringVar(&spec.To, "to", "", "destination addresses or prefixes (local ones; remote with --out), comma-separated (default: any)")
	f.StringVarP(&spec.Iface, "iface", "i", "", "incoming interface (outgoing with --out); a trailing * matches a prefix (default: any)")
	f.VarPF(specFlag{&spec.Dir, "routed", "--out"}, "routed", "", "filter traffic routed through this host (forward hook), ports published by DNAT (Docker, Podman, hostPort) included, by the port the client connected to").NoOptDefVal = "true"
	f.VarPF(specFlag{&spec.Dir, "out", "--routed"}, "out", "", "filter outgoing traffic, opened by this host (output hook)").NoOptDefVal = "true"
	f.VarPF(specFlag{&spec.Translated, "true", ""}, "translated", "", "with --routed: match the port after DNAT (the container's own) instead").NoOptDefVal = "true"
}

// specFlag is a boolean flag that, when true, sets a RuleSpec field to
// val; other names the flag that sets the same field otherwise.
type specFlag struct {
	field      *string
	val, other string
}

func (f specFlag) String() string { return strconv.FormatBool(f.field != nil && *f.field == f.val) }
func (f specFlag) Type() string   { return "bool" }
func (f specFlag) IsBoolFlag() bool {
	return true
}

func (f specFlag) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil || !on {
		return err
	}
	if *f.field != "" && *f.field != f.val {
		return fmt.Errorf("--%s and %s exclude each other", f.val, f.other)
	}
	*f.field = f.val
	return nil
}

var addShort = map[firewall.Action]string{
	firewall.Allow:  "Accept incoming traffic to ports",
	firewall.Deny:   "Drop incoming traffic to ports, silently",
	firewall.Reject: "Refuse incoming traffic to ports (TCP reset or ICMP port unreachable)",
	firewall.Limit:  "Accept new connections to ports, dropping sources that open them too fast",
	firewall.Log:    "Log incoming traffic to ports and go on to the next rule",
}

var addExample = map[firewall.Action]string{
	firewall.Allow: `  portolan firewall allow 22/tcp --comment ssh
  portolan firewall allow https --from 198.18.0.0/15
  portolan firewall allow 8080/tcp --for 2h
  portolan firewall allow any --from 198.18.0.7
  portolan firewall allow 'T:80,443,U:443' --iface eth0 --insert 1`,
	firewall.Deny: `  portolan firewall deny 23/tcp
  portolan firewall deny any --from 198.18.0.66 --for 1d --comment abuse
  portolan firewall deny 8080/tcp --routed           # a port Docker publishes
  portolan firewall deny 25/tcp --out                 # no outgoing SMTP`,
	firewall.Reject: `  portolan firewall reject 111
  portolan firewall reject 25/tcp --from fd00::/8`,
	firewall.Limit: `  portolan firewall limit 22/tcp
  portolan firewall limit 22/tcp --rate 10/minute`,
	firewall.Log: `  portolan firewall log 23/tcp
  portolan firewall log 22/tcp --group 5 --comment ssh-attempts`,
}

func newFirewallAddCmd(g *Globals, fo *FirewallOptions, action firewall.Action) *cobra.Command {
	opts := FirewallAddOptions{FirewallOptions: fo}
	opts.Spec.Action = action.String()
	cmd := &cobra.Command{
		Use:   action.String() + " PORTS|any",
		Short: addShort[action],
		Long: addShort[action] + `.

PORTS is a port spec: 22/tcp, 53/udp, 8000-8100/tcp, T:80,443,U:53, or a
service name from the IANA registry (https, ssh). A port without a protocol
means both TCP and UDP, as in ufw. 'any' matches all traffic (every protocol
and port): combine it with --from, --to or --iface.

The rule goes at the end (or before --insert N); rules are checked in order
and the first match decides. A rule with the same action, ports, addresses
and interface as an existing one updates that rule (its rate, group, comment
and expiry) instead of adding a second. Limit counts new connections per source address, with the rate as a
burst per period: 6/30s allows 6 at once and then one every 5 seconds.

Rules filter incoming traffic. --routed rules filter traffic routed through
the host instead, container ports published by DNAT included, which incoming
rules never see: 'deny 8080/tcp --routed' closes a port Docker publishes as
8080 (the port the client connected to; --translated matches the
container's own port). --out rules filter connections this host opens; --to
and --iface are then the remote address and the outgoing interface. Each
direction has a chain of its own, rules numbered incoming first, then
routed, then outgoing; the default policy is for incoming traffic only.`,
		Example: addExample[action],
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Spec.Ports = args[0]
			if cmd.Flags().Changed("insert") && opts.Insert < 1 {
				return usageErr(fmt.Errorf("--insert %d: rule numbers start at 1 (leave --insert out to append)", opts.Insert))
			}
			return runFirewallAdd(cmd.Context(), g, opts)
		},
	}
	ruleFlags(cmd, &opts.Spec, action)
	cmd.Flags().IntVar(&opts.Insert, "insert", 0, "put the rule before rule number N instead of at the end")
	addForce(cmd, &opts.Force)
	return cmd
}

// fwChangeResult is the JSON answer of a command that adds or deletes rules.
type fwChangeResult struct {
	Result string   `json:"result"` // added, updated, exists, deleted
	Number int      `json:"number,omitempty"`
	Rule   *fwRule  `json:"rule,omitempty"`
	Rules  []fwRule `json:"rules,omitempty"`
}

// parseRuleSpec parses spec as a usage error naming the flag.
func parseRuleSpec(spec firewall.RuleSpec) (firewall.Rule, error) {
	r, err := spec.Rule(registryNames{}, time.Now())
	if err != nil {
		var fe *firewall.FieldError
		if errors.As(err, &fe) && fe.Field != "ports" && fe.Field != "action" {
			flag := fe.Field
			if flag == "direction" {
				flag = spec.Dir // the flag is named for the direction
			}
			return r, usageErr(fmt.Errorf("--%s: %w", flag, fe.Err))
		}
		return r, usageErr(err)
	}
	if err := r.CheckSafety(); err != nil {
		return r, usageErr(err)
	}
	return r, nil
}

func runFirewallAdd(ctx context.Context, g *Globals, opts FirewallAddOptions) error {
	rule, err := parseRuleSpec(opts.Spec)
	if err != nil {
		return err
	}
	if opts.Insert < 0 {
		return usageErr(fmt.Errorf("--insert %d: rule numbers start at 1", opts.Insert))
	}
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	want := tab.Ruleset.WithoutExpired(now)
	n, changed := want.Upsert(rule, opts.Insert)
	res := fwChangeResult{Result: "exists", Number: n}
	if changed {
		res.Result = "added"
		if n <= len(tab.Ruleset.Rules) && tab.Ruleset.Find(&rule) > 0 {
			res.Result = "updated"
		}
		if err := s.change(ctx, tab, want, opts.Force); err != nil {
			return err
		}
	}
	s.warnShadowed(ctx, want, n)
	fr := newFwRule(n, &want.Rules[n-1], now)
	res.Rule = &fr
	if g.JSON {
		return writeJSON(g, res)
	}
	line := fmt.Sprintf("%s rule %d: %s", res.Result, n, fr.Text)
	if fr.ExpiresIn != "" {
		line += " (expires in " + fr.ExpiresIn + ")"
	}
	_, err = fmt.Fprintln(g.io.Out, line)
	return err
}

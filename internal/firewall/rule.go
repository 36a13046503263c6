package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"portolan/internal/portspec"
)

// Action is what a rule does with the packets it matches.
type Action uint8

// The actions. The zero Action is invalid.
const (
	Allow  Action = iota + 1 // accept
	Deny                     // drop silently
	Reject                   // refuse: TCP reset for TCP-only rules, ICMP port unreachable otherwise
	Limit                    // accept new connections, but drop a source that opens them faster than Rate
	Log                      // log and go on to the next rule
)

// Actions lists the actions in the order help text shows them.
var Actions = []Action{Allow, Deny, Reject, Limit, Log}

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Reject:
		return "reject"
	case Limit:
		return "limit"
	case Log:
		return "log"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction reads an action name.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if s == a.String() {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want allow, deny, reject, limit or log)", s)
}

// MarshalText writes the action name.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads an action name.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	*a = v
	return err
}

// Policy is what happens to incoming packets no rule decided on.
type Policy uint8

// The policies. The zero Policy accepts, as a machine with no firewall does.
const (
	PolicyAccept Policy = iota
	PolicyDrop
	PolicyReject // a final reject rule; the chain's own policy stays accept
)

func (p Policy) String() string {
	switch p {
	case PolicyAccept:
		return "accept"
	case PolicyDrop:
		return "drop"
	case PolicyReject:
		return "reject"
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParsePolicy reads a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "accept", "allow":
		return PolicyAccept, nil
	case "drop", "deny":
		return PolicyDrop, nil
	case "reject":
		return PolicyReject, nil
	}
	return 0, fmt.Errorf("unknown policy %q (want accept, drop or reject)", s)
}

// MarshalText writes the policy name.
func (p Policy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a policy name.
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := ParsePolicy(string(b))
	*p = v
	return err
}

// Direction is which traffic a rule filters; each has a chain of its own.
type Direction uint8

// The directions. The zero Direction is incoming traffic.
const (
	In     Direction = iota // to this host: the input chain
	Routed                  // through this host, ports published by DNAT (containers) included: the forward chain
	Out                     // from this host: the output chain
)

// Directions lists the directions in the order their chains come.
var Directions = []Direction{In, Routed, Out}

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Routed:
		return "routed"
	case Out:
		return "out"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// chain is the name of d's chain in portolan's table.
func (d Direction) chain() string {
	switch d {
	case Routed:
		return "forward"
	case Out:
		return "output"
	}
	return ChainName
}

// ParseDirection reads a direction name.
func ParseDirection(s string) (Direction, error) {
	for _, d := range Directions {
		if s == d.String() {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown direction %q (want in, routed or out)", s)
}

// MarshalText writes the direction name.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a direction name.
func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	*d = v
	return err
}

// Rate is a number of new connections per period, for Limit rules.
type Rate struct {
	Count uint32        // connections allowed in a burst
	Per   time.Duration // the period in which Count connections are allowed; whole seconds
}

// DefaultPrefix6 is the prefix length by which a Limit rule counts IPv6
// sources when the rule names none (see Rule.Prefix6).
const DefaultPrefix6 = 64

// prefix6 is r's IPv6 prefix length, the default filled in.
func (r *Rule) prefix6() int {
	if r.Prefix6 == 0 {
		return DefaultPrefix6
	}
	return int(r.Prefix6)
}

// DefaultRate is the rate of a Limit rule that names none: ufw's 6 in 30 seconds.
var DefaultRate = Rate{Count: 6, Per: 30 * time.Second}

// IsZero reports whether r is unset.
func (r Rate) IsZero() bool { return r.Count == 0 && r.Per == 0 }

// String writes the rate as ParseRate reads it: "6/30s", "10/minute".
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	per := shortDuration(r.Per)
	for _, u := range limitUnits {
		if r.Per == time.Duration(u.secs)*time.Second {
			per = u.name
		}
	}
	return strconv.FormatUint(uint64(r.Count), 10) + "/" + per
}

// MarshalText writes the rate as "6/30s".
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a rate.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	*r = v
	return err
}

// limitUnits are the periods the kernel's limit expression counts in (and
// the only ones nft can print).
var limitUnits = []struct {
	secs uint64
	name string
}{{1, "second"}, {60, "minute"}, {3600, "hour"}, {86400, "day"}, {604800, "week"}}

// kernelRate converts r to the kernel's form: rate tokens per unit seconds
// with a bucket of burst tokens. It picks the smallest unit at least as long
// as the period that makes the rate a whole number, so 6/30s is 12/minute
// with a burst of 6.
func (r Rate) kernelRate() (rate, unit uint64, burst uint32, err error) {
	per := uint64(r.Per / time.Second)
	if r.Count == 0 || per == 0 || r.Per%time.Second != 0 {
		return 0, 0, 0, fmt.Errorf("rate %s: want a count of at least 1 per whole number of seconds", r)
	}
	for _, u := range limitUnits {
		if u.secs < per && u.secs != limitUnits[len(limitUnits)-1].secs {
			continue
		}
		if n := uint64(r.Count) * u.secs; n%per == 0 {
			return n / per, u.secs, r.Count, nil
		}
	}
	// Suggest the nearest rate in the smallest unit at least as long.
	u := limitUnits[len(limitUnits)-1]
	for _, c := range limitUnits[1:] {
		if c.secs >= per {
			u = c
			break
		}
	}
	near := max(1, (uint64(r.Count)*u.secs+per/2)/per)
	return 0, 0, 0, fmt.Errorf("rate %s: the kernel counts per second, minute, hour, day or week, and %d per %s is no whole number per any of them (try %d/%s)", r, r.Count, shortDuration(r.Per), near, u.name)
}

// rateFromKernel is the inverse of kernelRate.
func rateFromKernel(rate, unit uint64, burst uint32) (Rate, bool) {
	if rate == 0 || burst == 0 || (unit*uint64(burst))%rate != 0 {
		return Rate{}, false
	}
	return Rate{Count: burst, Per: time.Duration(unit*uint64(burst)/rate) * time.Second}, true
}

// Rule is one firewall rule, for incoming traffic unless Dir says
// otherwise. The zero values of the match fields match everything: a
// Rule{Action: Deny} drops all incoming traffic.
type Rule struct {
	Action Action
	// Dir is the traffic the rule filters: incoming (zero), routed
	// through the host, or outgoing. For outgoing traffic From is the
	// local address, To and Ports the remote ones, and Iface the outgoing
	// interface.
	Dir Direction
	// Translated makes a Routed rule match the destination port after
	// DNAT (a container's own port) instead of the port the client
	// connected to (the published port), which is what it matches
	// otherwise: `deny 8080/tcp --routed` closes a port published as
	// 8080 whatever port the container listens on.
	Translated bool
	// Ports are the destination ports per protocol. Nil matches every
	// protocol (ICMP included) and port. A set, once in a rule, is not
	// changed in place (Ruleset.Clone shares it).
	Ports *portspec.Set
	// From and To are the source and destination prefixes, canonical
	// (sorted, merged; see ParsePrefixes). Empty matches any address.
	From, To []netip.Prefix
	// Iface is the incoming interface's name; a trailing '*' matches a
	// prefix ("eth*"). Empty matches any interface.
	Iface string
	// Rate is how fast one source may open connections (Limit only).
	Rate Rate
	// Prefix6 is the prefix length by which a Limit rule counts IPv6
	// sources as one: a host usually has a whole /64 to pick addresses
	// from. Zero means DefaultPrefix6; 128 counts each address alone.
	Prefix6 uint8
	// Group is the NFLOG group a Log rule sends packets to; 0 logs to the
	// kernel log instead (which writes nothing inside a network namespace
	// other than the first).
	Group uint16
	// Expires is when the rule stops matching; zero never. The kernel
	// enforces it with set element timeouts, so no process needs to run.
	Expires time.Time
	// Comment is shown by list and by nft (up to 128 bytes).
	Comment string

	id uint32 // groups the kernel rules of this rule; 0 until read from or written to the kernel
}

// Expired reports whether r has an expiry at or before now.
func (r *Rule) Expired(now time.Time) bool { return !r.Expires.IsZero() && !r.Expires.After(now) }

// Match is the part of a rule that says which packets it applies to,
// rendered the way the command line takes it: "22/tcp from 198.18.0.0/15".
// Two rules with the same action and Match do the same thing, except for
// their expiry and comment.
func (r *Rule) Match() string { return r.matchWith(nil) }

// matchWith is Match with the port sets written through k's cache (nil:
// none).
func (r *Rule) matchWith(k *keyCache) string {
	m := r.selectorWith(k)
	if r.Action == Limit {
		m += " rate " + r.Rate.String()
		if r.Prefix6 != 0 && r.Prefix6 != DefaultPrefix6 {
			m += " prefix6 " + strconv.Itoa(int(r.Prefix6))
		}
	}
	if r.Action == Log && r.Group != 0 {
		m += " group " + strconv.Itoa(int(r.Group))
	}
	return m
}

// selector is the part of Match that picks packets: ports, addresses and
// interface, without the rate or log group. Upsert and Find go by it, so
// `limit 22/tcp --rate 10/minute` changes the rate of an existing limit
// on 22/tcp rather than adding a second one.
func (r *Rule) selector() string { return r.selectorWith(nil) }

func (r *Rule) selectorWith(k *keyCache) string {
	var b strings.Builder
	b.WriteString(k.formatPorts(r.Ports))
	writePrefixes := func(kw string, ps []netip.Prefix) {
		if len(ps) > 0 {
			b.WriteString(" " + kw + " " + strings.Join(prefixStrings(ps), ","))
		}
	}
	writePrefixes("from", r.From)
	writePrefixes("to", r.To)
	if r.Iface != "" {
		b.WriteString(" on " + r.Iface)
	}
	if r.Dir != In {
		b.WriteString(" " + r.Dir.String())
	}
	if r.Translated {
		b.WriteString(" translated")
	}
	return b.String()
}

// String is the rule as one line: "allow 22/tcp from 198.18.0.0/15".
func (r *Rule) String() string { return r.Action.String() + " " + r.Match() }

// Same reports whether r and o are the same rule apart from expiry: same
// action, match and comment.
func (r *Rule) Same(o *Rule) bool {
	return r.Action == o.Action && r.Match() == o.Match() && r.Comment == o.Comment
}

// sameKey is a string that two rules share exactly when they are Same.
func (r *Rule) sameKey(k *keyCache) string {
	return r.Action.String() + " " + r.matchWith(k) + "\x00" + r.Comment
}

// keyCache remembers how large port sets are written, for the length of
// one plan or apply: rules share their sets (see Ruleset.Clone), and
// writing a large set walks its bitmaps, which for 10,000 rules keyed
// several times over was most of the time spent planning. The nil cache
// writes every time.
type keyCache struct{ ports map[*portspec.Set]string }

// newKeyCache returns a cache sized for about n port sets: a map grown
// one insertion at a time to 20,000 sets spent more time rehashing than
// writing the sets.
func newKeyCache(n int) *keyCache { return &keyCache{ports: make(map[*portspec.Set]string, n)} }

func (k *keyCache) formatPorts(s *portspec.Set) string {
	if k == nil || s == nil || s.Len() <= 64 {
		return FormatPorts(s) // a few ports: quicker written than looked up
	}
	f, ok := k.ports[s]
	if !ok {
		f = FormatPorts(s)
		k.ports[s] = f
	}
	return f
}

// Equal reports whether r and o are the same rule with the same expiry
// (to the second, since the kernel counts expiry in milliseconds from the
// time it was set).
func (r *Rule) Equal(o *Rule) bool { return r.Same(o) && r.sameExpiry(o) }

// sameExpiry reports whether r and o expire at the same time (see Equal).
func (r *Rule) sameExpiry(o *Rule) bool {
	if r.Expires.IsZero() != o.Expires.IsZero() {
		return false
	}
	d := r.Expires.Sub(o.Expires)
	return d < time.Second && d > -time.Second
}

// Validate checks what the parsers cannot check field by field.
func (r *Rule) Validate() error {
	if r.Action < Allow || r.Action > Log {
		return fmt.Errorf("rule %q: %v is not an action", r, r.Action)
	}
	if r.Ports != nil && r.Ports.Len() == 0 {
		return fmt.Errorf("rule %q: empty port set (use no ports to match every port)", r)
	}
	if r.Dir > Out {
		return fmt.Errorf("rule %q: %v is not a direction", r, r.Dir)
	}
	if r.Translated && (r.Dir != Routed || r.Ports == nil) {
		return fmt.Errorf("rule %q: only routed rules with ports match the port after DNAT", r)
	}
	if r.Action == Limit && r.Dir == Out {
		return fmt.Errorf("rule %q: limit counts connections per source, and outgoing ones all come from this host", r)
	}
	if r.Action == Limit {
		if _, _, _, err := r.Rate.kernelRate(); err != nil {
			return fmt.Errorf("rule %q: %w", r, err)
		}
		if r.Ports == nil {
			return fmt.Errorf("rule %q: limit needs ports (it counts connections to them)", r)
		}
		if r.Prefix6 > 128 {
			return fmt.Errorf("rule %q: IPv6 prefix length %d is over 128", r, r.Prefix6)
		}
	} else if !r.Rate.IsZero() {
		return fmt.Errorf("rule %q: only limit rules take a rate", r)
	} else if r.Prefix6 != 0 {
		return fmt.Errorf("rule %q: only limit rules take an IPv6 prefix length", r)
	}
	if r.Action != Log && r.Group != 0 {
		return fmt.Errorf("rule %q: only log rules take a group", r)
	}
	if len(families(r)) == 0 {
		return fmt.Errorf("rule %q: from and to have no address family in common", r)
	}
	if err := checkIface(r.Iface); err != nil {
		return fmt.Errorf("rule %q: %w", r, err)
	}
	if err := checkComment(r.Comment); err != nil {
		return fmt.Errorf("rule %q: %w", r, err)
	}
	return nil
}

// Ruleset is everything portolan puts in its table: a policy and rules in
// order. The zero Ruleset accepts everything.
type Ruleset struct {
	Policy Policy
	Rules  []Rule
	// PolicyLog logs what the policy drops or rejects, rate-limited as
	// log rules are (3 a minute, bursts of 10), to the kernel log or to
	// NFLOG group PolicyLogGroup when that is not 0.
	PolicyLog      bool
	PolicyLogGroup uint16
}

// Validate checks every rule.
func (rs *Ruleset) Validate() error {
	if rs.PolicyLog && rs.Policy == PolicyAccept {
		return fmt.Errorf("policy accept drops nothing to log: log with policy drop or reject")
	}
	if !rs.PolicyLog && rs.PolicyLogGroup != 0 {
		return fmt.Errorf("a policy log group without the policy log")
	}
	for i := range rs.Rules {
		if err := rs.Rules[i].Validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
	}
	return nil
}

// Clone returns a copy of rs whose rules can be changed without changing
// rs's. The port sets are shared: nothing changes a rule's Ports in place
// (a changed rule gets a new set), and copying a set's bitmaps for every
// rule of a large ruleset was most of the cost of planning it.
func (rs *Ruleset) Clone() *Ruleset {
	c := &Ruleset{Policy: rs.Policy, Rules: make([]Rule, len(rs.Rules)), PolicyLog: rs.PolicyLog, PolicyLogGroup: rs.PolicyLogGroup}
	for i, r := range rs.Rules {
		r.From = slices.Clone(r.From)
		r.To = slices.Clone(r.To)
		c.Rules[i] = r
	}
	return c
}

// WithoutExpired returns rs without the rules that expired by now, in
// the order the table keeps them (see Grouped).
func (rs *Ruleset) WithoutExpired(now time.Time) *Ruleset {
	c := rs.Clone()
	c.Rules = slices.DeleteFunc(c.Rules, func(r Rule) bool { return r.Expired(now) })
	c.Grouped()
	return c
}

// Grouped puts rs's rules in the order the table keeps them: incoming,
// then routed, then outgoing rules, each in their order. Rules of
// different directions are in different chains, so this changes nothing
// about what they do, only their numbers.
func (rs *Ruleset) Grouped() {
	if !slices.IsSortedFunc(rs.Rules, byDir) {
		slices.SortStableFunc(rs.Rules, byDir)
	}
}

func byDir(a, b Rule) int { return int(a.Dir) - int(b.Dir) }

// Index returns the index of the first rule that is Same as r, or -1.
func (rs *Ruleset) Index(r *Rule) int {
	return slices.IndexFunc(rs.Rules, func(o Rule) bool { return o.Same(r) })
}

// Equal reports whether rs and o have the same policy and Equal rules in
// the same order.
func (rs *Ruleset) Equal(o *Ruleset) bool {
	return rs.Policy == o.Policy && rs.PolicyLog == o.PolicyLog && rs.PolicyLogGroup == o.PolicyLogGroup && slices.EqualFunc(rs.Rules, o.Rules, func(a, b Rule) bool { return a.Equal(&b) })
}

// shortDuration writes d without zero parts: 30s, 2h, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

package firewall

import (
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"portolan/internal/portspec"
)

// MaxComment is the longest comment nft accepts on a rule, in bytes.
const MaxComment = 128

// RuleSpec is a rule as a person types it, one string per field, before
// parsing: the command line's arguments and flags, or a profile entry.
// Empty fields are unset.
type RuleSpec struct {
	Action string // allow, deny, reject, limit, log
	Ports  string // a port spec ("22/tcp", "https", "T:80,443,U:53"), or "any"/empty for all traffic
	From   string // comma-separated addresses and prefixes
	To     string
	Iface  string
	// Dir is in (or empty), routed or out; Translated is "true" (routed
	// rules: match the port after DNAT) or empty/"false".
	Dir        string
	Translated string
	Rate       string // "6/30s"; limit only
	Prefix6    string // the prefix length IPv6 sources are counted by, "56" or "/56"; limit only
	Group      string // NFLOG group; log only
	For        string // a duration: the rule expires this long after now
	Expires    string // an RFC 3339 time; excludes For
	Comment    string
}

// FieldError is a RuleSpec field that did not parse. Field is the name
// the user typed it under ("ports", "from", "rate", ...).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Rule parses the spec. names resolves service names in ports (nil: numbers
// only); now anchors For. Errors are *FieldError naming the field.
func (s RuleSpec) Rule(names portspec.Resolver, now time.Time) (Rule, error) {
	var r Rule
	var err error
	field := func(name string, e error) error { return &FieldError{Field: name, Err: e} }
	if r.Action, err = ParseAction(s.Action); err != nil {
		return Rule{}, field("action", err)
	}
	if r.Ports, err = ParsePorts(s.Ports, names); err != nil {
		return Rule{}, field("ports", err)
	}
	if r.From, err = ParsePrefixes(s.From); err != nil {
		return Rule{}, field("from", err)
	}
	if r.To, err = ParsePrefixes(s.To); err != nil {
		return Rule{}, field("to", err)
	}
	if r.Iface = strings.TrimSpace(s.Iface); r.Iface != "" {
		if err := checkIface(r.Iface); err != nil {
			return Rule{}, field("iface", err)
		}
	}
	if d := strings.TrimSpace(s.Dir); d != "" {
		if r.Dir, err = ParseDirection(d); err != nil {
			return Rule{}, field("direction", err)
		}
	}
	switch strings.TrimSpace(s.Translated) {
	case "", "false":
	case "true":
		if r.Dir != Routed {
			return Rule{}, field("translated", errors.New("only routed rules match the port after DNAT"))
		}
		if r.Ports == nil {
			return Rule{}, field("translated", errors.New("a rule on every port has no port to translate: name ports"))
		}
		r.Translated = true
	default:
		return Rule{}, field("translated", fmt.Errorf("%q: want true or false", s.Translated))
	}
	if r.Action == Limit && r.Dir == Out {
		return Rule{}, field("direction", errors.New("limit counts new connections per source, and outgoing ones all come from this host"))
	}
	switch {
	case s.Rate != "" && r.Action != Limit:
		return Rule{}, field("rate", fmt.Errorf("only limit rules take a rate, not %s", r.Action))
	case s.Rate != "":
		if r.Rate, err = ParseRate(s.Rate); err != nil {
			return Rule{}, field("rate", err)
		}
	case r.Action == Limit:
		r.Rate = DefaultRate
	}
	if s.Prefix6 != "" {
		if r.Action != Limit {
			return Rule{}, field("prefix6", fmt.Errorf("only limit rules count sources by prefix, not %s", r.Action))
		}
		if r.Prefix6, err = ParsePrefix6(s.Prefix6); err != nil {
			return Rule{}, field("prefix6", err)
		}
	}
	if s.Group != "" {
		if r.Action != Log {
			return Rule{}, field("group", fmt.Errorf("only log rules take a group, not %s", r.Action))
		}
		g, err := strconv.ParseUint(strings.TrimSpace(s.Group), 10, 16)
		if err != nil || g == 0 {
			return Rule{}, field("group", fmt.Errorf("%q is not an NFLOG group from 1 to 65535", s.Group))
		}
		r.Group = uint16(g)
	}
	switch {
	case s.For != "" && s.Expires != "":
		return Rule{}, field("for", errors.New("give for or expires, not both"))
	case s.For != "":
		d, err := ParseFor(s.For)
		if err != nil {
			return Rule{}, field("for", err)
		}
		r.Expires = now.Add(d).Truncate(time.Millisecond)
	case s.Expires != "":
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(s.Expires))
		if err != nil {
			return Rule{}, field("expires", fmt.Errorf("%q is not an RFC 3339 time like 2030-01-02T15:04:05Z", s.Expires))
		}
		r.Expires = t
	}
	if !r.Expires.IsZero() && !r.Expires.After(now) {
		// Added, it would match nothing and go at the next change.
		f := "expires"
		if s.For != "" {
			f = "for"
		}
		return Rule{}, field(f, fmt.Errorf("%s is not in the future", r.Expires.Format(time.RFC3339)))
	}
	if err := checkComment(s.Comment); err != nil {
		return Rule{}, field("comment", err)
	}
	r.Comment = s.Comment
	if r.Action == Limit && r.Ports == nil {
		return Rule{}, field("ports", errors.New("limit needs ports: it counts new connections to them"))
	}
	if len(families(&r)) == 0 {
		return Rule{}, field("to", errors.New("from and to have no address family in common"))
	}
	if r.Action == Limit {
		if _, _, _, err := r.Rate.kernelRate(); err != nil {
			return Rule{}, field("rate", err)
		}
	}
	return r, nil
}

// ParsePorts reads the ports of a rule. Entries without a protocol mean
// both TCP and UDP ("111" is 111/tcp and 111/udp, as in ufw), and service
// names resolve for the protocols the service is used over (ssh: TCP;
// see serviceProtos), else those the registry lists. "any" or an empty
// spec returns nil: every protocol and port.
func ParsePorts(spec string, names portspec.Resolver) (*portspec.Set, error) {
	t := strings.TrimSpace(spec)
	if t == "" || strings.EqualFold(t, "any") {
		return nil, nil
	}
	if s, ok := simplePorts(t); ok {
		return s, nil
	}
	if names != nil {
		names = curated{names}
	}
	// Parsing twice, with TCP and then UDP as the default, gives each
	// unprefixed entry both protocols while prefixed ones stay as written.
	tcp, errT := portspec.Parser{Names: names, Default: portspec.TCP}.Parse(spec)
	udp, errU := portspec.Parser{Names: names, Default: portspec.UDP}.Parse(spec)
	var s *portspec.Set
	switch {
	case errT != nil && errU != nil:
		return nil, errT
	case errT != nil:
		s = udp // a name registered for UDP only
	case errU != nil:
		s = tcp
	default:
		tcp.AddSet(udp)
		s = tcp
	}
	for _, p := range portspec.Protos {
		if s.Has(p, 0) {
			return nil, fmt.Errorf("port 0 at column %d in %q: no connection uses port 0", zeroColumn(spec), spec)
		}
	}
	return s, nil
}

// simplePorts reads the commonest spec, a port or a range with or
// without a protocol ("22/tcp", "8000-8100", "53/udp"), without the
// parser's two passes: a profile of 10,000 such rules spent most of its
// parsing time there. Anything else is left to the parser (ok false).
func simplePorts(t string) (*portspec.Set, bool) {
	spec, proto, hasProto := strings.Cut(t, "/")
	lo, hi, isRange := strings.Cut(spec, "-")
	num := func(s string) (portspec.Port, bool) {
		if s == "" || len(s) > 5 || s[0] == '0' {
			return 0, false
		}
		n, err := strconv.ParseUint(s, 10, 16)
		return portspec.Port(n), err == nil
	}
	l, ok := num(lo)
	if !ok {
		return nil, false
	}
	h := l
	if isRange {
		if h, ok = num(hi); !ok || h < l {
			return nil, false
		}
	}
	s := &portspec.Set{}
	switch {
	case !hasProto:
		s.AddRange(portspec.TCP, l, h)
		s.AddRange(portspec.UDP, l, h)
	case proto == "tcp":
		s.AddRange(portspec.TCP, l, h)
	case proto == "udp":
		s.AddRange(portspec.UDP, l, h)
	case proto == "sctp":
		s.AddRange(portspec.SCTP, l, h)
	default:
		return nil, false
	}
	return s, true
}

// zeroColumn returns the column of the first entry of spec that names
// port 0 (as a port or the start of a range), 1 if none is found.
func zeroColumn(spec string) int {
	col := 1
	for item := range strings.SplitSeq(spec, ",") {
		t := strings.TrimSpace(item)
		if i := strings.IndexByte(t, ':'); i >= 0 {
			t = t[i+1:]
		}
		if strings.HasPrefix(t, "0") && (len(t) == 1 || strings.IndexByte("-/", t[1]) >= 0) {
			return col + len(item) - len(strings.TrimLeft(item, " \t"))
		}
		col += utf8.RuneCountInString(item) + 1
	}
	return 1
}

// FormatPorts writes a port set so ParsePorts reads it back: "22/tcp",
// "111" (TCP and UDP), "T:22,80,U:53", or "any" for nil. It is on the path
// of every rule's Match, so it writes the runs itself rather than build
// sets to print.
func FormatPorts(s *portspec.Set) string {
	if s == nil || s.Len() == 0 {
		return "any"
	}
	tcp, udp, sctp := s.Ports(portspec.TCP), s.Ports(portspec.UDP), s.Ports(portspec.SCTP)
	var b strings.Builder
	if len(tcp) > 0 && slices.Equal(tcp, udp) {
		// Unprefixed entries first: they mean both protocols.
		writeRuns(&b, tcp)
		if len(sctp) > 0 {
			b.WriteString(",S:")
			writeRuns(&b, sctp)
		}
		return b.String()
	}
	lists := []struct {
		proto  portspec.Proto
		prefix string
		ports  []portspec.Port
	}{{portspec.TCP, "T:", tcp}, {portspec.UDP, "U:", udp}, {portspec.SCTP, "S:", sctp}}
	if protos := s.Protos(); len(protos) == 1 {
		for _, l := range lists {
			if l.proto == protos[0] {
				writeRuns(&b, l.ports)
			}
		}
		if body := b.String(); !strings.Contains(body, ",") {
			return body + "/" + protos[0].String()
		}
		b.Reset()
	}
	for _, l := range lists {
		if len(l.ports) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.prefix)
		writeRuns(&b, l.ports)
	}
	return b.String()
}

// writeRuns writes ascending ports as "22,80-90".
func writeRuns(b *strings.Builder, ports []portspec.Port) {
	var num [5]byte
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(strconv.AppendUint(num[:0], uint64(ports[i]), 10))
		if j > i {
			b.WriteByte('-')
			b.Write(strconv.AppendUint(num[:0], uint64(ports[j]), 10))
		}
		i = j + 1
	}
}

// ParsePrefixes reads a comma-separated list of IPv4 and IPv6 addresses
// (a host) and prefixes, and returns them canonical: host bits cleared,
// sorted, overlaps and neighbours merged into the fewest prefixes. Names
// are not resolved: a firewall rule must not depend on DNS.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	col := 1
	for item := range strings.SplitSeq(s, ",") {
		at := col + len(item) - len(strings.TrimLeft(item, " \t"))
		col += utf8.RuneCountInString(item) + 1
		t := strings.TrimSpace(item)
		if t == "" {
			return nil, fmt.Errorf("empty entry at column %d in %q", at, s)
		}
		p, err := parsePrefix(t)
		if err != nil {
			return nil, fmt.Errorf("%w at column %d in %q", err, at, s)
		}
		out = append(out, p)
	}
	return CanonPrefixes(out), nil
}

// parsePrefix reads one address or prefix.
func parsePrefix(t string) (netip.Prefix, error) {
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", t)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped IPv6 prefixes never match: write the IPv4 prefix", t)
		}
		if m := p.Masked(); m != p {
			// 10.0.0.1/8 is most likely a host meant with its netmask; silently
			// widening it to the whole network would open or close far more.
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: write %s for the network or %s for the host", t, m, p.Addr())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(t)
	if err != nil {
		if strings.Trim(t, "0123456789.:abcdefABCDEF") != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix (names are not resolved)", t)
		}
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", t)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones have no meaning in a rule", t)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped IPv6 addresses never match: write %s", t, a.Unmap())
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// formatPrefix writes a host prefix as its address.
func formatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	lo := p.Addr()
	b := lo.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	hi, _ := netip.AddrFromSlice(b)
	return addrRange{lo, hi}
}

// mergeRanges sorts rs and merges overlapping and adjacent ranges of the
// same family.
func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(a, b addrRange) int {
		return cmp.Or(cmp.Compare(a.lo.BitLen(), b.lo.BitLen()), a.lo.Compare(b.lo))
	})
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].lo.BitLen() == r.lo.BitLen() {
			last := &out[n-1]
			if next := last.hi.Next(); r.lo.Compare(last.hi) <= 0 || (next.IsValid() && r.lo == next) {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// rangePrefixes splits r into the fewest prefixes that cover it exactly.
func rangePrefixes(r addrRange) []netip.Prefix {
	var out []netip.Prefix
	bits := r.lo.BitLen()
	lo, hi := new(big.Int).SetBytes(r.lo.AsSlice()), new(big.Int).SetBytes(r.hi.AsSlice())
	one := big.NewInt(1)
	for lo.Cmp(hi) <= 0 {
		// The largest block that starts at lo and ends by hi.
		size := bits
		for size > 0 {
			span := new(big.Int).Lsh(one, uint(bits-size+1))
			if new(big.Int).Mod(lo, span).Sign() != 0 {
				break
			}
			end := new(big.Int).Add(lo, span)
			end.Sub(end, one)
			if end.Cmp(hi) > 0 {
				break
			}
			size--
		}
		buf := make([]byte, bits/8)
		lo.FillBytes(buf)
		a, _ := netip.AddrFromSlice(buf)
		out = append(out, netip.PrefixFrom(a, size))
		lo.Add(lo, new(big.Int).Lsh(one, uint(bits-size)))
	}
	return out
}

// CanonPrefixes returns ps with host bits cleared, sorted (IPv4 first),
// with overlapping and adjacent prefixes merged into the fewest prefixes
// that cover the same addresses.
func CanonPrefixes(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	if len(ps) == 1 {
		// Most rules name one source: it is its own canonical form, and
		// the general path's big-number arithmetic cost a 10,000-rule
		// profile a tenth of its parsing.
		return []netip.Prefix{ps[0].Masked()}
	}
	rs := make([]addrRange, len(ps))
	for i, p := range ps {
		rs[i] = prefixRange(p)
	}
	var out []netip.Prefix
	for _, r := range mergeRanges(rs) {
		out = append(out, rangePrefixes(r)...)
	}
	return out
}

// ParseRate reads a Limit rate: COUNT/PERIOD, the period a Go duration in
// whole seconds or a unit name: "6/30s", "10/minute", "100/1h", "5/s".
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	n, per, ok := strings.Cut(t, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want COUNT/PERIOD, like 6/30s or 10/minute", s)
	}
	count, err := strconv.ParseUint(strings.TrimSpace(n), 10, 32)
	if err != nil || count == 0 {
		return Rate{}, fmt.Errorf("rate %q: count %q at column 1 is not a whole number from 1 to %d", s, n, uint32(1<<32-1))
	}
	col := len(n) + 2
	per = strings.TrimSpace(per)
	var d time.Duration
	switch per {
	case "s", "sec", "second":
		d = time.Second
	case "m", "min", "minute":
		d = time.Minute
	case "h", "hour":
		d = time.Hour
	case "d", "day":
		d = 24 * time.Hour
	case "w", "week":
		d = 7 * 24 * time.Hour
	default:
		d, err = time.ParseDuration(per)
		if err != nil || d <= 0 || d%time.Second != 0 {
			return Rate{}, fmt.Errorf("rate %q: period %q at column %d is not a whole number of seconds (30s, 1m, 2h) or a unit (second, minute, hour, day, week)", s, per, col)
		}
	}
	r := Rate{Count: uint32(count), Per: d}
	if _, _, _, err := r.kernelRate(); err != nil {
		return Rate{}, err
	}
	return r, nil
}

// ParsePrefix6 reads the prefix length a limit counts IPv6 sources by:
// "56" or "/56", from 1 to 128. The default, 64, reads as 0.
func ParsePrefix6(s string) (uint8, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "/")
	n, err := strconv.ParseUint(t, 10, 8)
	if err != nil || n == 0 || n > 128 {
		return 0, fmt.Errorf("%q is not an IPv6 prefix length from 1 to 128", s)
	}
	if n == DefaultPrefix6 {
		return 0, nil
	}
	return uint8(n), nil
}

// ParseFor reads how long a rule lasts: a Go duration ("90s", "2h") or
// days ("3d"), at least a second and at most a year.
func ParseFor(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(t, "d"); ok && days != "" && !strings.ContainsAny(days, "hmsuµn") {
		var n uint64
		n, err = strconv.ParseUint(days, 10, 16)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(t)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 90s, 2h or 3d", s)
	}
	if d < time.Second || d > 366*24*time.Hour {
		return 0, fmt.Errorf("%q: want from 1s to 366d", s)
	}
	return d, nil
}

// checkIface accepts interface names as the kernel does (1 to 15 bytes,
// no '/', ':' or spaces), with an optional trailing '*'.
func checkIface(s string) error {
	if s == "" {
		return nil
	}
	name := strings.TrimSuffix(s, "*")
	if len(s) > 15 {
		return fmt.Errorf("interface %q: longer than 15 bytes", s)
	}
	if name == "" && s != "*" {
		return fmt.Errorf("interface %q: empty name", s)
	}
	for i, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '*' || c == '"' || c == '\\' {
			return fmt.Errorf("interface %q: character %q at column %d is not allowed in an interface name", s, c, i+1)
		}
	}
	if s == "*" {
		return errors.New(`interface "*" matches every interface: leave it out`)
	}
	return nil
}

// checkComment keeps comments printable and short enough for nft.
func checkComment(s string) error {
	if len(s) > MaxComment {
		return fmt.Errorf("comment is %d bytes, longer than %d", len(s), MaxComment)
	}
	if !utf8.ValidString(s) {
		return errors.New("comment is not valid UTF-8")
	}
	for i, r := range s {
		if r < ' ' || r == 0x7f || r == '"' || r == '\\' {
			return fmt.Errorf("comment: character %q at byte %d is not allowed (no control characters, quotes or backslashes)", r, i+1)
		}
	}
	return nil
}

// families returns the address families a rule's kernel rules cover: 4,
// 6, or 0 for a rule with no prefixes (both, without a family match). An
// empty result means From and To contradict each other.
func families(r *Rule) []int {
	if len(r.From) == 0 && len(r.To) == 0 {
		return []int{0}
	}
	var out []int
	for _, f := range []int{4, 6} {
		if hasFamily(r.From, f) && hasFamily(r.To, f) {
			out = append(out, f)
		}
	}
	return out
}

// hasFamily reports whether ps allows family f: it is empty or holds a
// prefix of f.
func hasFamily(ps []netip.Prefix, f int) bool {
	if len(ps) == 0 {
		return true
	}
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return familyOf(p.Addr()) == f })
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

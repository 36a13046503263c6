package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"time"

	"portolan/internal/portspec"
)

// The layout of portolan's table, which it owns whole:
//
//	table inet portolan {
//		chain input {
//			type filter hook input priority filter; policy accept|drop;
//			ct state established,related accept    # base: open connections stay up, ICMP errors about them too
//			iif "lo" accept                        # base: loopback is never filtered
//			ip6 hoplimit 255 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
//			ip6 saddr fe80::/10 icmpv6 type { mld-listener-query, ... } accept
//			                                       # base: what IPv6 needs to work, before any rule can drop it
//			...                                    # the rules, each one or more kernel rules
//			meta l4proto { icmp, ipv6-icmp } accept # base: ping and neighbour discovery, unless a rule said otherwise
//			reject                                 # only with policy reject
//		}
//	}
//
// Every kernel rule carries a tag in its user data (kind, rule id, expiry)
// so the rules can be read back and grouped. The rule body is decoded
// from the expressions and checked by compiling the result again: a rule
// changed behind portolan's back reads as unmanaged rather than as
// something it is not.
const (
	TableName = "portolan"
	ChainName = "input"
)

// Kernel rule kinds, in the tag.
const (
	kindRule   = 1 // part of a Rule
	kindBase   = 2 // a base rule; the id says which
	kindPolicy = 3 // the final reject of PolicyReject (id 0), the log of what the policy drops (id policyLogID)
)

// policyLogID is the id of the kindPolicy rule that logs what the policy
// drops or rejects.
const policyLogID = 2

// Log rules and the policy log are rate-limited as ufw's are: 3 a minute,
// in bursts of up to 10, so a flood does not flood the log too.
const (
	logRate  = 3
	logUnit  = 60
	logBurst = 10
)

// Base rule ids.
const (
	baseEstablished = 1
	baseLoopback    = 2
	baseICMP        = 3
	baseND          = 4
	baseMLD         = 5
)

// ICMPv6 types IPv6 needs to work (RFC 4890 4.4.1): router and neighbour
// discovery, accepted only with the hop limit of 255 they must be sent
// with (so they come from the link), and multicast listener discovery
// from link-local addresses. Without them a rule such as `deny any --iface
// eth0` cuts the host off IPv6, its own outgoing connections included:
// conntrack does not track neighbour advertisements.
var (
	icmp6ND    = []uint8{133, 134, 135, 136} // router solicitation and advertisement, neighbour solicitation and advertisement
	icmp6MLD   = []uint8{130, 131, 132, 143} // listener query, report, done; MLDv2 report
	linkLocal6 = netip.MustParsePrefix("fe80::/10")
)

// ct state bits (nf_conntrack_common.h).
const (
	ctInvalid     = 1
	ctEstablished = 2
	ctRelated     = 4
	ctNew         = 8
)

// Transport protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// verdict is how a kernel rule ends.
type verdict uint8

const (
	vAccept      verdict = iota + 1
	vDrop                // drop
	vRejectTCP           // reject with tcp reset
	vRejectICMPX         // reject (icmpx port-unreachable)
	vLog                 // log, no verdict
)

type portRange struct{ lo, hi uint16 }

// meter is the per-source rate limit of a Limit rule: a dynamic set of
// source addresses of one family, each with its own token bucket.
type meter struct {
	set   string
	rate  uint64 // tokens per unit
	unit  uint64 // seconds
	burst uint32
	mask  []byte // IPv6: the source is keyed by its prefix (Rule.Prefix6); nil: the whole address
}

// meterSize bounds the sources a meter tracks at once. When it is full, a
// new source is dropped (see compileRule), not let through unlimited.
// Tests lower it.
var meterSize uint32 = 65535

// krule is one kernel rule, in a form both the netlink encoder and the
// nft-syntax renderer read. Fields are in the order their expressions
// appear in the kernel rule; empty fields are nil so reflect.DeepEqual
// compares decoded and compiled rules.
type krule struct {
	dir     Direction // the chain it is in
	kind    uint8
	id      uint32
	expires int64 // Unix milliseconds; 0 none
	comment string

	iface     string // iifname (oifname in the output chain); a trailing '*' matches a prefix
	iif       uint32 // iif (oif in the output chain) index (1 is lo)
	expireSet string // meta nfproto @set: the rule lives as long as the set's elements
	family    int    // meta nfproto ipv4/ipv6, before any network header match
	saddr     []addrRange
	daddr     []addrRange
	hopLimit  uint8   // ip6 hoplimit; 0 any
	protos    []uint8 // meta l4proto
	ports     []portRange
	origPorts bool    // ports are matched as the connection's original destination (ct original proto-dst), before DNAT
	icmpTypes []uint8 // icmpv6 type, with protos {ipv6-icmp}
	ctState   uint32  // ct state & mask != 0
	meter     *meter  // update @set { ip saddr limit rate over ... }
	notIn     *meter  // ip saddr != @set: the source is not in the meter (it was full)
	logLimit  bool    // limit rate 3/minute burst 10 packets, before log (ufw's)
	logGroup  uint16
	logPrefix string
	verdict   verdict
}

// namedSet is a named set of portolan's table.
type namedSet struct {
	id      uint32 // the rule that owns it
	name    string
	family  int           // meters: 4 or 6; expiry sets: 0
	timeout time.Duration // meters: element idle timeout
	expires time.Time     // expiry sets: when both elements go
}

func (s namedSet) isMeter() bool { return s.family != 0 }

// compiled is a Ruleset ready for the kernel.
type compiled struct {
	drop  bool // chain policy drop
	rules []krule
	sets  []namedSet
}

// expireSetName and meterSetName name the named sets of rule id.
func expireSetName(id uint32) string { return "expire_" + strconv.FormatUint(uint64(id), 10) }
func meterSetName(id uint32, family int) string {
	return "limit_" + strconv.FormatUint(uint64(id), 10) + "_v" + strconv.Itoa(family)
}

// assignIDs gives every rule without an id a fresh one, larger than all
// ids in use.
func assignIDs(rs *Ruleset) {
	var max uint32
	for _, r := range rs.Rules {
		max = maxU32(max, r.id)
	}
	for i := range rs.Rules {
		if rs.Rules[i].id == 0 {
			max++
			rs.Rules[i].id = max
		}
	}
}

// matchIDs gives the rules of want the ids of Equal live rules, so their
// sets stay, and fresh ids (above every live one, so no set name is
// reused within a transaction) to the others. Live rules are found by a
// map of their keys, so this takes linear time.
func matchIDs(want, have *Ruleset, kc *keyCache) {
	byID := make(map[uint32]*Rule, len(have.Rules))
	byKey := make(map[string][]*Rule, len(have.Rules)) // live rules by action, match and comment, in order
	var max uint32
	for i := range have.Rules {
		r := &have.Rules[i]
		byID[r.id] = r
		k := r.sameKey(kc)
		byKey[k] = append(byKey[k], r)
		max = maxU32(max, r.id)
	}
	used := make(map[uint32]bool, len(want.Rules))
	for i := range want.Rules {
		w := &want.Rules[i]
		if old := byID[w.id]; w.id != 0 && (old == nil || !old.Equal(w) || used[w.id]) {
			w.id = 0
		}
		if w.id == 0 {
			for _, h := range byKey[w.sameKey(kc)] { // all Same as w
				if !used[h.id] && h.sameExpiry(w) {
					w.id = h.id
					break
				}
			}
		}
		if w.id != 0 {
			used[w.id] = true
			w.Expires = byID[w.id].Expires
		}
	}
	for i := range want.Rules {
		if want.Rules[i].id == 0 {
			max++
			want.Rules[i].id = max
		}
	}
}

// prefixMask is the network mask of p, as bytes.
func prefixMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// maskBits is the inverse of prefixMask for IPv6: the length of the
// prefix whose mask m is, or false if m is not one.
func maskBits(m []byte) (int, bool) {
	if len(m) != 16 {
		return 0, false
	}
	bits := 0
	for bits < 128 && m[bits/8]&(0x80>>(bits%8)) != 0 {
		bits++
	}
	return bits, slices.Equal(m, prefixMask(netip.PrefixFrom(netip.IPv6Unspecified(), bits)))
}

func maxU32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// compile turns a Ruleset whose rules all have ids, grouped by direction
// (see Ruleset.Grouped), into kernel rules and named sets: the input
// chain's, then those of the forward and output chains when rules need
// them.
func compile(rs *Ruleset) (*compiled, error) {
	// Most rules compile to one kernel rule, some to two (one per family).
	c := &compiled{drop: rs.Policy == PolicyDrop, rules: make([]krule, 0, len(rs.Rules)*5/4+16)}
	c.rules = append(c.rules, baseRules(In)...)
	seen := make(map[uint32]bool, len(rs.Rules))
	dir := In
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.id == 0 || seen[r.id] {
			return nil, fmt.Errorf("rule %d (%s): id %d is unset or used twice", i+1, r, r.id)
		}
		if r.Dir < dir {
			return nil, fmt.Errorf("rule %d (%s): %s rules go before %s ones", i+1, r, r.Dir, dir)
		}
		if r.Dir != dir {
			c.rules = append(c.rules, chainEnd(dir, rs)...)
			dir = r.Dir
			c.rules = append(c.rules, baseRules(dir)...)
		}
		seen[r.id] = true
		ks, sets, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		c.rules = append(c.rules, ks...)
		c.sets = append(c.sets, sets...)
	}
	c.rules = append(c.rules, chainEnd(dir, rs)...)
	return c, nil
}

// baseRules are the rules a chain starts with, before any user rule.
func baseRules(d Direction) []krule {
	est := krule{dir: d, kind: kindBase, id: baseEstablished, ctState: ctEstablished | ctRelated, verdict: vAccept}
	if d == Routed {
		return []krule{est}
	}
	return []krule{est,
		{dir: d, kind: kindBase, id: baseLoopback, iif: 1, verdict: vAccept},
		{dir: d, kind: kindBase, id: baseND, family: 6, hopLimit: 255, protos: []uint8{protoICMPv6}, icmpTypes: icmp6ND, verdict: vAccept},
		{dir: d, kind: kindBase, id: baseMLD, family: 6, saddr: []addrRange{prefixRange(linkLocal6)}, protos: []uint8{protoICMPv6}, icmpTypes: icmp6MLD, verdict: vAccept}}
}

// chainEnd are the rules the chain of d ends with: for input, ICMP and
// what the policy needs; the other chains accept what no rule decided.
func chainEnd(d Direction, rs *Ruleset) []krule {
	if d != In {
		return nil
	}
	out := []krule{{kind: kindBase, id: baseICMP, protos: []uint8{protoICMP, protoICMPv6}, verdict: vAccept}}
	if rs.PolicyLog {
		prefix := "portolan " + pastTense(rs.Policy.String()) + ": "
		out = append(out, krule{kind: kindPolicy, id: policyLogID, logLimit: true, verdict: vLog, logPrefix: prefix, logGroup: rs.PolicyLogGroup})
	}
	if rs.Policy == PolicyReject {
		out = append(out, krule{kind: kindPolicy, verdict: vRejectICMPX})
	}
	return out
}

// dirs returns the directions of c's chains: input always, the others
// when a rule is in them.
func (c *compiled) dirs() []Direction {
	out := []Direction{In}
	for _, k := range c.rules {
		if k.dir != out[len(out)-1] {
			out = append(out, k.dir)
		}
	}
	return out
}

// protoGroup is protocols that share one list of ports.
type protoGroup struct {
	protos []uint8
	ports  []portRange
}

// protoGroups splits a port set into groups of protocols with identical
// ports, so "111" (TCP and UDP) is one kernel rule.
func protoGroups(s *portspec.Set) []protoGroup {
	if s == nil {
		return []protoGroup{{}}
	}
	var out []protoGroup
	for _, p := range s.Protos() {
		runs := portRuns(s.Ports(p))
		num := protoNumber(p)
		if i := slices.IndexFunc(out, func(g protoGroup) bool { return slices.Equal(g.ports, runs) }); i >= 0 {
			out[i].protos = append(out[i].protos, num)
			continue
		}
		out = append(out, protoGroup{protos: []uint8{num}, ports: runs})
	}
	return out
}

// oneProtoEach splits groups into one group per protocol. A port before
// DNAT (ct original proto-dst) has no type of its own: nft prints it as a
// port after one protocol and as raw numbers after a set of them.
func oneProtoEach(groups []protoGroup) []protoGroup {
	var out []protoGroup
	for _, g := range groups {
		if len(g.protos) < 2 {
			out = append(out, g)
			continue
		}
		for _, p := range g.protos {
			out = append(out, protoGroup{protos: []uint8{p}, ports: g.ports})
		}
	}
	return out
}

func portRuns(ports []portspec.Port) []portRange {
	var out []portRange
	for _, p := range ports {
		if n := len(out); n > 0 && uint32(out[n-1].hi)+1 == uint32(p) {
			out[n-1].hi = uint16(p)
			continue
		}
		out = append(out, portRange{uint16(p), uint16(p)})
	}
	return out
}

func protoNumber(p portspec.Proto) uint8 {
	switch p {
	case portspec.UDP:
		return protoUDP
	case portspec.SCTP:
		return protoSCTP
	}
	return protoTCP
}

func protoOfNumber(n uint8) (portspec.Proto, bool) {
	switch n {
	case protoTCP:
		return portspec.TCP, true
	case protoUDP:
		return portspec.UDP, true
	case protoSCTP:
		return portspec.SCTP, true
	}
	return 0, false
}

// rangesOf returns the canonical prefixes of family f as merged ranges.
func rangesOf(ps []netip.Prefix, f int) []addrRange {
	var rs []addrRange
	for _, p := range ps {
		if familyOf(p.Addr()) == f {
			rs = append(rs, prefixRange(p))
		}
	}
	if len(rs) == 0 {
		return nil
	}
	return mergeRanges(rs)
}

// compileRule turns one rule into its kernel rules and named sets.
func compileRule(r *Rule) ([]krule, []namedSet, error) {
	if err := r.Validate(); err != nil {
		return nil, nil, err
	}
	base := krule{dir: r.Dir, kind: kindRule, id: r.id, comment: r.Comment, iface: r.Iface}
	var sets []namedSet
	if !r.Expires.IsZero() {
		base.expires = r.Expires.UnixMilli()
		base.expireSet = expireSetName(r.id)
		sets = append(sets, namedSet{id: r.id, name: base.expireSet, expires: r.Expires})
	}
	fams := families(r)
	groups := protoGroups(r.Ports)
	if r.Dir == Routed && !r.Translated {
		groups = oneProtoEach(groups)
	}
	body := func(f int, g protoGroup) krule {
		k := base
		k.family = f
		if f != 0 {
			k.saddr, k.daddr = rangesOf(r.From, f), rangesOf(r.To, f)
		}
		k.protos, k.ports = g.protos, g.ports
		k.origPorts = r.Dir == Routed && !r.Translated && g.ports != nil
		return k
	}
	var out []krule
	if r.Action == Limit {
		rate, unit, burst, err := r.Rate.kernelRate()
		if err != nil {
			return nil, nil, err
		}
		meterFams := fams
		if len(fams) == 1 && fams[0] == 0 {
			meterFams = []int{4, 6} // a meter is keyed by the source address of one family
		}
		for _, f := range meterFams {
			m := &meter{set: meterSetName(r.id, f), rate: rate, unit: unit, burst: burst}
			if bits := r.prefix6(); f == 6 && bits < 128 {
				// Keyed by address, a client rotating through its /64 got a
				// fresh bucket for every connection.
				m.mask = prefixMask(netip.PrefixFrom(netip.IPv6Unspecified(), bits))
			}
			sets = append(sets, namedSet{id: r.id, name: m.set, family: f, timeout: r.Rate.Per})
			for _, g := range groups {
				k := body(f, g)
				k.ctState, k.meter, k.verdict = ctNew, m, vDrop
				// A new connection whose source the meter could not take
				// (the set is full: the update above failed and so did not
				// match) is dropped too, rather than accepted unlimited.
				full := body(f, g)
				full.ctState, full.notIn, full.verdict = ctNew, &meter{set: m.set, mask: m.mask}, vDrop
				out = append(out, k, full)
			}
		}
	}
	for _, f := range fams {
		for _, g := range groups {
			k := body(f, g)
			switch r.Action {
			case Allow, Limit:
				k.verdict = vAccept
			case Deny:
				k.verdict = vDrop
			case Reject:
				k.verdict = vRejectICMPX
				if slices.Equal(g.protos, []uint8{protoTCP}) {
					k.verdict = vRejectTCP
				}
			case Log:
				k.verdict, k.logGroup, k.logPrefix, k.logLimit = vLog, r.Group, logPrefix(r), true
			}
			out = append(out, k)
		}
	}
	return out, sets, nil
}

// logPrefix is the kernel log prefix of a Log rule.
func logPrefix(r *Rule) string {
	p := "portolan: "
	if r.Comment != "" {
		p = "portolan " + r.Comment + ": "
	}
	if len(p) > 127 {
		p = p[:127]
	}
	return p
}

// decoded is portolan's table as read from the kernel.
type decoded struct {
	rs        Ruleset
	unmanaged []krule // kernel rules portolan did not write or that were changed; only their tags and verdicts are known
}

// decodeRules groups kernel rules by their tags back into a Ruleset.
// dropPolicy is the chain's policy. Rules whose kernel rules do not
// compile back to exactly what was read are counted as unmanaged.
func decodeRules(ks []krule, dropPolicy bool) decoded {
	var d decoded
	if dropPolicy {
		d.rs.Policy = PolicyDrop
	}
	for i := 0; i < len(ks); {
		k := ks[i]
		switch k.kind {
		case kindBase:
			i++
			continue
		case kindPolicy:
			if k.dir != In {
				d.unmanaged = append(d.unmanaged, k)
			} else if k.id == policyLogID && k.verdict == vLog {
				d.rs.PolicyLog, d.rs.PolicyLogGroup = true, k.logGroup
			} else if !dropPolicy {
				d.rs.Policy = PolicyReject
			}
			i++
			continue
		case kindRule:
		default:
			d.unmanaged = append(d.unmanaged, k)
			i++
			continue
		}
		j := i + 1
		for j < len(ks) && ks[j].kind == kindRule && ks[j].id == k.id && ks[j].dir == k.dir {
			j++
		}
		group := ks[i:j]
		i = j
		r, err := ruleOf(group)
		if err == nil {
			var again []krule
			again, _, err = compileRule(&r)
			if err == nil && !reflect.DeepEqual(again, []krule(group)) {
				err = errors.New("kernel rules differ from what portolan writes")
			}
		}
		if err != nil {
			d.unmanaged = append(d.unmanaged, group...)
			continue
		}
		d.rs.Rules = append(d.rs.Rules, r)
	}
	return d
}

// ruleOf rebuilds a Rule from the kernel rules of one id.
func ruleOf(group []krule) (Rule, error) {
	first := group[0]
	r := Rule{id: first.id, Dir: first.dir, Iface: first.iface, Comment: first.comment}
	if first.expires != 0 {
		r.Expires = time.UnixMilli(first.expires)
	}
	var from, to []netip.Prefix
	ports := &portspec.Set{}
	anyPort := false
	var meterSeen bool
	for _, k := range group {
		if k.notIn != nil {
			continue // part of the meter
		}
		if k.meter != nil {
			meterSeen = true
			rt, ok := rateFromKernel(k.meter.rate, k.meter.unit, k.meter.burst)
			if !ok {
				return Rule{}, errors.New("meter rate does not convert back")
			}
			r.Rate = rt
			if k.family == 6 {
				r.Prefix6 = 128
				if k.meter.mask != nil {
					bits, ok := maskBits(k.meter.mask)
					if !ok {
						return Rule{}, errors.New("meter mask is not a prefix")
					}
					r.Prefix6 = uint8(bits)
				}
				if r.Prefix6 == DefaultPrefix6 {
					r.Prefix6 = 0
				}
			}
			continue // the accept rules carry the match
		}
		for _, a := range k.saddr {
			from = append(from, rangePrefixes(a)...)
		}
		for _, a := range k.daddr {
			to = append(to, rangePrefixes(a)...)
		}
		if len(k.protos) == 0 {
			anyPort = true
		}
		if k.ports != nil && !k.origPorts && k.dir == Routed {
			r.Translated = true
		}
		for _, n := range k.protos {
			p, ok := protoOfNumber(n)
			if !ok {
				return Rule{}, fmt.Errorf("protocol %d", n)
			}
			for _, pr := range k.ports {
				ports.AddRange(p, portspec.Port(pr.lo), portspec.Port(pr.hi))
			}
		}
		switch k.verdict {
		case vAccept:
			r.Action = Allow
		case vDrop:
			r.Action = Deny
		case vRejectTCP, vRejectICMPX:
			r.Action = Reject
		case vLog:
			r.Action, r.Group = Log, k.logGroup
		}
	}
	if meterSeen {
		if r.Action != Allow {
			return Rule{}, errors.New("meter without accept")
		}
		r.Action = Limit
	}
	if !anyPort {
		r.Ports = ports
	}
	r.From, r.To = CanonPrefixes(from), CanonPrefixes(to)
	return r, nil
}

// The tag in each kernel rule's user data: a TLV of a type libnftnl does
// not use (nft skips it), next to the standard comment TLV.
const (
	udataComment = 0
	udataTag     = 0xb7
	tagVersion   = 1
	tagLen       = 16 // "pl", version, kind, id (4), expires (8)
)

// encodeUserdata writes the comment and tag TLVs of k.
func encodeUserdata(k *krule) []byte {
	var b []byte
	if k.comment != "" {
		b = append(b, udataComment, byte(len(k.comment)+1))
		b = append(b, k.comment...)
		b = append(b, 0)
	}
	b = append(b, udataTag, tagLen, 'p', 'l', tagVersion, k.kind)
	b = binary.BigEndian.AppendUint32(b, k.id)
	b = binary.BigEndian.AppendUint64(b, uint64(k.expires))
	return b
}

// decodeUserdata reads what encodeUserdata wrote into k. ok is false when
// there is no portolan tag. It never panics on malformed input.
func decodeUserdata(b []byte, k *krule) (ok bool) {
	for len(b) >= 2 {
		typ, n := b[0], int(b[1])
		if len(b) < 2+n {
			return false
		}
		v := b[2 : 2+n]
		b = b[2+n:]
		switch typ {
		case udataComment:
			if n == 0 || v[n-1] != 0 {
				return false
			}
			k.comment = string(v[:n-1])
		case udataTag:
			if n != tagLen || v[0] != 'p' || v[1] != 'l' || v[2] != tagVersion {
				return false
			}
			k.kind = v[3]
			k.id = binary.BigEndian.Uint32(v[4:8])
			k.expires = int64(binary.BigEndian.Uint64(v[8:16]))
			ok = true
		}
	}
	return ok && len(b) == 0
}

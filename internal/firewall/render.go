package firewall

import (
	"net/netip"
	"strconv"
	"strings"
)

// This file renders kernel rules in nft syntax, as `nft list table inet
// portolan` prints them (nftables 1.0.6), so a plan reads like the table
// it will produce and tests can compare the two.

// nftLine renders one kernel rule.
func (k *krule) nftLine() string {
	var w []string
	ifname, iif := "iifname", "iif"
	if k.dir == Out {
		ifname, iif = "oifname", "oif"
	}
	if k.iface != "" {
		w = append(w, ifname, strconv.Quote(k.iface))
	}
	if k.iif != 0 {
		name := "lo"
		if k.iif != 1 {
			name = strconv.FormatUint(uint64(k.iif), 10)
		}
		w = append(w, iif, strconv.Quote(name))
	}
	if k.expireSet != "" {
		w = append(w, "meta nfproto @"+k.expireSet)
	}
	fam := "ip"
	if k.family == 6 {
		fam = "ip6"
	}
	if k.family != 0 && k.saddr == nil && k.daddr == nil && k.hopLimit == 0 && k.meter == nil && k.notIn == nil { // nft hides the dependency of a network header match
		w = append(w, "meta nfproto ipv"+strconv.Itoa(k.family))
	}
	if k.saddr != nil {
		w = append(w, fam+" saddr", nftAddrs(k.saddr))
	}
	if k.daddr != nil {
		w = append(w, fam+" daddr", nftAddrs(k.daddr))
	}
	if k.hopLimit != 0 {
		w = append(w, "ip6 hoplimit "+strconv.Itoa(int(k.hopLimit)))
	}
	switch {
	case k.icmpTypes != nil:
		names := make([]string, len(k.icmpTypes))
		for i, t := range k.icmpTypes {
			names[i] = icmp6TypeName(t)
		}
		w = append(w, "icmpv6 type", nftSet(names))
	case len(k.protos) == 1 && k.ports != nil && !k.origPorts:
		w = append(w, protoName(k.protos[0])+" dport", nftPorts(k.ports))
	case len(k.protos) > 0:
		names := make([]string, len(k.protos))
		for i, p := range k.protos {
			names[i] = protoName(p)
		}
		if len(names) == 1 {
			w = append(w, "meta l4proto "+names[0])
		} else {
			w = append(w, "meta l4proto { "+strings.Join(names, ", ")+" }")
		}
		switch {
		case k.ports != nil && k.origPorts:
			w = append(w, "ct original proto-dst", nftPorts(k.ports))
		case k.ports != nil:
			w = append(w, "th dport", nftPorts(k.ports))
		}
	}
	if k.ctState != 0 {
		w = append(w, "ct state "+ctStateNames(k.ctState))
	}
	if m := k.meter; m != nil {
		w = append(w, "update @"+m.set+" { "+fam+" saddr"+nftMask(m)+" limit rate over "+nftRate(m)+" }")
	}
	if m := k.notIn; m != nil {
		w = append(w, fam+" saddr"+nftMask(m)+" != @"+m.set)
	}
	if k.logLimit {
		w = append(w, "limit rate "+strconv.Itoa(logRate)+"/minute burst "+strconv.Itoa(logBurst)+" packets")
	}
	if k.verdict == vLog {
		w = append(w, "log prefix "+strconv.Quote(k.logPrefix))
		if k.logGroup != 0 {
			w = append(w, "group "+strconv.Itoa(int(k.logGroup)))
		}
	}
	switch k.verdict {
	case vAccept:
		w = append(w, "accept")
	case vDrop:
		w = append(w, "drop")
	case vRejectTCP:
		w = append(w, "reject with tcp reset")
	case vRejectICMPX:
		w = append(w, "reject")
	}
	if k.comment != "" {
		w = append(w, "comment "+strconv.Quote(k.comment))
	}
	return strings.Join(w, " ")
}

// nftMask writes a meter's mask as nft 1.0.6 does: " & ffff:ffff:ffff:ffff::".
func nftMask(m *meter) string {
	if m.mask == nil {
		return ""
	}
	a, _ := netip.AddrFromSlice(m.mask)
	return " & " + a.String()
}

func nftRate(m *meter) string {
	unit := strconv.FormatUint(m.unit, 10) + "s"
	for _, u := range limitUnits {
		if u.secs == m.unit {
			unit = u.name
		}
	}
	s := strconv.FormatUint(m.rate, 10) + "/" + unit
	if m.burst != 0 && m.burst != 5 { // nft leaves out its default burst
		s += " burst " + strconv.FormatUint(uint64(m.burst), 10) + " packets"
	}
	return s
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoSCTP:
		return "sctp"
	case protoICMP:
		return "icmp"
	case protoICMPv6:
		return "ipv6-icmp"
	}
	return strconv.Itoa(int(p))
}

func icmp6TypeName(t uint8) string {
	switch t {
	case 130:
		return "mld-listener-query"
	case 131:
		return "mld-listener-report"
	case 132:
		return "mld-listener-done"
	case 133:
		return "nd-router-solicit"
	case 134:
		return "nd-router-advert"
	case 135:
		return "nd-neighbor-solicit"
	case 136:
		return "nd-neighbor-advert"
	case 143:
		return "mld2-listener-report"
	}
	return strconv.Itoa(int(t))
}

func ctStateNames(bits uint32) string {
	var names []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{{ctInvalid, "invalid"}, {ctEstablished, "established"}, {ctRelated, "related"}, {ctNew, "new"}} {
		if bits&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

func nftPorts(ps []portRange) string {
	items := make([]string, len(ps))
	for i, p := range ps {
		items[i] = strconv.Itoa(int(p.lo))
		if p.hi != p.lo {
			items[i] += "-" + strconv.Itoa(int(p.hi))
		}
	}
	return nftSet(items)
}

func nftAddrs(rs []addrRange) string {
	items := make([]string, len(rs))
	for i, r := range rs {
		items[i] = rangeString(r)
	}
	return nftSet(items)
}

// rangeString writes a range as an address, a prefix or lo-hi.
func rangeString(r addrRange) string {
	if r.lo == r.hi {
		return r.lo.String()
	}
	if ps := rangePrefixes(r); len(ps) == 1 {
		return ps[0].String()
	}
	return r.lo.String() + "-" + r.hi.String()
}

func nftSet(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return "{ " + strings.Join(items, ", ") + " }"
}

// chainHeader is the first line of the body of d's chain.
func chainHeader(d Direction, drop bool) string {
	p := "accept"
	if drop && d == In {
		p = "drop"
	}
	return "type filter hook " + d.chain() + " priority filter; policy " + p + ";"
}

// NFT renders the input chain portolan would write for rs, in nft syntax:
// the chain header, then one line per kernel rule. Rules without ids get
// provisional ones.
func (rs *Ruleset) NFT() ([]string, error) {
	chains, err := rs.NFTChains()
	if err != nil {
		return nil, err
	}
	return chains[0].Lines, nil
}

// ChainNFT is one chain of portolan's table in nft syntax.
type ChainNFT struct {
	Name  string   // input, forward, output
	Lines []string // the header, then one line per kernel rule
}

// NFTChains renders every chain portolan would write for rs: input, and
// forward and output when rules of those directions need them.
func (rs *Ruleset) NFTChains() ([]ChainNFT, error) {
	c := rs.Clone()
	c.Grouped()
	assignIDs(c)
	comp, err := compile(c)
	if err != nil {
		return nil, err
	}
	var out []ChainNFT
	for _, d := range comp.dirs() {
		ch := ChainNFT{Name: d.chain(), Lines: []string{chainHeader(d, comp.drop)}}
		for i := range comp.rules {
			if comp.rules[i].dir == d {
				ch.Lines = append(ch.Lines, comp.rules[i].nftLine())
			}
		}
		out = append(out, ch)
	}
	return out, nil
}

// RuleNFT renders the kernel rules of one rule in nft syntax. Expiring
// rules name their expiry set by a provisional id.
func RuleNFT(r *Rule) ([]string, error) {
	c := *r
	if c.id == 0 {
		c.id = 1
	}
	ks, _, err := compileRule(&c)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ks))
	for i := range ks {
		out[i] = ks[i].nftLine()
	}
	return out, nil
}

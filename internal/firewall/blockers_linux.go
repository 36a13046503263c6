package firewall

import (
	"context"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"

	"portolan/internal/portspec"
)

// Blockers lists what other tables drop or reject at the input hook: base
// filter chains at input with policy drop, and drop and reject rules in
// them (and the chains they jump to) that match only a protocol and
// destination ports. Rules with other matches (addresses, interfaces,
// conntrack state) are left out: what they drop depends on more than the
// port. It only reads.
func (f *Firewall) Blockers(ctx context.Context) ([]Blocker, error) {
	c, chains, byKey, err := f.otherChains(ctx)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	type key = chainKey
	var bases []key
	for _, ch := range chains {
		switch ch.Table.Family {
		case nftables.TableFamilyIPv4, nftables.TableFamilyIPv6, nftables.TableFamilyINet:
		default:
			continue
		}
		if ch.Type == nftables.ChainTypeFilter && ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookInput {
			bases = append(bases, keyOf(ch))
		}
	}
	var out []Blocker
	for _, base := range bases {
		ch := byKey[base]
		name := familyName(base.fam) + " " + base.table
		var accepts []portMatch
		seen := map[key]bool{}
		queue := []key{base}
		for len(queue) > 0 {
			k := queue[0]
			queue = queue[1:]
			if seen[k] || byKey[k] == nil {
				continue
			}
			seen[k] = true
			rules, err := c.GetRules(byKey[k].Table, byKey[k])
			if err != nil {
				f.logger().Debug("skip chain", "table", k.table, "chain", k.chain, "err", err)
				continue
			}
			for _, r := range rules {
				m, verdict, jump, plain := filterOf(r.Exprs, k.fam)
				if jump != "" {
					queue = append(queue, key{k.fam, k.table, jump})
				}
				if !plain {
					continue
				}
				switch verdict {
				case "drop", "reject":
					out = append(out, Blocker{Table: name, Chain: k.chain, Verdict: verdict, Proto: m.proto, Lo: m.lo, Hi: m.hi})
				case "accept":
					accepts = append(accepts, m)
				}
			}
		}
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			out = append(out, Blocker{Table: name, Chain: base.chain, Verdict: "drop", Policy: true, Accepts: accepts})
		}
	}
	return out, nil
}

// portMatcher reads the protocol and destination-port matches of a rule,
// one expression at a time, as nft and iptables-nft write them.
type portMatcher struct {
	fam    nftables.TableFamily
	m      portMatch
	loaded string // what register 1 holds: "proto", "dport", "nfproto" or ""
}

// step reads e and reports whether it is one of the expressions of a
// protocol or port match.
func (p *portMatcher) step(e expr.Any) bool {
	switch e := e.(type) {
	case *expr.Meta:
		p.loaded = ""
		switch {
		case e.Key == expr.MetaKeyL4PROTO && !e.SourceRegister:
			p.loaded = "proto"
		case e.Key == expr.MetaKeyNFPROTO && !e.SourceRegister:
			p.loaded = "nfproto" // the dependency of a header match in inet
		default:
			return false
		}
	case *expr.Payload:
		p.loaded = ""
		switch {
		case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
			p.loaded = "dport"
		case e.Base == expr.PayloadBaseNetworkHeader && e.Len == 1 &&
			((p.fam == nftables.TableFamilyIPv4 && e.Offset == 9) || (p.fam == nftables.TableFamilyIPv6 && e.Offset == 6)):
			p.loaded = "proto"
		default:
			return false
		}
	case *expr.Cmp:
		switch {
		case p.loaded == "nfproto":
		case p.loaded == "proto" && len(e.Data) == 1 && e.Op == expr.CmpOpEq:
			proto, ok := protoOfNumber(e.Data[0])
			p.m.proto = proto
			return ok
		case p.loaded == "dport" && len(e.Data) == 2:
			port := portspec.Port(binaryutil.BigEndian.Uint16(e.Data))
			switch e.Op {
			case expr.CmpOpEq:
				p.m.lo, p.m.hi = port, port
			case expr.CmpOpGte: // nft writes a range as >= and <=
				p.m.lo = port
			case expr.CmpOpLte:
				p.m.hi = port
			default:
				return false
			}
		default:
			return false
		}
	case *expr.Range:
		if p.loaded != "dport" || e.Op != expr.CmpOpEq || len(e.FromData) != 2 || len(e.ToData) != 2 {
			return false
		}
		p.m.lo = portspec.Port(binaryutil.BigEndian.Uint16(e.FromData))
		p.m.hi = portspec.Port(binaryutil.BigEndian.Uint16(e.ToData))
	case *expr.Match:
		switch info := e.Info.(type) {
		case *xt.Tcp:
			p.m.proto, p.m.lo, p.m.hi = portspec.TCP, portspec.Port(info.DstPorts[0]), portspec.Port(info.DstPorts[1])
		case *xt.Udp:
			p.m.proto, p.m.lo, p.m.hi = portspec.UDP, portspec.Port(info.DstPorts[0]), portspec.Port(info.DstPorts[1])
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// match returns what was read: ">= lo" alone runs to 65535.
func (p *portMatcher) match() portMatch {
	m := p.m
	if m.lo != 0 && m.hi == 0 {
		m.hi = 65535
	}
	return m
}

// filterOf reads a rule that matches only a protocol and destination
// ports (nft or iptables-nft, with counters): what it matches, its
// verdict, and the chain it jumps to. plain is false when the rule
// matches anything else.
func filterOf(ex []expr.Any, fam nftables.TableFamily) (m portMatch, verdict, jump string, plain bool) {
	plain = true
	pm := portMatcher{fam: fam}
	for _, e := range ex {
		if pm.step(e) {
			continue
		}
		switch e := e.(type) {
		case *expr.Counter:
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictDrop:
				verdict = "drop"
			case expr.VerdictAccept:
				verdict = "accept"
			case expr.VerdictJump, expr.VerdictGoto:
				jump = e.Chain
			}
		case *expr.Reject:
			verdict = "reject"
		case *expr.Target:
			switch e.Name {
			case "REJECT":
				verdict = "reject"
			case "DROP":
				verdict = "drop"
			case "ACCEPT":
				verdict = "accept"
			default:
				plain = false
			}
		default:
			plain = false
		}
	}
	m = pm.match()
	if m.lo == 0 && m.hi == 65535 {
		m.hi = 0 // every port: the zero range
	}
	return m, verdict, jump, plain
}

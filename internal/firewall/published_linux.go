package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// Published lists the ports other tables forward by DNAT: the rules with
// a DNAT (native or an iptables-nft xt target) in the chains reachable
// from nat prerouting base chains. It only reads. Chains it cannot parse
// are skipped.
func (f *Firewall) Published(ctx context.Context) ([]Publication, error) {
	c, chains, byKey, err := f.otherChains(ctx)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	type key = chainKey
	var queue []key
	for _, ch := range chains {
		if ch.Type == nftables.ChainTypeNAT && ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookPrerouting {
			queue = append(queue, keyOf(ch))
		}
	}
	var out []Publication
	seen := map[key]bool{}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		if seen[k] || byKey[k] == nil {
			continue
		}
		seen[k] = true
		ch := byKey[k]
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			f.logger().Debug("skip chain", "table", k.table, "chain", k.chain, "err", err)
			continue
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if v, ok := e.(*expr.Verdict); ok && (v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto) {
					queue = append(queue, key{k.fam, k.table, v.Chain})
				}
			}
			if p, ok := dnatOf(r.Exprs, k.fam); ok {
				p.Table, p.Chain = familyName(k.fam)+" "+k.table, k.chain
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// chainKey names a chain of any table.
type chainKey struct {
	fam          nftables.TableFamily
	table, chain string
}

func keyOf(ch *nftables.Chain) chainKey { return chainKey{ch.Table.Family, ch.Table.Name, ch.Name} }

// otherChains opens a connection (close it with CloseLasting) and lists
// the chains of every table but portolan's, in the kernel's order, and by
// name for following jumps.
func (f *Firewall) otherChains(ctx context.Context) (*nftables.Conn, []*nftables.Chain, map[chainKey]*nftables.Chain, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	c, err := f.dial(nil)
	if err != nil {
		return nil, nil, nil, err
	}
	all, err := c.ListChains()
	if err != nil {
		c.CloseLasting()
		return nil, nil, nil, fmt.Errorf("list chains: %w", err)
	}
	var chains []*nftables.Chain
	byKey := map[chainKey]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table.Family == nftables.TableFamilyINet && ch.Table.Name == TableName {
			continue
		}
		chains = append(chains, ch)
		byKey[keyOf(ch)] = ch
	}
	return c, chains, byKey, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return "family" + strconv.Itoa(int(f))
}

// dnatOf reads the protocol, ports and target of a rule with a DNAT.
func dnatOf(ex []expr.Any, fam nftables.TableFamily) (Publication, bool) {
	var p Publication
	var found bool
	pm := portMatcher{fam: fam}
	imm := map[uint32][]byte{}
	for _, e := range ex {
		if pm.step(e) {
			continue
		}
		switch e := e.(type) {
		case *expr.Immediate:
			imm[e.Register] = e.Data
		case *expr.NAT:
			if e.Type != expr.NATTypeDestNAT {
				continue
			}
			found = true
			if a, ok := netip.AddrFromSlice(imm[e.RegAddrMin]); ok && e.RegAddrMin != 0 {
				p.To = a.Unmap().String()
				if port := imm[e.RegProtoMin]; e.RegProtoMin != 0 && len(port) == 2 {
					p.To = netip.AddrPortFrom(a.Unmap(), binaryutil.BigEndian.Uint16(port)).String()
				}
			}
		case *expr.Target:
			if e.Name == "DNAT" {
				found = true
				if r, ok := e.Info.(*xt.NatRange); ok && r.MinIP != nil {
					if a, ok := netip.AddrFromSlice(r.MinIP); ok {
						p.To = a.Unmap().String()
					}
				}
			}
		}
	}
	m := pm.match()
	p.Proto, p.Lo, p.Hi = m.proto, m.lo, m.hi
	return p, found
}

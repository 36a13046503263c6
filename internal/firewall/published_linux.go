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

	"portolan/internal/portspec"
)

// Published lists the ports other tables forward by DNAT: the rules with
// a DNAT (native or an iptables-nft xt target) in the chains reachable
// from nat prerouting base chains. It only reads. Chains it cannot parse
// are skipped.
func (f *Firewall) Published(ctx context.Context) ([]Publication, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := f.dial(nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	type key struct {
		fam   nftables.TableFamily
		table string
		chain string
	}
	byKey := map[key]*nftables.Chain{}
	var queue []key
	for _, ch := range chains {
		k := key{ch.Table.Family, ch.Table.Name, ch.Name}
		byKey[k] = ch
		if k.fam == nftables.TableFamilyINet && k.table == TableName {
			continue
		}
		if ch.Type == nftables.ChainTypeNAT && ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookPrerouting {
			queue = append(queue, k)
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
	var loaded string // what register 1 holds: "proto", "dport" or ""
	imm := map[uint32][]byte{}
	for _, e := range ex {
		switch e := e.(type) {
		case *expr.Meta:
			loaded = ""
			if e.Key == expr.MetaKeyL4PROTO && !e.SourceRegister {
				loaded = "proto"
			}
		case *expr.Payload:
			loaded = ""
			switch {
			case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
				loaded = "dport"
			case e.Base == expr.PayloadBaseNetworkHeader && e.Len == 1 &&
				((fam == nftables.TableFamilyIPv4 && e.Offset == 9) || (fam == nftables.TableFamilyIPv6 && e.Offset == 6)):
				loaded = "proto"
			}
		case *expr.Cmp:
			switch {
			case loaded == "proto" && len(e.Data) == 1 && e.Op == expr.CmpOpEq:
				p.Proto, _ = protoOfNumber(e.Data[0])
			case loaded == "dport" && len(e.Data) == 2:
				port := portspec.Port(binaryutil.BigEndian.Uint16(e.Data))
				switch e.Op {
				case expr.CmpOpEq:
					p.Lo, p.Hi = port, port
				case expr.CmpOpGte: // nft writes a range as >= and <=
					p.Lo = port
				case expr.CmpOpLte:
					p.Hi = port
				}
			}
		case *expr.Range:
			if loaded == "dport" && e.Op == expr.CmpOpEq && len(e.FromData) == 2 && len(e.ToData) == 2 {
				p.Lo = portspec.Port(binaryutil.BigEndian.Uint16(e.FromData))
				p.Hi = portspec.Port(binaryutil.BigEndian.Uint16(e.ToData))
			}
		case *expr.Match:
			switch info := e.Info.(type) {
			case *xt.Tcp:
				p.Proto, p.Lo, p.Hi = portspec.TCP, portspec.Port(info.DstPorts[0]), portspec.Port(info.DstPorts[1])
			case *xt.Udp:
				p.Proto, p.Lo, p.Hi = portspec.UDP, portspec.Port(info.DstPorts[0]), portspec.Port(info.DstPorts[1])
			}
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
	if p.Lo != 0 && p.Hi == 0 {
		p.Hi = 65535 // ">= lo" alone
	}
	return p, found
}

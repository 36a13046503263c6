package watch

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"portolan/internal/firewall"
)

func (c *Capture) group() uint16 {
	if c.Group == 0 {
		return DefaultGroup
	}
	return c.Group
}

// conn checks ctx and opens a netlink connection to nftables in the
// namespace.
func (c *Capture) conn(ctx context.Context) (*nftables.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if c.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(c.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return conn, nil
}

func table() *nftables.Table {
	return &nftables.Table{Name: firewall.TableName, Family: nftables.TableFamilyINet}
}

func sets(t *nftables.Table) (v4, v6 *nftables.Set) {
	return &nftables.Set{Table: t, Name: Ban4SetName, KeyType: nftables.TypeIPAddr, HasTimeout: true},
		&nftables.Set{Table: t, Name: Ban6SetName, KeyType: nftables.TypeIP6Addr, HasTimeout: true}
}

func (c *Capture) prefixes() (int, int) {
	p4, p6 := c.Prefix4, c.Prefix6
	if p4 == 0 {
		p4 = 32
	}
	if p6 == 0 {
		p6 = 64
	}
	return p4, p6
}

// Install writes the chains and sets, in one transaction. Rules from an
// earlier run are replaced; bans that are still running stay.
func (c *Capture) Install(ctx context.Context) error {
	conn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := table()
	conn.AddTable(t)
	prio := nftables.ChainPriority(ChainPriority)
	policy := nftables.ChainPolicyAccept
	base := &nftables.Chain{Name: ChainName, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: &prio, Policy: &policy}
	capt := &nftables.Chain{Name: CaptureChainName, Table: t}
	conn.AddChain(base)
	conn.AddChain(capt)
	conn.FlushChain(base)
	conn.FlushChain(capt)
	s4, s6 := sets(t)
	existing, err := existingSets(conn, t)
	if err != nil {
		return fmt.Errorf("install watch rules: %w", err)
	}
	have := map[string]*nftables.Set{}
	for _, s := range existing {
		have[s.Name] = s
	}
	for i, s := range []*nftables.Set{s4, s6} {
		if h := have[s.Name]; h != nil && h.HasTimeout && h.KeyType.Bytes == s.KeyType.Bytes {
			if i == 0 {
				s4 = h
			} else {
				s6 = h
			}
			continue
		}
		if h := have[s.Name]; h != nil {
			conn.DelSet(h)
		}
		if err := conn.AddSet(s, nil); err != nil {
			return fmt.Errorf("install watch rules: add set %s: %w", s.Name, err)
		}
	}
	p4, p6 := c.prefixes()
	add := func(ch *nftables.Chain, tag string, ex ...expr.Any) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex, UserData: []byte(tagPrefix + tag)})
	}
	// Loopback is the host talking to itself: never a scanner to ban.
	add(base, "loopback",
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)},
		&expr.Verdict{Kind: expr.VerdictReturn})
	add(base, "ban4", banExprs(unix.NFPROTO_IPV4, 12, 4, p4, s4)...)
	add(base, "ban6", banExprs(unix.NFPROTO_IPV6, 8, 16, p6, s6)...)
	tcpFlags := func(mask, want byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{want}},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: CaptureChainName},
		}
	}
	// tcp flags & (syn|ack|rst) == syn: a connection attempt.
	add(base, "syn", tcpFlags(flagSYN|flagACK|flagRST, flagSYN)...)
	// tcp flags & (syn|ack|rst) == 0: FIN, NULL, Xmas and the like.
	add(base, "odd", tcpFlags(flagSYN|flagACK|flagRST, 0)...)
	if c.UDP {
		add(base, "udp",
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: CaptureChainName})
	}
	if c.ICMP {
		for _, e := range []struct{ proto, typ byte }{{unix.IPPROTO_ICMP, 8}, {unix.IPPROTO_ICMPV6, 128}} {
			add(base, "echo",
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{e.proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{e.typ}},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: CaptureChainName})
		}
	}
	rate, burst := c.Rate, c.Burst
	if rate == 0 {
		rate = DefaultRate
	}
	if burst == 0 {
		burst = DefaultBurst
	}
	add(capt, "over-rate",
		&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rate), Over: true, Unit: expr.LimitTimeSecond, Burst: burst},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictReturn})
	add(capt, "log",
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Group: c.group(), Snaplen: snaplen})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install watch rules in table inet %s: %w", firewall.TableName, err)
	}
	return nil
}

// banExprs: meta nfproto FAMILY, saddr & MASK @set counter drop.
func banExprs(family byte, off, size uint32, bits int, s *nftables.Set) []expr.Any {
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
	}
	if bits < int(size)*8 {
		ex = append(ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask(int(size), bits), Xor: make([]byte, size)})
	}
	return append(ex,
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop})
}

func mask(size, bits int) []byte {
	m := make([]byte, size)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// Ban adds p to the ban set for d; the kernel removes it when d is over.
// Banning a prefix banned already restarts its ban with d.
func (c *Capture) Ban(ctx context.Context, p netip.Prefix, d time.Duration) error {
	p4, p6 := c.prefixes()
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
	if want := map[bool]int{true: p4, false: p6}[p.Addr().Is4()]; p.Bits() != want {
		return fmt.Errorf("ban %s: prefix length %d; the ban rule masks to /%d", p, p.Bits(), want)
	}
	d = max(d.Round(time.Millisecond), time.Millisecond)
	s4, s6 := sets(table())
	s := s6
	if p.Addr().Is4() {
		s = s4
	}
	el := []nftables.SetElement{{Key: p.Masked().Addr().AsSlice(), Timeout: d}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.banned == nil {
		c.banned = map[netip.Prefix]time.Time{}
	}
	now := time.Now()
	conn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	// An element added again keeps its old timeout: take it out first
	// when it is there. If the kernel timed it out a moment before our
	// clock says, the delete fails the batch and the add goes alone.
	if end, ok := c.banned[p]; ok && end.After(now.Add(-time.Second)) {
		if err := conn.SetDeleteElements(s, el); err == nil {
			if err := conn.SetAddElements(s, el); err != nil {
				return fmt.Errorf("ban %s: %w", p, err)
			}
			if err := conn.Flush(); err == nil {
				c.banned[p] = now.Add(d)
				return nil
			}
		}
	}
	if err := conn.SetAddElements(s, el); err != nil {
		return fmt.Errorf("ban %s: %w", p, err)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("ban %s: %w", p, err)
	}
	c.banned[p] = now.Add(d)
	for k, end := range c.banned {
		if end.Before(now) {
			delete(c.banned, k)
		}
	}
	return nil
}

// Counters reads the rules' counters.
func (c *Capture) Counters(ctx context.Context) (Counters, error) {
	var out Counters
	conn, err := c.conn(ctx)
	if err != nil {
		return out, err
	}
	defer conn.CloseLasting()
	t := table()
	for _, name := range []string{ChainName, CaptureChainName} {
		rules, err := conn.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			return out, fmt.Errorf("read watch counters: %w", err)
		}
		for _, r := range rules {
			tag, ok := bytes.CutPrefix(r.UserData, []byte(tagPrefix))
			if !ok {
				continue
			}
			for _, e := range r.Exprs {
				ctr, ok := e.(*expr.Counter)
				if !ok {
					continue
				}
				switch string(tag) {
				case "over-rate":
					out.RateLimited += ctr.Packets
				case "ban4", "ban6":
					out.BannedPackets += ctr.Packets
				}
			}
		}
	}
	return out, nil
}

// Banned lists the prefixes banned now and the time left on each, as
// the kernel holds them.
func (c *Capture) Banned(ctx context.Context) (map[netip.Prefix]time.Duration, error) {
	conn, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.CloseLasting()
	p4, p6 := c.prefixes()
	s4, s6 := sets(table())
	out := map[netip.Prefix]time.Duration{}
	for _, s := range []*nftables.Set{s4, s6} {
		els, err := conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("read bans: %w", err)
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			bits := p6
			if a.Is4() {
				bits = p4
			}
			out[netip.PrefixFrom(a, bits)] = e.Expires
		}
	}
	return out, nil
}

// Remove deletes the watch chains and the ban sets, lifting every ban,
// in one transaction. It does nothing where they do not exist.
func (c *Capture) Remove(ctx context.Context) error {
	conn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := table()
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("remove watch rules: %w", err)
	}
	n := 0
	// The base chain jumps to the capture chain: it goes first.
	for _, name := range []string{ChainName, CaptureChainName} {
		for _, ch := range chains {
			if ch.Table.Name == t.Name && ch.Name == name {
				conn.FlushChain(ch)
				conn.DelChain(ch)
				n++
			}
		}
	}
	sets, err := existingSets(conn, t)
	if err != nil {
		return fmt.Errorf("remove watch rules: %w", err)
	}
	for _, s := range sets {
		if s.Name == Ban4SetName || s.Name == Ban6SetName {
			conn.DelSet(s)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("remove watch rules: %w", err)
	}
	return nil
}

// existingSets lists the sets of t; none when t does not exist.
func existingSets(conn *nftables.Conn, t *nftables.Table) ([]*nftables.Set, error) {
	tables, err := conn.ListTablesOfFamily(t.Family)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, have := range tables {
		if have.Name == t.Name {
			sets, err := conn.GetSets(t)
			if err != nil {
				return nil, fmt.Errorf("list sets: %w", err)
			}
			return sets, nil
		}
	}
	return nil, nil
}

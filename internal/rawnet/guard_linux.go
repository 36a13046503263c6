package rawnet

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftTableOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to the
// netlink socket that made it and goes when that socket closes, even if
// the process dies.
const nftTableOwner = 0x2

// Guard keeps the kernel from answering replies to our SYNs. A SYN-ACK to
// a port where no socket listens draws a reset from the kernel, which
// tears down the target's half-open connection and, on a target that
// rate-limits, costs answers; masscan asks its users to add a firewall
// rule by hand. Guard adds one itself: an nftables table of its own
// (inet family, owned by the guard's netlink socket) whose input chain
// drops TCP to the scanner's source ports, after the packet socket has
// seen them. It needs CAP_NET_ADMIN.
type Guard struct {
	conn  *nftables.Conn
	table *nftables.Table
	owned bool
}

// GuardPorts installs the rule for destination ports [lo, hi] in the
// calling thread's network namespace.
func GuardPorts(lo, hi uint16) (*Guard, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	g := &Guard{conn: c}
	name := fmt.Sprintf("portolan-scan-%d-%d", os.Getpid(), lo)
	for _, flags := range []uint32{nftTableOwner, 0} {
		g.table = &nftables.Table{Name: name, Family: nftables.TableFamilyINet, Flags: flags}
		g.owned = flags != 0
		if err = g.add(lo, hi); err == nil {
			return g, nil
		}
		// An older kernel without owner tables: a plain table, deleted
		// on Close.
	}
	c.CloseLasting()
	return nil, fmt.Errorf("nftables rule for ports %d-%d: %w", lo, hi, err)
}

func (g *Guard) add(lo, hi uint16) error {
	c := g.conn
	c.AddTable(g.table)
	ch := c.AddChain(&nftables.Chain{
		Name: "input", Table: g.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRaw,
	})
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	c.AddRule(&nftables.Rule{Table: g.table, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: port(lo), ToData: port(hi)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}

// Owned reports whether the kernel removes the rule by itself when the
// process exits (an owner table), not only on Close.
func (g *Guard) Owned() bool { return g.owned }

// Close removes the rule.
func (g *Guard) Close() error {
	g.conn.DelTable(g.table)
	err := g.conn.Flush()
	if cerr := g.conn.CloseLasting(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("remove nftables table %s: %w", g.table.Name, err)
	}
	return nil
}

package rawnet

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// guardPrefix starts the name of every guard table: portolan-scan-PID-PORT.
const guardPrefix = "portolan-scan-"

// Guard keeps the kernel from answering replies to our SYNs. A SYN-ACK to
// a port where no socket listens draws a reset from the kernel, which
// tears down the target's half-open connection and, on a target that
// rate-limits, costs answers; masscan asks its users to add a firewall
// rule by hand. Guard adds one itself: an nftables table of its own
// (inet family, named for the process) whose input chain drops TCP
// replies (ACK set) to the scanner's source ports, after the packet socket
// has seen them. It needs CAP_NET_ADMIN.
//
// Close removes the table. A process killed before Close leaves it: the
// kernel's owner tables (NFT_TABLE_F_OWNER), which go with their netlink
// socket, cannot be asked for through google/nftables v0.3.0, whose
// AddTable sends no flags. So every new guard first deletes the tables of
// guards whose process is gone.
type Guard struct {
	conn  *nftables.Conn
	table *nftables.Table
}

// GuardPorts installs the rule for destination ports [lo, hi] in the
// calling thread's network namespace.
func GuardPorts(lo, hi uint16) (*Guard, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	g := &Guard{conn: c}
	removeStaleGuards(c)
	name := fmt.Sprintf("%s%d-%d", guardPrefix, os.Getpid(), lo)
	g.table = &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	if err = g.add(lo, hi); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("nftables rule for ports %d-%d: %w", lo, hi, err)
	}
	return g, nil
}

// removeStaleGuards deletes the guard tables of processes that no longer
// run (killed before their Close), in this namespace. A table it cannot
// read or delete is left: the new guard does not depend on it.
func removeStaleGuards(c *nftables.Conn) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return
	}
	stale := 0
	for _, t := range tables {
		pid, ok := guardPID(t.Name)
		if !ok || pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		c.DelTable(t)
		stale++
	}
	if stale > 0 {
		c.Flush()
	}
}

// guardPID reads the process id out of a guard table's name.
func guardPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, guardPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(p)
	return pid, ok && err == nil && pid > 0
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
		// Replies only (SYN-ACK, RST-ACK): they carry ACK. A probe's SYN
		// does not, and on loopback it arrives at a port of the block
		// when the scan covers one.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{FlagACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}

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

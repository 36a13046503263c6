package firewall

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

var (
	doorKey4    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	doorKey6    = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	doorPortKey = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
)

// doorPortKeyBytes encodes proto . port as a concatenation key: each part
// padded to four bytes.
func doorPortKeyBytes(p DoorPort) []byte {
	return []byte{protoNumber(p.Proto), 0, 0, 0, byte(p.Port >> 8), byte(p.Port), 0, 0}
}

func doorOpenKey(src netip.Addr, p DoorPort) []byte {
	return append(src.Unmap().AsSlice(), doorPortKeyBytes(p)...)
}

func doorTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// SetDoors writes the doors' chain and its protect and watch sets in one
// transaction, making the table if needed. The sets of open doors are kept
// when they exist, so a reload does not close what is open.
func (f *Firewall) SetDoors(ctx context.Context, d *Doors) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := f.dial(batchBuffers(8, 16+len(d.Protect)+len(d.Watch)))
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	wrap := func(err error) error { return fmt.Errorf("set doors in table inet %s: %w", TableName, err) }
	t := doorTable()
	c.AddTable(t)
	existing := map[string]*nftables.Set{}
	if sets, err := c.GetSets(t); err == nil {
		for _, s := range sets {
			existing[s.Name] = s
		}
	}
	policy := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(doorPriority)
	ch := &nftables.Chain{Name: DoorChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: &prio, Policy: &policy}
	c.AddChain(ch)
	c.FlushChain(ch)

	var id uint32
	set := func(name string, key nftables.SetDatatype, timeout bool, ports []DoorPort) (*nftables.Set, error) {
		var elems []nftables.SetElement
		for _, p := range ports {
			elems = append(elems, nftables.SetElement{Key: doorPortKeyBytes(p)})
		}
		if s := existing[name]; s != nil {
			if !timeout {
				c.FlushSet(s)
				if len(elems) > 0 {
					if err := c.SetAddElements(s, elems); err != nil {
						return nil, err
					}
				}
			}
			return s, nil
		}
		id++
		s := &nftables.Set{Table: t, Name: name, ID: id, KeyType: key, Concatenation: true, HasTimeout: timeout}
		if err := c.AddSet(s, elems); err != nil {
			return nil, fmt.Errorf("add set %s: %w", name, err)
		}
		return s, nil
	}
	open4, err := set(doorOpen4, doorKey4, true, nil)
	if err != nil {
		return wrap(err)
	}
	open6, err := set(doorOpen6, doorKey6, true, nil)
	if err != nil {
		return wrap(err)
	}
	protect, err := set(doorProtect, doorPortKey, false, d.Protect)
	if err != nil {
		return wrap(err)
	}
	watch, err := set(doorWatch, doorPortKey, false, d.Watch)
	if err != nil {
		return wrap(err)
	}

	rule := func(ex ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex}) }
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	lookup := func(s *nftables.Set) *expr.Lookup {
		return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}
	}
	// Established connections outlive the door that let them in.
	rule(&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}, accept)
	// Registers: 1 is the 16-byte register whose 4-byte parts are 8, 9...
	// (NFT_REG32_00...), so a concatenation loads its parts one after the
	// other from register 1.
	for _, fam := range []int{4, 6} {
		src, _, size := addrOffsets(fam)
		s := open4
		if fam == 6 {
			s = open6
		}
		next := uint32(8 + size/4)
		rule(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto(fam)}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: src, Len: size},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
			&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			lookup(s), accept)
	}
	portKey := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	rule(append(portKey, lookup(protect), drop)...)
	if d.NoLog {
		rule(append(portKey, lookup(watch), drop)...)
	} else {
		rule(append(portKey, lookup(watch),
			&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_QTHRESHOLD,
				Group: d.Group, QThreshold: 1, Data: []byte(d.Prefix)},
			drop)...)
	}
	if err := c.Flush(); err != nil {
		return wrap(err)
	}
	return nil
}

// RemoveDoors deletes the doors' chain and sets, closing every door.
func (f *Firewall) RemoveDoors(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := f.dial(nil)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := doorTable()
	sets, err := c.GetSets(t)
	if err != nil {
		return nil // no table: no doors
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("remove doors: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == TableName && ch.Name == DoorChain {
			c.FlushChain(ch)
			c.DelChain(ch)
		}
	}
	for _, s := range sets {
		switch s.Name {
		case doorOpen4, doorOpen6, doorProtect, doorWatch:
			c.DelSet(s)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove doors: %w", err)
	}
	return nil
}

// OpenDoor lets src reach ports until the kernel times the elements out
// after d. Opening what is open restarts its time.
func (f *Firewall) OpenDoor(ctx context.Context, src netip.Addr, ports []DoorPort, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	src = src.Unmap()
	s := &nftables.Set{Table: doorTable(), Name: doorOpen4, KeyType: doorKey4, Concatenation: true, HasTimeout: true}
	if src.Is6() {
		s.Name, s.KeyType = doorOpen6, doorKey6
	}
	elems := make([]nftables.SetElement, len(ports))
	for i, p := range ports {
		elems[i] = nftables.SetElement{Key: doorOpenKey(src, p), Timeout: max(d, time.Millisecond)}
	}
	c, err := f.dial(nil)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if err := c.SetAddElements(s, elems); err != nil {
		return fmt.Errorf("open door for %s: %w", src, err)
	}
	// One round trip: adding an element that exists restarts its timeout
	// (kernels that predate that keep the old one).
	if err := c.Flush(); err != nil {
		return fmt.Errorf("open door for %s: %w", src, err)
	}
	return nil
}

// DoorHolders returns who holds doors open, on which port and until when,
// and the protected ports. Both are empty when there are no doors.
func (f *Firewall) DoorHolders(ctx context.Context) ([]DoorHolder, []DoorPort, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	c, err := f.dial(nil)
	if err != nil {
		return nil, nil, err
	}
	defer c.CloseLasting()
	sets, err := c.GetSets(doorTable())
	if err != nil {
		return nil, nil, nil
	}
	now := f.now()
	var hs []DoorHolder
	var protect []DoorPort
	for _, s := range sets {
		if s.Name != doorOpen4 && s.Name != doorOpen6 && s.Name != doorProtect {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		for _, e := range elems {
			if s.Name == doorProtect {
				if p, ok := doorPortOfKey(e.Key); ok {
					protect = append(protect, p)
				}
				continue
			}
			n := len(e.Key) - 8
			if n != 4 && n != 16 {
				continue
			}
			a, _ := netip.AddrFromSlice(e.Key[:n])
			p, ok := doorPortOfKey(e.Key[n:])
			if !ok {
				continue
			}
			hs = append(hs, DoorHolder{Src: a, Port: p, Expires: now.Add(e.Expires)})
		}
	}
	return hs, protect, nil
}

func doorPortOfKey(k []byte) (DoorPort, bool) {
	if len(k) < 8 {
		return DoorPort{}, false
	}
	proto, ok := protoOfNumber(k[0])
	return DoorPort{Proto: proto, Port: portspec.Port(binary.BigEndian.Uint16(k[4:]))}, ok
}

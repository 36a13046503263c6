package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file translates kernel rules to and from google/nftables
// expressions. The expressions follow what nft itself generates, so that
// `nft list ruleset` shows portolan's rules in plain nft syntax.

const (
	nfprotoIPv4 = unix.NFPROTO_IPV4
	nfprotoIPv6 = unix.NFPROTO_IPV6

	dynsetOpUpdate = 1 // NFT_DYNSET_OP_UPDATE

	ip6HopLimitOffset = 7 // in the IPv6 header
)

// addrOffsets returns the network-header offsets of the source and
// destination address of family f, and the address length.
func addrOffsets(f int) (src, dst, size uint32) {
	if f == 6 {
		return 8, 24, 16
	}
	return 12, 16, 4
}

func nfproto(f int) byte {
	if f == 6 {
		return nfprotoIPv6
	}
	return nfprotoIPv4
}

func ifnameBytes(name string) []byte {
	if p, ok := strings.CutSuffix(name, "*"); ok {
		return []byte(p) // a prefix match compares only the prefix
	}
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// anonSet is an anonymous set a rule needs, added in the same batch just
// before the rule.
type anonSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// encoder turns krules into google/nftables rules.
type encoder struct {
	table  *nftables.Table
	chains map[Direction]*nftables.Chain
	named  map[string]*nftables.Set // named sets by name, for set ids within a batch
	lastID uint32                   // the last set id given in the batch
}

// setID numbers a set of the batch. An id only has to be unique within its
// batch; google/nftables numbers sets with id 0 from a package-wide counter
// without a lock, which two batches built at once (a rollback guard
// restoring while another Apply runs, in one process) would race on.
func (en *encoder) setID() uint32 {
	en.lastID++
	return en.lastID
}

// rule returns the kernel rule for k and the anonymous sets it uses.
func (en *encoder) rule(k *krule) (*nftables.Rule, []anonSet, error) {
	var ex []expr.Any
	var sets []anonSet
	lookup := func(keyType nftables.SetDatatype, interval bool, elems []nftables.SetElement) {
		// "__set%d": the kernel numbers anonymous sets' names.
		s := &nftables.Set{Table: en.table, ID: en.setID(), Name: "__set%d", Anonymous: true, Constant: true, Interval: interval, KeyType: keyType}
		sets = append(sets, anonSet{s, elems})
		ex = append(ex, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
	}
	load := func(e expr.Any) { ex = append(ex, e) }

	chain := en.chains[k.dir]
	if chain == nil {
		return nil, nil, fmt.Errorf("no %s chain in the batch", k.dir.chain())
	}
	ifname, iif := expr.MetaKeyIIFNAME, expr.MetaKeyIIF
	if k.dir == Out {
		ifname, iif = expr.MetaKeyOIFNAME, expr.MetaKeyOIF
	}
	if k.iface != "" {
		load(&expr.Meta{Key: ifname, Register: 1})
		load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(k.iface)})
	}
	if k.iif != 0 {
		load(&expr.Meta{Key: iif, Register: 1})
		load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(k.iif)})
	}
	if k.expireSet != "" {
		s := en.named[k.expireSet]
		if s == nil {
			return nil, nil, fmt.Errorf("expiry set %s not in the batch", k.expireSet)
		}
		load(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1})
		load(&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
	}
	if k.family != 0 {
		load(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1})
		load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto(k.family)}})
	}
	srcOff, dstOff, size := addrOffsets(k.family)
	addrType := nftables.TypeIPAddr
	if k.family == 6 {
		addrType = nftables.TypeIP6Addr
	}
	matchAddrs := func(off uint32, rs []addrRange) {
		load(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size})
		if len(rs) > 1 {
			lookup(addrType, true, intervalElems(rs))
			return
		}
		r := rs[0]
		switch ps := rangePrefixes(r); {
		case r.lo == r.hi:
			load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.lo.AsSlice()})
		case len(ps) == 1:
			load(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: prefixMask(ps[0]), Xor: make([]byte, size)})
			load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.lo.AsSlice()})
		default:
			load(&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: r.lo.AsSlice(), ToData: r.hi.AsSlice()})
		}
	}
	if k.saddr != nil {
		matchAddrs(srcOff, k.saddr)
	}
	if k.daddr != nil {
		matchAddrs(dstOff, k.daddr)
	}
	if k.hopLimit != 0 {
		if k.family != 6 {
			return nil, nil, fmt.Errorf("hop limit without ipv6")
		}
		load(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ip6HopLimitOffset, Len: 1})
		load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{k.hopLimit}})
	}
	if len(k.protos) > 0 {
		load(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1})
		if len(k.protos) == 1 {
			load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{k.protos[0]}})
		} else {
			elems := make([]nftables.SetElement, len(k.protos))
			for i, p := range k.protos {
				elems[i] = nftables.SetElement{Key: []byte{p}}
			}
			lookup(nftables.TypeInetProto, false, elems)
		}
	}
	if k.ports != nil {
		if k.origPorts {
			// The port the client connected to, before any DNAT.
			load(&expr.Ct{Key: expr.CtKeyPROTODST, Register: 1, Direction: 0})
		} else {
			load(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		}
		switch p := k.ports[0]; {
		case len(k.ports) > 1:
			lookup(nftables.TypeInetService, true, portElems(k.ports))
		case p.lo == p.hi:
			load(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.lo)})
		default:
			load(&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binaryutil.BigEndian.PutUint16(p.lo), ToData: binaryutil.BigEndian.PutUint16(p.hi)})
		}
	}
	if k.icmpTypes != nil {
		if !slices.Equal(k.protos, []uint8{protoICMPv6}) || k.ports != nil {
			return nil, nil, fmt.Errorf("icmpv6 types without ipv6-icmp alone")
		}
		load(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1})
		elems := make([]nftables.SetElement, len(k.icmpTypes))
		for i, t := range k.icmpTypes {
			elems[i] = nftables.SetElement{Key: []byte{t}}
		}
		lookup(nftables.TypeICMP6Type, false, elems)
	}
	if k.ctState != 0 {
		load(&expr.Ct{Key: expr.CtKeySTATE, Register: 1})
		load(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(k.ctState), Xor: make([]byte, 4)})
		load(&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
	}
	// meterKey loads the source as meter m keys it and returns m's set.
	meterKey := func(m *meter) (*nftables.Set, error) {
		s := en.named[m.set]
		if s == nil {
			return nil, fmt.Errorf("meter set %s not in the batch", m.set)
		}
		load(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: srcOff, Len: size})
		if m.mask != nil {
			load(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: m.mask, Xor: make([]byte, size)})
		}
		return s, nil
	}
	if m := k.meter; m != nil {
		s, err := meterKey(m)
		if err != nil {
			return nil, nil, err
		}
		load(&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: dynsetOpUpdate,
			Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: m.rate, Over: true, Unit: expr.LimitTime(m.unit), Burst: m.burst}}})
	}
	if m := k.notIn; m != nil {
		s, err := meterKey(m)
		if err != nil {
			return nil, nil, err
		}
		load(&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true})
	}
	if k.logLimit {
		load(&expr.Limit{Type: expr.LimitTypePkts, Rate: logRate, Unit: expr.LimitTime(logUnit), Burst: logBurst})
	}
	switch k.verdict {
	case vAccept:
		load(&expr.Verdict{Kind: expr.VerdictAccept})
	case vDrop:
		load(&expr.Verdict{Kind: expr.VerdictDrop})
	case vRejectTCP:
		load(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	case vRejectICMPX:
		load(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	case vLog:
		l := &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(k.logPrefix)}
		if k.logGroup != 0 {
			l.Key |= 1 << unix.NFTA_LOG_GROUP
			l.Group = k.logGroup
		}
		load(l)
	default:
		return nil, nil, fmt.Errorf("kernel rule without a verdict")
	}
	return &nftables.Rule{Table: en.table, Chain: chain, Exprs: ex, UserData: encodeUserdata(k)}, sets, nil
}

// intervalElems encodes address ranges as interval set elements: a start
// element and, unless the range runs to the last address, an end element
// one past it.
func intervalElems(rs []addrRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.lo.AsSlice()})
		if next := r.hi.Next(); next.IsValid() {
			out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

func portElems(ps []portRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, p := range ps {
		out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p.lo)})
		if p.hi != 0xffff {
			out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p.hi + 1), IntervalEnd: true})
		}
	}
	return out
}

// elemRanges decodes the elements of a set back into inclusive ranges of
// keys of size bytes. For a set without intervals each key is its own
// range.
func elemRanges(elems []nftables.SetElement, size int, interval bool) ([][2][]byte, error) {
	for _, e := range elems {
		if len(e.Key) != size {
			return nil, fmt.Errorf("set element of %d bytes, want %d", len(e.Key), size)
		}
	}
	es := slices.Clone(elems)
	slices.SortStableFunc(es, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		// At one key, an end closes the previous range before a start opens the next.
		switch {
		case a.IntervalEnd && !b.IntervalEnd:
			return -1
		case !a.IntervalEnd && b.IntervalEnd:
			return 1
		}
		return 0
	})
	var out [][2][]byte
	if !interval {
		for _, e := range es {
			out = append(out, [2][]byte{e.Key, e.Key})
		}
		return out, nil
	}
	var open []byte
	for _, e := range es {
		switch {
		case !e.IntervalEnd:
			if open != nil {
				return nil, errors.New("interval set: two starts in a row")
			}
			open = e.Key
		case open != nil:
			out = append(out, [2][]byte{open, decBytes(e.Key)})
			open = nil
		}
		// An end with nothing open is nft's marker at the bottom of the range.
	}
	if open != nil {
		top := bytes.Repeat([]byte{0xff}, size)
		out = append(out, [2][]byte{open, top})
	}
	return out, nil
}

// decBytes returns b-1 as a big-endian number (b is not zero).
func decBytes(b []byte) []byte {
	c := slices.Clone(b)
	for i := len(c) - 1; i >= 0; i-- {
		c[i]--
		if c[i] != 0xff {
			break
		}
	}
	return c
}

// setData is what the decoder knows of the sets of the table.
type setData struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// decodeRule reads a kernel rule back into a krule. sets returns a set
// and its elements by name. A rule that is not in the shape portolan
// writes returns an error.
func decodeRule(r *nftables.Rule, dir Direction, sets func(name string) (*setData, error)) (krule, error) {
	k := krule{dir: dir}
	if !decodeUserdata(r.UserData, &k) {
		return krule{}, errors.New("no portolan tag")
	}
	ex := r.Exprs
	i := 0
	next := func() expr.Any {
		if i >= len(ex) {
			return nil
		}
		e := ex[i]
		i++
		return e
	}
	bad := func(what string) (krule, error) {
		return krule{}, fmt.Errorf("expression %d: unexpected %s", i, what)
	}
	cmpEq := func() ([]byte, bool) {
		c, ok := next().(*expr.Cmp)
		if !ok || c.Op != expr.CmpOpEq || c.Register != 1 {
			return nil, false
		}
		return c.Data, true
	}
	lookupSet := func(l *expr.Lookup) (*setData, bool) {
		if l.SourceRegister != 1 || l.Invert || l.IsDestRegSet {
			return nil, false
		}
		s, err := sets(l.SetName)
		return s, err == nil
	}
	// matchValues reads what follows a load of size bytes: a comparison,
	// a prefix, a range or a set lookup, as inclusive ranges.
	matchValues := func(size int, prefixOK bool) ([][2][]byte, bool) {
		switch e := next().(type) {
		case *expr.Cmp:
			if e.Op != expr.CmpOpEq || e.Register != 1 || len(e.Data) != size {
				return nil, false
			}
			return [][2][]byte{{e.Data, e.Data}}, true
		case *expr.Bitwise:
			if !prefixOK || e.SourceRegister != 1 || e.DestRegister != 1 || int(e.Len) != size || len(e.Mask) != size || !isZero(e.Xor) {
				return nil, false
			}
			v, ok := cmpEq()
			if !ok || len(v) != size {
				return nil, false
			}
			hi := slices.Clone(v)
			for j := range hi {
				hi[j] |= ^e.Mask[j]
			}
			return [][2][]byte{{v, hi}}, true
		case *expr.Range:
			if e.Op != expr.CmpOpEq || e.Register != 1 || len(e.FromData) != size || len(e.ToData) != size {
				return nil, false
			}
			return [][2][]byte{{e.FromData, e.ToData}}, true
		case *expr.Lookup:
			s, ok := lookupSet(e)
			if !ok || !s.set.Anonymous {
				return nil, false
			}
			rs, err := elemRanges(s.elems, size, s.set.Interval)
			return rs, err == nil && len(rs) > 0
		}
		return nil, false
	}
	addrRanges := func(size uint32, vals [][2][]byte) []addrRange {
		out := make([]addrRange, len(vals))
		for j, v := range vals {
			lo, _ := netip.AddrFromSlice(v[0])
			hi, _ := netip.AddrFromSlice(v[1])
			out[j] = addrRange{lo, hi}
		}
		return out
	}
	for i < len(ex) {
		switch e := next().(type) {
		case *expr.Meta:
			if e.SourceRegister || e.Register != 1 {
				return bad("meta")
			}
			switch e.Key {
			case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
				if (e.Key == expr.MetaKeyOIFNAME) != (dir == Out) {
					return bad("interface name match of the other direction")
				}
				v, ok := cmpEq()
				if !ok || len(v) == 0 || len(v) > unix.IFNAMSIZ {
					return bad("iifname match")
				}
				if len(v) == unix.IFNAMSIZ {
					k.iface = string(bytes.TrimRight(v, "\x00"))
				} else {
					k.iface = string(v) + "*"
				}
			case expr.MetaKeyIIF, expr.MetaKeyOIF:
				if (e.Key == expr.MetaKeyOIF) != (dir == Out) {
					return bad("interface match of the other direction")
				}
				v, ok := cmpEq()
				if !ok || len(v) != 4 {
					return bad("iif match")
				}
				k.iif = binaryutil.NativeEndian.Uint32(v)
			case expr.MetaKeyNFPROTO:
				switch n := next().(type) {
				case *expr.Lookup:
					s, ok := lookupSet(n)
					if !ok || s.set.Anonymous {
						return bad("nfproto lookup")
					}
					k.expireSet = n.SetName
				case *expr.Cmp:
					if n.Op != expr.CmpOpEq || n.Register != 1 || len(n.Data) != 1 {
						return bad("nfproto match")
					}
					switch n.Data[0] {
					case nfprotoIPv4:
						k.family = 4
					case nfprotoIPv6:
						k.family = 6
					default:
						return bad("nfproto")
					}
				default:
					return bad("nfproto match")
				}
			case expr.MetaKeyL4PROTO:
				vals, ok := matchValues(1, false)
				if !ok {
					return bad("l4proto match")
				}
				for _, v := range vals {
					for p := int(v[0][0]); p <= int(v[1][0]); p++ {
						k.protos = append(k.protos, uint8(p))
					}
				}
			default:
				return bad("meta key")
			}
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad || e.DestRegister != 1 {
				return bad("payload")
			}
			switch e.Base {
			case expr.PayloadBaseNetworkHeader:
				if k.family == 0 {
					return bad("network header match without a family")
				}
				if k.family == 6 && e.Offset == ip6HopLimitOffset && e.Len == 1 {
					v, ok := cmpEq()
					if !ok || len(v) != 1 || v[0] == 0 {
						return bad("hop limit match")
					}
					k.hopLimit = v[0]
					continue
				}
				src, dst, size := addrOffsets(k.family)
				if e.Len != size || (e.Offset != src && e.Offset != dst) {
					return bad("network header offset")
				}
				if e.Offset == src {
					// A meter (update @set) or the check that the source
					// is in it (!= @set), either after a mask.
					var mask []byte
					at := i
					if b, ok := ex[at].(*expr.Bitwise); ok && at+1 < len(ex) && b.SourceRegister == 1 && b.DestRegister == 1 && int(b.Len) == int(size) && len(b.Mask) == int(size) && isZero(b.Xor) {
						switch ex[at+1].(type) {
						case *expr.Dynset, *expr.Lookup:
							if l, ok := ex[at+1].(*expr.Lookup); !ok || l.Invert {
								mask, at = b.Mask, at+1
							}
						}
					}
					if d, ok := ex[at].(*expr.Dynset); ok {
						i = at + 1
						m, ok := decodeMeter(d)
						if !ok {
							return bad("dynset")
						}
						m.mask = mask
						k.meter = m
						continue
					}
					if l, ok := ex[at].(*expr.Lookup); ok && l.Invert {
						i = at + 1
						if l.SourceRegister != 1 || l.IsDestRegSet {
							return bad("meter lookup")
						}
						if _, err := sets(l.SetName); err != nil {
							return bad("meter lookup set")
						}
						k.notIn = &meter{set: l.SetName, mask: mask}
						continue
					}
				}
				vals, ok := matchValues(int(size), true)
				if !ok {
					return bad("address match")
				}
				if e.Offset == src {
					k.saddr = addrRanges(size, vals)
				} else {
					k.daddr = addrRanges(size, vals)
				}
			case expr.PayloadBaseTransportHeader:
				if e.Offset == 0 && e.Len == 1 && slices.Equal(k.protos, []uint8{protoICMPv6}) {
					vals, ok := matchValues(1, false)
					if !ok {
						return bad("icmpv6 type match")
					}
					for _, v := range vals {
						for t := int(v[0][0]); t <= int(v[1][0]); t++ {
							k.icmpTypes = append(k.icmpTypes, uint8(t))
						}
					}
					continue
				}
				if e.Offset != 2 || e.Len != 2 {
					return bad("transport header offset")
				}
				vals, ok := matchValues(2, false)
				if !ok {
					return bad("port match")
				}
				for _, v := range vals {
					k.ports = append(k.ports, portRange{binaryutil.BigEndian.Uint16(v[0]), binaryutil.BigEndian.Uint16(v[1])})
				}
			default:
				return bad("payload base")
			}
		case *expr.Ct:
			if e.Key == expr.CtKeyPROTODST && e.Register == 1 && !e.SourceRegister && e.Direction == 0 && k.ports == nil && len(k.protos) > 0 {
				vals, ok := matchValues(2, false)
				if !ok {
					return bad("original port match")
				}
				for _, v := range vals {
					k.ports = append(k.ports, portRange{binaryutil.BigEndian.Uint16(v[0]), binaryutil.BigEndian.Uint16(v[1])})
				}
				k.origPorts = true
				continue
			}
			if e.Key != expr.CtKeySTATE || e.Register != 1 || e.SourceRegister {
				return bad("ct")
			}
			b, ok := next().(*expr.Bitwise)
			if !ok || b.Len != 4 || len(b.Mask) != 4 || !isZero(b.Xor) {
				return bad("ct state mask")
			}
			c, ok := next().(*expr.Cmp)
			if !ok || c.Op != expr.CmpOpNeq || !isZero(c.Data) {
				return bad("ct state match")
			}
			k.ctState = binaryutil.NativeEndian.Uint32(b.Mask)
		case *expr.Limit:
			if e.Type != expr.LimitTypePkts || e.Over || e.Rate != logRate || uint64(e.Unit) != logUnit || e.Burst != logBurst || k.logLimit {
				return bad("limit")
			}
			k.logLimit = true
		case *expr.Log:
			// The kernel reports its defaults for kernel-log rules: level
			// warning, no flags.
			known := uint32(1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_LEVEL | 1<<unix.NFTA_LOG_FLAGS)
			if e.Key&^known != 0 || (e.Key&(1<<unix.NFTA_LOG_LEVEL) != 0 && e.Level != expr.LogLevelWarning) || e.Flags != 0 {
				return bad("log options")
			}
			k.verdict, k.logPrefix, k.logGroup = vLog, string(bytes.TrimRight(e.Data, "\x00")), e.Group
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				k.verdict = vAccept
			case expr.VerdictDrop:
				k.verdict = vDrop
			default:
				return bad("verdict")
			}
		case *expr.Reject:
			switch {
			case e.Type == unix.NFT_REJECT_TCP_RST:
				k.verdict = vRejectTCP
			case e.Type == unix.NFT_REJECT_ICMPX_UNREACH && e.Code == unix.NFT_REJECT_ICMPX_PORT_UNREACH:
				k.verdict = vRejectICMPX
			default:
				return bad("reject type")
			}
		default:
			return bad(fmt.Sprintf("expression %T", e))
		}
		if k.verdict != 0 && i < len(ex) {
			return bad("expression after the verdict")
		}
	}
	if k.verdict == 0 {
		return bad("end without a verdict")
	}
	return k, nil
}

func decodeMeter(d *expr.Dynset) (*meter, bool) {
	if d.SrcRegKey != 1 || d.SrcRegData != 0 || d.Operation != dynsetOpUpdate || d.Invert || d.Timeout != 0 || len(d.Exprs) != 1 {
		return nil, false
	}
	l, ok := d.Exprs[0].(*expr.Limit)
	if !ok || l.Type != expr.LimitTypePkts || !l.Over {
		return nil, false
	}
	return &meter{set: d.SetName, rate: l.Rate, unit: uint64(l.Unit), burst: l.Burst}, true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

package sockets

// The sock_diag wire format (include/uapi/linux/inet_diag.h,
// sock_diag.h, netlink.h): building dump requests with their bytecode
// filters, and reading the replies. Pure byte work, so it is tested on
// captured replies everywhere; the socket that carries it is in
// table_linux.go.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"portolan/internal/portspec"
)

var ne = binary.NativeEndian // netlink headers and diag fields are host order

const (
	nlmsgHdrLen      = 16
	nlmsgError       = 2
	nlmsgDone        = 3
	nlmFRequest      = 0x1
	nlmFDump         = 0x300 // NLM_F_ROOT | NLM_F_MATCH
	sockDiagByFamily = 20

	reqV2Len   = 56 // struct inet_diag_req_v2
	diagMsgLen = 72 // struct inet_diag_msg

	ipprotoTCP = 6
	ipprotoUDP = 17

	// Request attribute.
	attrReqBytecode = 1
	// Reply attributes (enum inet_diag_attr).
	attrSKV6Only = 11
	attrCgroupID = 21

	// Bytecode operations (enum of INET_DIAG_BC_*).
	bcJmp   = 1
	bcSGE   = 2
	bcSLE   = 3
	bcDGE   = 4
	bcDLE   = 5
	bcSCond = 7
	bcDCond = 8
	bcSEQ   = 11
	bcDEQ   = 12

	// maxKernelRanges bounds the port ranges compiled into bytecode (the
	// kernel's jump offsets are 16 bits); longer lists are filtered here.
	maxKernelRanges = 512
)

func align4(n int) int { return (n + 3) &^ 3 }

func ipproto(p portspec.Proto) uint8 {
	if p == portspec.UDP {
		return ipprotoUDP
	}
	return ipprotoTCP
}

// diagRequest builds a SOCK_DIAG_BY_FAMILY dump request for proto and
// family, with the state mask and the bytecode filter bc (none when empty).
func diagRequest(seq uint32, proto portspec.Proto, fam Family, states uint32, bc []byte) []byte {
	n := nlmsgHdrLen + reqV2Len
	if len(bc) > 0 {
		n += 4 + align4(len(bc))
	}
	b := make([]byte, n)
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = uint8(fam)
	r[1] = ipproto(proto)
	r[2] = 0 // idiag_ext: no extensions; the attributes we read come anyway
	ne.PutUint32(r[4:], states)
	// The socket id (r[8:56]) stays zero: with a dump it selects nothing,
	// except that its cookie must be "none" (all ones) for some handlers.
	ne.PutUint32(r[48:], ^uint32(0))
	ne.PutUint32(r[52:], ^uint32(0))
	if len(bc) > 0 {
		a := r[reqV2Len:]
		ne.PutUint16(a[0:], uint16(4+len(bc)))
		ne.PutUint16(a[2:], attrReqBytecode)
		copy(a[4:], bc)
	}
	return b
}

// bcOp is one bytecode instruction before layout: its code and what
// follows the 4-byte header (a port, or a host condition).
type bcOp struct {
	code byte
	arg  []byte
}

func (o bcOp) size() int { return 4 + len(o.arg) }

func portOp(code byte, p portspec.Port) bcOp {
	// The port sits in the `no` field of a second, otherwise empty op.
	arg := make([]byte, 4)
	ne.PutUint16(arg[2:], uint16(p))
	return bcOp{code: code, arg: arg}
}

// portAlternatives turns ranges into alternatives (any one may match) of
// conditions (all must match) on the source or destination port.
func portAlternatives(rs []PortRange, local bool) [][]bcOp {
	eq, ge, le := byte(bcSEQ), byte(bcSGE), byte(bcSLE)
	if !local {
		eq, ge, le = bcDEQ, bcDGE, bcDLE
	}
	var alts [][]bcOp
	for _, r := range rs {
		switch {
		case r.Lo == 0 && r.Hi == 65535:
			return nil // any port: no condition at all
		case r.Lo == r.Hi:
			alts = append(alts, []bcOp{portOp(eq, r.Lo)})
		case r.Lo == 0:
			alts = append(alts, []bcOp{portOp(le, r.Hi)})
		case r.Hi == 65535:
			alts = append(alts, []bcOp{portOp(ge, r.Lo)})
		default:
			alts = append(alts, []bcOp{portOp(ge, r.Lo), portOp(le, r.Hi)})
		}
	}
	return alts
}

// hostOp is a condition on the source or destination address (struct
// inet_diag_hostcond: family, prefix length, port -1 for any, address).
func hostOp(p netip.Prefix, local bool) bcOp {
	a := p.Addr().AsSlice()
	arg := make([]byte, 8+len(a))
	arg[0] = uint8(IPv4)
	if p.Addr().Is6() {
		arg[0] = uint8(IPv6)
	}
	arg[1] = uint8(p.Bits())
	ne.PutUint32(arg[4:], ^uint32(0)) // port -1: any
	copy(arg[8:], a)
	code := byte(bcSCond)
	if !local {
		code = bcDCond
	}
	return bcOp{code: code, arg: arg}
}

// compileFilter builds the inet_diag bytecode for the port and address
// filters of q: a conjunction of sections, each a disjunction of
// alternatives. It returns nil when q filters nothing of that kind (or
// has more port ranges than the kernel program can hold; the caller
// filters those itself, see Query.match).
func compileFilter(q *Query) []byte {
	var sections [][][]bcOp
	if len(q.Ports) <= maxKernelRanges {
		if alts := portAlternatives(q.Ports, true); len(alts) > 0 {
			sections = append(sections, alts)
		}
	}
	if len(q.RemotePorts) <= maxKernelRanges {
		if alts := portAlternatives(q.RemotePorts, false); len(alts) > 0 {
			sections = append(sections, alts)
		}
	}
	if q.Local.IsValid() && q.Local.Bits() > 0 {
		sections = append(sections, [][]bcOp{{hostOp(q.Local.Masked(), true)}})
	}
	if q.Remote.IsValid() && q.Remote.Bits() > 0 {
		sections = append(sections, [][]bcOp{{hostOp(q.Remote.Masked(), false)}})
	}
	return layoutBytecode(sections)
}

// layoutBytecode places the instructions and computes their jumps. The
// kernel runs the program from the start: a true condition jumps `yes`
// bytes ahead, a false one `no` bytes; the socket matches when the run
// ends exactly at the end, and is rejected by a jump past it. The kernel
// accepts a `no` target only if the chain of `yes` jumps from the start
// reaches it, so every `yes` goes to the very next instruction, and an
// alternative that matched leaves its section through a JMP (which always
// takes its 16-bit `no`; a one-byte `yes` could not jump that far).
func layoutBytecode(sections [][][]bcOp) []byte {
	if len(sections) == 0 {
		return nil
	}
	altPos := make([][]int, len(sections))
	secEnd := make([]int, len(sections))
	pos := 0
	for s, alts := range sections {
		altPos[s] = make([]int, len(alts))
		for a, ops := range alts {
			altPos[s][a] = pos
			for _, op := range ops {
				pos += op.size()
			}
			if a < len(alts)-1 {
				pos += 4 // the JMP
			}
		}
		secEnd[s] = pos
	}
	reject := pos + 4
	b := make([]byte, 0, pos)
	for s, alts := range sections {
		for a, ops := range alts {
			no := reject
			if a < len(alts)-1 {
				no = altPos[s][a+1]
			}
			for _, op := range ops {
				at := len(b)
				b = append(b, op.code, byte(op.size()), 0, 0)
				ne.PutUint16(b[at+2:], uint16(no-at))
				b = append(b, op.arg...)
			}
			if a < len(alts)-1 {
				at := len(b)
				b = append(b, bcJmp, 4, 0, 0)
				ne.PutUint16(b[at+2:], uint16(secEnd[s]-at))
			}
		}
	}
	return b
}

// wantsFamily reports whether a dump of family fam can hold a match: an
// IPv6 address filter never matches an IPv4 socket (an IPv4 one may match
// an IPv6 socket through a mapped address).
func (q *Query) wantsFamily(fam Family) bool {
	if q.Family != 0 && q.Family != fam {
		return false
	}
	if fam == IPv4 {
		for _, p := range []netip.Prefix{q.Local, q.Remote} {
			if p.IsValid() && p.Addr().Is6() && !p.Addr().Is4In6() {
				return false
			}
		}
	}
	return true
}

// match applies q to s in user space: what the kernel program could not
// hold (too many ranges), and a guard that costs little.
func (q *Query) match(s *Socket) bool {
	if q.Proto != 0 && q.Proto != s.Proto || q.Family != 0 && q.Family != s.Family {
		return false
	}
	if q.States != 0 && q.States.mask()&(1<<s.State) == 0 {
		return false
	}
	return inRanges(q.Ports, s.Local.Port()) && inRanges(q.RemotePorts, s.Remote.Port()) &&
		inPrefix(q.Local, s.Local.Addr()) && inPrefix(q.Remote, s.Remote.Addr())
}

func inRanges(rs []PortRange, p uint16) bool {
	if len(rs) == 0 {
		return true
	}
	for _, r := range rs {
		if portspec.Port(p) >= r.Lo && portspec.Port(p) <= r.Hi {
			return true
		}
	}
	return false
}

// inPrefix matches a as the kernel's host condition does: an IPv4 prefix
// also matches IPv4-mapped IPv6 addresses.
func inPrefix(p netip.Prefix, a netip.Addr) bool {
	if !p.IsValid() || p.Bits() == 0 && p.Addr().Is4() == a.Unmap().Is4() {
		return true
	}
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return p.Contains(a.WithZone(""))
}

// DiagError is a malformed sock_diag reply: the byte offset in the reply
// and what is wrong there.
type DiagError struct {
	Offset int
	Msg    string
}

func (e *DiagError) Error() string {
	return fmt.Sprintf("sock_diag reply at byte %d: %s", e.Offset, e.Msg)
}

// parseDiag appends the sockets in b, the bytes of one read from a dump
// reply, to dst. It reports done at the end of the dump (NLMSG_DONE), and
// the kernel's error when the reply is one. Sockets are parsed in place
// in dst; nothing is allocated per socket beyond dst's growth.
func parseDiag(b []byte, proto portspec.Proto, dst []Socket) (_ []Socket, done bool, err error) {
	done, err = eachDiagMsg(b, func(body []byte, off int) error {
		if len(dst) == cap(dst) {
			// Double, rather than append's 1.25 for large slices: a
			// table of 20,000 sockets is then copied about once.
			dst = slices.Grow(dst, max(len(dst), 256))
		}
		dst = append(dst, Socket{Proto: proto})
		if err := parseDiagMsg(body, &dst[len(dst)-1], off); err != nil {
			dst = dst[:len(dst)-1]
			return err
		}
		return nil
	})
	return dst, done, err
}

// eachDiagMsg calls fn with the body of each sock_diag message in b, the
// bytes of one read from a dump reply, and the body's offset (for
// errors). It reports done at the end of the dump (NLMSG_DONE), and the
// kernel's error when the reply is one.
func eachDiagMsg(b []byte, fn func(body []byte, off int) error) (done bool, err error) {
	for off := 0; off < len(b); {
		if len(b)-off < nlmsgHdrLen {
			return false, &DiagError{off, fmt.Sprintf("%d bytes left, too short for a netlink header", len(b)-off)}
		}
		h := b[off:]
		l := int(ne.Uint32(h[0:]))
		if l < nlmsgHdrLen || l > len(h) {
			return false, &DiagError{off, fmt.Sprintf("message length %d outside 16..%d", l, len(h))}
		}
		body := h[nlmsgHdrLen:l]
		switch ne.Uint16(h[4:]) {
		case nlmsgDone:
			if len(body) >= 4 {
				if code := int32(ne.Uint32(body)); code < 0 {
					return true, kernelError(-code)
				}
			}
			return true, nil
		case nlmsgError:
			if len(body) < 4 {
				return false, &DiagError{off, "error message without an error code"}
			}
			if code := int32(ne.Uint32(body)); code != 0 {
				return true, kernelError(-code)
			}
		case sockDiagByFamily:
			if err := fn(body, off+nlmsgHdrLen); err != nil {
				return false, err
			}
		}
		off += align4(l)
	}
	return false, nil
}

// parseDiagMsg reads one struct inet_diag_msg and its attributes into s;
// base is the offset of m in the reply, for errors.
func parseDiagMsg(m []byte, s *Socket, base int) error {
	if len(m) < diagMsgLen {
		return &DiagError{base, fmt.Sprintf("inet_diag_msg of %d bytes, want %d", len(m), diagMsgLen)}
	}
	s.Family = Family(m[0])
	s.State = State(m[1])
	var src, dst netip.Addr
	switch s.Family {
	case IPv4:
		src = netip.AddrFrom4([4]byte(m[8:12]))
		dst = netip.AddrFrom4([4]byte(m[24:28]))
	case IPv6:
		src = netip.AddrFrom16([16]byte(m[8:24]))
		dst = netip.AddrFrom16([16]byte(m[24:40]))
	default:
		return &DiagError{base, fmt.Sprintf("address family %d, want 2 (inet) or 10 (inet6)", m[0])}
	}
	s.Local = netip.AddrPortFrom(src, binary.BigEndian.Uint16(m[4:]))
	s.Remote = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(m[6:]))
	s.IfIndex = ne.Uint32(m[40:])
	if c0, c1 := ne.Uint32(m[44:]), ne.Uint32(m[48:]); c0 != ^uint32(0) || c1 != ^uint32(0) {
		s.Cookie = uint64(c1)<<32 | uint64(c0)
	}
	s.RxQueue = ne.Uint32(m[56:])
	s.TxQueue = ne.Uint32(m[60:])
	s.UID = ne.Uint32(m[64:])
	s.Inode = ne.Uint32(m[68:])
	for a, off := m[diagMsgLen:], base+diagMsgLen; len(a) > 0; {
		if len(a) < 4 {
			return &DiagError{off, fmt.Sprintf("%d trailing bytes, too short for an attribute", len(a))}
		}
		alen := int(ne.Uint16(a[0:]))
		typ := ne.Uint16(a[2:]) & 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
		if alen < 4 || alen > len(a) {
			return &DiagError{off, fmt.Sprintf("attribute %d of length %d outside 4..%d", typ, alen, len(a))}
		}
		data := a[4:alen]
		switch typ {
		case attrSKV6Only:
			if len(data) < 1 {
				return &DiagError{off, "empty INET_DIAG_SKV6ONLY attribute"}
			}
			s.V6Only = data[0] != 0
		case attrCgroupID:
			if len(data) < 8 {
				return &DiagError{off, fmt.Sprintf("INET_DIAG_CGROUP_ID of %d bytes, want 8", len(data))}
			}
			s.CgroupID = ne.Uint64(data)
		}
		step := min(align4(alen), len(a))
		a, off = a[step:], off+step
	}
	return nil
}

// dumpReq is one SOCK_DIAG_BY_FAMILY dump: a protocol, a family, a state
// mask and a bytecode program.
type dumpReq struct {
	proto  portspec.Proto
	fam    Family
	states uint32
	bc     []byte
}

// planDumps lists the dumps q needs, TCP first (usually the larger part).
// TCP sockets bound but idle come in the same dump as the others: asked
// for apart, the kernel walks the whole established table a second time
// for each family (measured: 15 ms of kernel time on a 30,000-socket
// table), which costs more than running the bind-table walk on another
// thread saves.
func planDumps(q *Query) []dumpReq {
	var main, rest []dumpReq
	mask := q.States.mask()
	bc := compileFilter(q)
	for _, proto := range []portspec.Proto{portspec.TCP, portspec.UDP} {
		if q.Proto != 0 && q.Proto != proto {
			continue
		}
		for _, fam := range []Family{IPv4, IPv6} {
			if !q.wantsFamily(fam) {
				continue
			}
			if proto == portspec.TCP {
				main = append(main, dumpReq{proto, fam, mask, bc})
			} else {
				rest = append(rest, dumpReq{proto, fam, mask, bc})
			}
		}
	}
	return append(main, rest...)
}

// countDiag counts the socket messages in b, one read of a dump reply, so
// that room for them can be taken before parsing. It stops where parseDiag
// stops: at the end of the dump, at an error from the kernel and at
// anything malformed (which parseDiag reports).
func countDiag(b []byte) int {
	n := 0
	for off := 0; len(b)-off >= nlmsgHdrLen; {
		l := int(ne.Uint32(b[off:]))
		if l < nlmsgHdrLen || l > len(b)-off {
			break
		}
		switch ne.Uint16(b[off+4:]) {
		case sockDiagByFamily:
			n++
		case nlmsgDone:
			return n
		case nlmsgError:
			if l < nlmsgHdrLen+4 || ne.Uint32(b[off+nlmsgHdrLen:]) != 0 {
				return n
			}
		}
		off += align4(l)
	}
	return n
}

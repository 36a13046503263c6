package sockets

// Unix domain sockets, as sock_diag's AF_UNIX family reports them
// (include/uapi/linux/unix_diag.h): the request, the reply parser (pure
// byte work, tested everywhere) and the socket they describe. The dump
// itself is in unix_linux.go.

import (
	"fmt"
	"slices"
	"strings"

	"portolan/internal/owners"
)

// UnixType is the type of a unix socket; the values are the kernel's
// SOCK_STREAM, SOCK_DGRAM and SOCK_SEQPACKET.
type UnixType uint8

// The types.
const (
	UnixStream    UnixType = 1
	UnixDgram     UnixType = 2
	UnixSeqpacket UnixType = 5
)

func (t UnixType) String() string {
	switch t {
	case UnixStream:
		return "stream"
	case UnixDgram:
		return "dgram"
	case UnixSeqpacket:
		return "seqpacket"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MarshalText writes "stream", "dgram" or "seqpacket".
func (t UnixType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnixSocket is one unix domain socket.
type UnixSocket struct {
	Type  UnixType
	State State // Listen, Established, Close (unconnected), SynSent (connecting)
	// Name is the address the socket is bound to: a path, "@name" for an
	// abstract name (whose NUL bytes after the first are written as @
	// too, as ss does), or "" for an unnamed socket (a client, a
	// socketpair). A connection accepted by a listener carries the
	// listener's name.
	Name string
	// Inode is the socket's inode, what /proc/PID/fd links name.
	Inode uint32
	// Cookie is the kernel's unique id of the socket.
	Cookie uint64
	// Peer is the inode of the socket at the other end of a connection
	// (0 when none, or the peer is gone); PeerName is its name, when the
	// table holds it.
	Peer     uint32
	PeerName string
	// Pending are the connections waiting for accept() on a listener.
	Pending int
	// RxQueue and TxQueue are the bytes queued; for a listener, the accept
	// queue's length and its limit (the backlog).
	RxQueue, TxQueue uint32
	// UID is the user that made the socket (Linux 5.3 and later report
	// it; HasUID says whether this kernel did).
	UID    uint32
	HasUID bool
	// FileDev and FileInode identify the socket file of a path name (the
	// inode on its filesystem), 0 for other names.
	FileDev, FileInode uint32

	// Procs are the processes holding the socket open (FindUnixOwners);
	// Unseen says why Procs is empty.
	Procs  []*owners.Process
	Unseen owners.Unseen
}

// Abstract reports whether the socket's name is in the abstract namespace
// (of its network namespace), not a file.
func (s *UnixSocket) Abstract() bool { return strings.HasPrefix(s.Name, "@") }

// StateName is the state as ss writes it: LISTEN, ESTAB, UNCONN, CONNECTING.
func (s *UnixSocket) StateName() string {
	switch s.State {
	case Established:
		return "ESTAB"
	case Close:
		return "UNCONN"
	case SynSent:
		return "CONNECTING"
	}
	return s.State.String()
}

// UnixQuery selects unix sockets; the zero UnixQuery selects all.
type UnixQuery struct {
	// States selects states (Listen, Established, Close, SynSent); zero
	// means every state.
	States StateSet
	// Name keeps the sockets bound to this path or "@abstract" name (a
	// listener and the connections it accepted); empty keeps all.
	Name string
}

func (q *UnixQuery) match(s *UnixSocket) bool {
	return q.Name == "" || s.Name == q.Name
}

const (
	unixDiagReqLen = 24 // struct unix_diag_req
	unixDiagMsgLen = 16 // struct unix_diag_msg
	afUnix         = 1

	udiagShowName  = 0x01
	udiagShowVFS   = 0x02
	udiagShowPeer  = 0x04
	udiagShowIcons = 0x08
	udiagShowRQLen = 0x10
	udiagShowUID   = 0x40

	unixDiagName  = 0
	unixDiagVFS   = 1
	unixDiagPeer  = 2
	unixDiagIcons = 3
	unixDiagRQLen = 4
	unixDiagUID   = 7
)

// unixDiagRequest builds a dump request for the unix sockets in states.
func unixDiagRequest(seq uint32, states StateSet) []byte {
	b := make([]byte, nlmsgHdrLen+unixDiagReqLen)
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = afUnix
	ne.PutUint32(r[4:], states.mask())
	ne.PutUint32(r[12:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowIcons|udiagShowRQLen|udiagShowUID)
	ne.PutUint32(r[16:], ^uint32(0)) // no cookie: every socket
	ne.PutUint32(r[20:], ^uint32(0))
	return b
}

// parseUnixDiag appends the unix sockets in b, the bytes of one read from
// a dump reply, to dst, and reports done at the end of the dump.
func parseUnixDiag(b []byte, dst []UnixSocket) (_ []UnixSocket, done bool, err error) {
	done, err = eachDiagMsg(b, func(body []byte, off int) error {
		var s UnixSocket
		if err := parseUnixDiagMsg(body, &s, off); err != nil {
			return err
		}
		dst = append(dst, s)
		return nil
	})
	return dst, done, err
}

// parseUnixDiagMsg reads one struct unix_diag_msg and its attributes.
func parseUnixDiagMsg(m []byte, s *UnixSocket, base int) error {
	if len(m) < unixDiagMsgLen {
		return &DiagError{base, fmt.Sprintf("unix_diag_msg of %d bytes, want %d", len(m), unixDiagMsgLen)}
	}
	if m[0] != afUnix {
		return &DiagError{base, fmt.Sprintf("address family %d, want 1 (unix)", m[0])}
	}
	s.Type, s.State = UnixType(m[1]), State(m[2])
	s.Inode = ne.Uint32(m[4:])
	s.Cookie = uint64(ne.Uint32(m[12:]))<<32 | uint64(ne.Uint32(m[8:]))
	for a, off := m[unixDiagMsgLen:], base+unixDiagMsgLen; len(a) > 0; {
		if len(a) < 4 {
			return &DiagError{off, fmt.Sprintf("%d trailing bytes, too short for an attribute", len(a))}
		}
		alen := int(ne.Uint16(a[0:]))
		typ := ne.Uint16(a[2:]) & 0x3fff
		if alen < 4 || alen > len(a) {
			return &DiagError{off, fmt.Sprintf("attribute %d of length %d outside 4..%d", typ, alen, len(a))}
		}
		v := a[4:alen]
		short := func(want int) error {
			return &DiagError{off, fmt.Sprintf("attribute %d of %d bytes, want %d", typ, len(v), want)}
		}
		switch typ {
		case unixDiagName:
			s.Name = unixName(v)
		case unixDiagVFS:
			if len(v) < 8 {
				return short(8)
			}
			s.FileInode, s.FileDev = ne.Uint32(v[0:]), ne.Uint32(v[4:])
		case unixDiagPeer:
			if len(v) < 4 {
				return short(4)
			}
			s.Peer = ne.Uint32(v)
		case unixDiagIcons:
			s.Pending = len(v) / 4
		case unixDiagRQLen:
			if len(v) < 8 {
				return short(8)
			}
			s.RxQueue, s.TxQueue = ne.Uint32(v[0:]), ne.Uint32(v[4:])
		case unixDiagUID:
			if len(v) < 4 {
				return short(4)
			}
			s.UID, s.HasUID = ne.Uint32(v), true
		}
		step := align4(alen)
		if step > len(a) {
			step = len(a)
		}
		a, off = a[step:], off+step
	}
	return nil
}

// unixName turns sun_path bytes into a name: a path without its trailing
// NULs, or "@" and the abstract name (its NULs written as @, as ss does).
func unixName(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if v[0] != 0 {
		if i := slices.Index(v, 0); i >= 0 {
			v = v[:i]
		}
		return string(v)
	}
	b := []byte(string(v))
	for i := range b {
		if b[i] == 0 {
			b[i] = '@'
		}
	}
	return string(b)
}

// linkUnixPeers fills PeerName from the table: the name of the socket at
// the other end, when it is in socks.
func linkUnixPeers(socks []UnixSocket) {
	names := make(map[uint32]string, len(socks))
	for i := range socks {
		if socks[i].Name != "" {
			names[socks[i].Inode] = socks[i].Name
		}
	}
	for i := range socks {
		if p := socks[i].Peer; p != 0 {
			socks[i].PeerName = names[p]
		}
	}
}

// sortUnix orders sockets by name (unnamed last), then inode.
func sortUnix(socks []UnixSocket) {
	slices.SortFunc(socks, func(a, b UnixSocket) int {
		switch {
		case a.Name == "" && b.Name != "":
			return 1
		case a.Name != "" && b.Name == "":
			return -1
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(int64(a.Inode) - int64(b.Inode))
	})
}

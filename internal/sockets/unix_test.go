package sockets

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// unixMsg builds a unix_diag_msg reply message with attributes.
func unixMsg(typ UnixType, st State, ino uint32, attrs ...[]byte) []byte {
	body := make([]byte, unixDiagMsgLen)
	body[0], body[1], body[2] = afUnix, byte(typ), byte(st)
	ne.PutUint32(body[4:], ino)
	ne.PutUint32(body[8:], 7) // cookie low
	for _, a := range attrs {
		body = append(body, a...)
	}
	return msg(sockDiagByFamily, body)
}

func u32(v uint32) []byte { b := make([]byte, 4); ne.PutUint32(b, v); return b }

var unixDiagCases = []struct {
	name    string
	in      []byte
	want    []UnixSocket
	wantErr string
}{
	{"listener with path", append(unixMsg(UnixStream, Listen, 100,
		attr(unixDiagName, []byte("/run/app.sock\x00")), attr(unixDiagVFS, append(u32(55), u32(8)...)),
		attr(unixDiagRQLen, append(u32(2), u32(128)...)), attr(unixDiagIcons, append(u32(201), u32(202)...)),
		attr(unixDiagUID, u32(1000))), msg(nlmsgDone, u32(0))...),
		[]UnixSocket{{Type: UnixStream, State: Listen, Inode: 100, Cookie: 7, Name: "/run/app.sock", FileInode: 55, FileDev: 8,
			RxQueue: 2, TxQueue: 128, Pending: 2, UID: 1000, HasUID: true}}, ""},
	{"abstract", unixMsg(UnixSeqpacket, Listen, 101, attr(unixDiagName, []byte("\x00app\x00x"))),
		[]UnixSocket{{Type: UnixSeqpacket, State: Listen, Inode: 101, Cookie: 7, Name: "@app@x"}}, ""},
	{"socketpair end", unixMsg(UnixDgram, Established, 102, attr(unixDiagPeer, u32(103))),
		[]UnixSocket{{Type: UnixDgram, State: Established, Inode: 102, Cookie: 7, Peer: 103}}, ""},
	{"short message", msg(sockDiagByFamily, []byte{1, 1}), nil, "unix_diag_msg of 2 bytes"},
	{"wrong family", msg(sockDiagByFamily, make([]byte, 16)), nil, "address family 0, want 1"},
	{"short peer", unixMsg(UnixStream, Established, 1, attr(unixDiagPeer, []byte{1, 2})), nil, "attribute 2 of 2 bytes, want 4"},
	{"kernel error", msg(nlmsgError, u32(^uint32(0))), nil, "operation not permitted"},
}

func TestParseUnixDiag(t *testing.T) {
	for _, c := range unixDiagCases {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := parseUnixDiag(c.in, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("parseUnixDiag(%s) = %+v, %v; want error with %q", c.name, got, err, c.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(c.want) {
				t.Fatalf("parseUnixDiag(%s) = %+v, %v; want %+v", c.name, got, err, c.want)
			}
			for i := range got {
				if g, w := got[i], c.want[i]; g.Type != w.Type || g.State != w.State || g.Inode != w.Inode || g.Cookie != w.Cookie ||
					g.Name != w.Name || g.Peer != w.Peer || g.Pending != w.Pending || g.RxQueue != w.RxQueue || g.TxQueue != w.TxQueue ||
					g.UID != w.UID || g.HasUID != w.HasUID || g.FileInode != w.FileInode || g.FileDev != w.FileDev {
					t.Errorf("parseUnixDiag(%s)[%d] = %+v; want %+v", c.name, i, g, w)
				}
			}
		})
	}
}

func FuzzParseUnixDiag(f *testing.F) {
	for _, c := range unixDiagCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, _, err := parseUnixDiag(b, nil)
		var de *DiagError
		var errno syscall.Errno
		// kernelError is an errno on Linux, "kernel error N" elsewhere.
		if err != nil && !errors.As(err, &de) && !errors.As(err, &errno) && !strings.HasPrefix(err.Error(), "kernel error ") {
			t.Fatalf("parseUnixDiag error %v: neither a DiagError naming the offset nor the kernel's errno", err)
		}
		for _, s := range socks {
			if strings.ContainsRune(s.Name, 0) {
				t.Fatalf("name %q holds a NUL", s.Name)
			}
		}
	})
}

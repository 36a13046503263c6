package scan

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvErrCmsgs builds what the kernel puts in a MSG_ERRQUEUE read: an
// SO_TIMESTAMPNS message and an IP_RECVERR one (struct sock_extended_err,
// then the offender's address).
func recvErrCmsgs(origin, typ, code uint8, at time.Time) []byte {
	ts := unix.NsecToTimespec(at.UnixNano())
	var b []byte
	tsb := make([]byte, unix.CmsgSpace(16))
	h := (*unix.Cmsghdr)(unsafePointer(&tsb[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(16))
	putTimespec(tsb[unix.CmsgLen(0):], ts)
	eeb := make([]byte, unix.CmsgSpace(16+16))
	h = (*unix.Cmsghdr)(unsafePointer(&eeb[0]))
	h.Level, h.Type = unix.SOL_IP, unix.IP_RECVERR
	h.SetLen(unix.CmsgLen(32))
	d := eeb[unix.CmsgLen(0):]
	d[4], d[5], d[6] = origin, typ, code
	return append(append(b, tsb...), eeb...)
}

func TestParseRecvErr(t *testing.T) {
	at := time.Unix(1796660439, 123456789)
	ee, rx, ok := parseRecvErr(recvErrCmsgs(unix.SO_EE_ORIGIN_ICMP, 3, 3, at))
	if !ok || ee != (recvErr{Origin: unix.SO_EE_ORIGIN_ICMP, Type: 3, Code: 3}) || !rx.Equal(at) {
		t.Errorf("parseRecvErr = %+v, %v, %v; want ICMP 3/3 at %v", ee, rx, ok, at)
	}
	if _, _, ok := parseRecvErr(nil); ok {
		t.Error("parseRecvErr(nil) ok; want no error message found")
	}
}

// FuzzParseRecvErr: control messages come from the kernel, but a parser
// of bytes must not panic on any.
func FuzzParseRecvErr(f *testing.F) {
	f.Add(recvErrCmsgs(unix.SO_EE_ORIGIN_ICMP, 3, 3, time.Unix(1, 2)))
	f.Add(recvErrCmsgs(unix.SO_EE_ORIGIN_ICMP6, 1, 4, time.Unix(1, 2))[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		parseRecvErr(b)
	})
}

func unsafePointer(b *byte) unsafe.Pointer { return unsafe.Pointer(b) }

func putTimespec(b []byte, ts unix.Timespec) {
	binary.NativeEndian.PutUint64(b, uint64(ts.Sec))
	binary.NativeEndian.PutUint64(b[8:], uint64(ts.Nsec))
}

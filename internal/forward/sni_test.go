package forward

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clientHello returns the first record a crypto/tls client writes: its
// ClientHello, as a real client sends it.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c, cfg).Handshake() // fails once s closes
		c.Close()
	}()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatalf("read ClientHello record header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatalf("read ClientHello record: %v", err)
	}
	s.Close()
	<-done
	return append(hdr, body...)
}

// reframe puts the handshake message of a one-record hello into records
// of size bytes each.
func reframe(hello []byte, size int) []byte {
	msg := hello[recordHeaderLen:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// Hand-made hellos: a record holding a ClientHello with no session id,
// one cipher suite, no compression and the given extensions. Offsets:
// record header 0-4, handshake header 5-8, version 9, random 11, session
// id length 43, cipher suites length 44, compression methods length 48,
// extensions length 50, first extension 52 (its data at 56).
func makeHello(exts ...[]byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, clientRandomLen)...)
	body = append(body, 0, 0, 2, 0x13, 0x01, 1, 0)
	if exts != nil {
		all := bytes.Join(exts, nil)
		body = binary.BigEndian.AppendUint16(body, uint16(len(all)))
		body = append(body, all...)
	}
	msg := append([]byte{handshakeHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{recordHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func ext(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// sniExt is a server_name extension with host names (type 0).
func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, serverNameHost)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	return ext(extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
}

func alpnExt(protos ...string) []byte {
	var list []byte
	for _, p := range protos {
		list = append(list, byte(len(p)))
		list = append(list, p...)
	}
	return ext(extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
}

// set returns a copy of b with b[i] = v.
func set(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

type helloCase struct {
	name string
	in   []byte
	want ClientHello
	n    int    // bytes consumed; -1: all of in
	err  string // substring; "short" for ErrShortHello
}

func helloCases(t testing.TB) []helloCase {
	tls13 := clientHello(t, &tls.Config{ServerName: "a.example", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS13})
	tls12 := clientHello(t, &tls.Config{ServerName: "Upper.Example.", MaxVersion: tls.VersionTLS12})
	noSNI := clientHello(t, &tls.Config{InsecureSkipVerify: true})
	ipName := clientHello(t, &tls.Config{ServerName: "198.18.0.1"})
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	longName := clientHello(t, &tls.Config{ServerName: long})
	twoRecords := reframe(tls13, 100)
	// A hello just under the bound in one record, and one that only
	// fits in many tiny records, which then go over the bound.
	big := makeHello(sniExt("big.example"), ext(21, make([]byte, maxHelloBytes-100)))
	tiny := reframe(makeHello(sniExt("tiny.example"), ext(21, make([]byte, 3000))), 1)
	minimal := makeHello()
	name := makeHello(sniExt("a.example"))
	return []helloCase{
		{name: "crypto/tls 1.3 with ALPN", in: tls13, n: -1, want: ClientHello{ServerName: "a.example", ALPN: []string{"h2", "http/1.1"}}},
		{name: "crypto/tls 1.2, upper case and a trailing dot", in: tls12, n: -1, want: ClientHello{ServerName: "upper.example"}},
		{name: "crypto/tls without a server name", in: noSNI, n: -1},
		{name: "crypto/tls to an IP address (no SNI)", in: ipName, n: -1},
		{name: "crypto/tls with a 253-byte name", in: longName, n: -1, want: ClientHello{ServerName: long}},
		{name: "records of 100 bytes", in: twoRecords, n: -1, want: ClientHello{ServerName: "a.example", ALPN: []string{"h2", "http/1.1"}}},
		{name: "records of 1 byte", in: reframe(tls13, 1), n: -1, want: ClientHello{ServerName: "a.example", ALPN: []string{"h2", "http/1.1"}}},
		{name: "followed by more data", in: append(bytes.Clone(tls13), 0x17, 3, 3, 0, 1, 0), n: len(tls13), want: ClientHello{ServerName: "a.example", ALPN: []string{"h2", "http/1.1"}}},
		{name: "big hello in one record", in: big, n: -1, want: ClientHello{ServerName: "big.example"}},
		{name: "no extensions", in: minimal, n: -1},
		{name: "hand-made name", in: name, n: -1, want: ClientHello{ServerName: "a.example"}},
		{name: "unknown name type is skipped", in: makeHello(ext(extServerName, []byte{0, 8, 1, 0, 1, 'x', 0, 0, 1, 'y'})), n: -1, want: ClientHello{ServerName: "y"}},
		{name: "sslv2 hello", in: []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0x15}, n: 5, want: ClientHello{SSLv2: true}},

		{name: "empty", in: nil, err: "short"},
		{name: "record header only", in: tls13[:5], err: "short"},
		{name: "half a hello", in: tls13[:len(tls13)/2], err: "short"},
		{name: "first of two records", in: twoRecords[:105], err: "short"},
		{name: "sslv2 partial", in: []byte{0x80, 0x2e, 0x01}, err: "short"},
		{name: "many tiny records over the bound", in: tiny[:maxHelloBytes], err: "offset 16380: no complete ClientHello in the first 16384 bytes"},

		{name: "plain HTTP", in: []byte("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"), err: `offset 0: record type 0x47 ('G'), want a TLS handshake (0x16); looks like plain HTTP`},
		{name: "SSH", in: []byte("SSH-2.0-OpenSSH_9.2\r\n"), err: "offset 0: record type 0x53 ('S'), want a TLS handshake (0x16); looks like SSH"},
		{name: "PROXY header", in: []byte("PROXY TCP4 198.18.0.7 198.18.0.1 1 2\r\n"), err: "PROXY header"},
		{name: "alert record", in: set(tls13, 0, 0x15), err: "offset 0: record type 0x15, want a TLS handshake"},
		{name: "record version 2", in: set(tls13, 1, 2), err: "offset 1: record version major 2, want 3 (TLS)"},
		{name: "empty record", in: []byte{0x16, 3, 1, 0, 0}, err: "offset 3: empty handshake record"},
		{name: "record too long", in: []byte{0x16, 3, 1, 0x40, 0x01}, err: "offset 3: record length 16385 is over 16384"},
		{name: "server hello", in: set(name, 5, 2), err: "offset 5: handshake message type 2, want 1 (ClientHello)"},
		{name: "hello length over bound", in: set(name, 6, 1), err: "offset 6: ClientHello length"},
		{name: "second record not handshake", in: set(twoRecords, 105, 0x17), err: "offset 105: record type 0x17"},
		{name: "second record type split", in: set(twoRecords, 106, 0), err: "offset 106: record version major 0"},
		{name: "hello version", in: set(name, 9, 2), err: "offset 9: ClientHello version 2.3, want 3.x"},
		{name: "session id too long", in: set(name, 43, 33), err: "offset 43: session id length 33 is over 32"},
		{name: "odd cipher suites", in: set(name, 45, 3), err: "offset 44: cipher suites length 3"},
		{name: "no compression", in: set(set(name, 48, 0), 49, 0), err: "offset 48: no compression methods"},
		{name: "extensions length", in: set(name, 51, 99), err: "offset 50: extensions length 99"},
		{name: "hello ends in random", in: shortenHello(minimal, 30), err: "offset 11: ends inside the random"},
		{name: "name with a space", in: makeHello(sniExt("a b.example")), err: `offset 62: server name "a b.example": byte 0x20 is not allowed in a host name`},
		{name: "name with a NUL", in: makeHello(sniExt("a.example\x00")), err: "byte 0x00 is not allowed"},
		{name: "empty name", in: makeHello(sniExt("")), err: `offset 61: server name "": empty`},
		{name: "name too long", in: makeHello(sniExt(strings.Repeat("a", 256))), err: "256 bytes long, over 255"},
		{name: "two host names", in: makeHello(sniExt("a.example", "b.example")), err: "offset 70: a second host name"},
		{name: "no host name", in: makeHello(ext(extServerName, []byte{0, 4, 1, 0, 1, 'x'})), err: "offset 56: server_name extension without a host name"},
		{name: "server name list length", in: makeHello(ext(extServerName, []byte{0, 9, 0, 0, 1, 'x'})), err: "offset 56: server name list length 9, but the extension holds 4 bytes"},
		{name: "server name longer than its list", in: makeHello(ext(extServerName, []byte{0, 4, 0, 0, 9, 'x'})), err: "offset 61: ends inside the server name (9 bytes wanted, 1 left)"},
		{name: "server name twice", in: makeHello(sniExt("a.example"), sniExt("b.example")), err: "offset 70: extension 0 given twice"},
		{name: "extension longer than the hello", in: makeHello(ext(99, nil)[:2], []byte{0, 5}), err: "offset 56: ends inside the extension (5 bytes wanted, 0 left)"},
		{name: "alpn empty protocol", in: makeHello(alpnExt("h2", "")), err: "offset 61: empty ALPN protocol name"},
		{name: "alpn list length", in: makeHello(ext(extALPN, []byte{0, 0})), err: "offset 56: ALPN protocol list length 0"},
		{name: "sslv2 not a hello", in: []byte{0x80, 0x2e, 0x04, 0, 2}, err: "offset 2: SSLv2 message type 4"},
		{name: "sslv2 version", in: []byte{0x80, 0x2e, 0x01, 9, 2}, err: "offset 3: SSLv2 hello version major 9"},
	}
}

// shortenHello cuts n bytes off the end of a one-record hello and fixes
// both lengths, so the message ends early.
func shortenHello(h []byte, n int) []byte {
	h = bytes.Clone(h[:len(h)-n])
	rl, ml := len(h)-recordHeaderLen, len(h)-recordHeaderLen-handshakeHeadLen
	h[3], h[4] = byte(rl>>8), byte(rl)
	h[6], h[7], h[8] = byte(ml>>16), byte(ml>>8), byte(ml)
	return h
}

func TestParseClientHello(t *testing.T) {
	for _, tc := range helloCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := ParseClientHello(tc.in)
			switch {
			case tc.err == "short":
				if !errors.Is(err, ErrShortHello) {
					t.Fatalf("ParseClientHello(%d bytes) = %v; want ErrShortHello", len(tc.in), err)
				}
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseClientHello(%d bytes) = %v; want error with %q", len(tc.in), err, tc.err)
				}
			case err != nil:
				t.Fatalf("ParseClientHello(%d bytes) = %v", len(tc.in), err)
			default:
				want := tc.n
				if want < 0 {
					want = len(tc.in)
				}
				if n != want {
					t.Errorf("ParseClientHello consumed %d; want %d", n, want)
				}
				if diff := cmp.Diff(tc.want, h, cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })); diff != "" {
					t.Errorf("ParseClientHello mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestClientHelloEveryPrefixIsShort feeds a real hello the way a slow
// client would: every prefix, in one record and in many, asks for more.
func TestClientHelloEveryPrefixIsShort(t *testing.T) {
	h := clientHello(t, &tls.Config{ServerName: "a.example"})
	for _, in := range [][]byte{h, reframe(h, 7), reframe(h, 1)} {
		var p helloParser // as readClientHello uses it: the same parser, more bytes each time
		for i := range len(in) {
			if _, _, err := ParseClientHello(in[:i]); !errors.Is(err, ErrShortHello) {
				t.Fatalf("ParseClientHello(first %d of %d bytes) = %v; want ErrShortHello", i, len(in), err)
			}
			if _, _, err := p.next(in[:i]); !errors.Is(err, ErrShortHello) {
				t.Fatalf("helloParser.next(first %d of %d bytes) = %v; want ErrShortHello", i, len(in), err)
			}
		}
		for _, parse := range []func([]byte) (ClientHello, int, error){ParseClientHello, p.next} {
			if got, n, err := parse(in); err != nil || got.ServerName != "a.example" || n != len(in) {
				t.Fatalf("parse(all %d bytes) = %+v, %d, %v", len(in), got, n, err)
			}
		}
	}
}

func FuzzParseClientHello(f *testing.F) {
	for _, tc := range helloCases(f) {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseClientHello(b)
		// A parser fed the bytes in three reads ends the same way.
		var p helloParser
		var err3 error
		for _, k := range []int{len(b) / 3, 2 * len(b) / 3, len(b)} {
			if _, _, err3 = p.next(b[:k]); !errors.Is(err3, ErrShortHello) {
				break
			}
		}
		if withoutHint(err3) != withoutHint(err) {
			t.Fatalf("ParseClientHello(%q) = %v, but in three reads %v", b, err, err3)
		}
		if errors.Is(err, ErrShortHello) {
			if len(b) >= maxHelloBytes {
				t.Fatalf("ParseClientHello(%d bytes) asks for more past the bound", len(b))
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), "offset ") {
				t.Fatalf("ParseClientHello error %q names no offset", err)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("ParseClientHello(%q) consumed %d of %d", b, n, len(b))
		}
		if nameErrAt(h.ServerName) >= 0 || strings.ToLower(h.ServerName) != h.ServerName {
			t.Fatalf("ParseClientHello(%q) = name %q: not a lower-case printable name", b, h.ServerName)
		}
		// The hello is decided by its own bytes: the same without what
		// follows, and a byte less is not enough.
		h2, n2, err := ParseClientHello(b[:n])
		if err != nil || n2 != n || h2.ServerName != h.ServerName || !slices.Equal(h2.ALPN, h.ALPN) {
			t.Fatalf("ParseClientHello(first %d bytes) = %+v, %d, %v; want %+v", n, h2, n2, err, h)
		}
		if _, _, err := ParseClientHello(b[:n-1]); !errors.Is(err, ErrShortHello) {
			t.Fatalf("ParseClientHello(first %d bytes) = %v; want ErrShortHello", n-1, err)
		}
	})
}

func nameErrAt(s string) int {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return i
		}
	}
	return -1
}

// withoutHint is an error's text without the guess at what the bytes are.
func withoutHint(err error) string {
	s, _, _ := strings.Cut(fmt.Sprint(err), "; looks like")
	return s
}

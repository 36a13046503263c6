package forward

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var proxyCases = []struct {
	name string
	in   string
	want ProxyHeader
	n    int    // bytes consumed; 0 with err
	err  string // substring; "short" for ErrShortProxyHeader
}{
	{name: "v1 tcp4", in: "PROXY TCP4 198.18.0.7 198.18.0.1 40000 443\r\nGET", n: 44,
		want: ProxyHeader{Version: 1, Proto: TCP, Src: netip.MustParseAddrPort("198.18.0.7:40000"), Dst: netip.MustParseAddrPort("198.18.0.1:443")}},
	{name: "v1 tcp6", in: "PROXY TCP6 fd00::7 fd00::1 1 2\r\n", n: 32,
		want: ProxyHeader{Version: 1, Proto: TCP, Src: netip.MustParseAddrPort("[fd00::7]:1"), Dst: netip.MustParseAddrPort("[fd00::1]:2")}},
	{name: "v1 unknown", in: "PROXY UNKNOWN\r\n", n: 15, want: ProxyHeader{Version: 1, Proto: TCP, Local: true}},
	{name: "v1 unknown with junk", in: "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", n: 35, want: ProxyHeader{Version: 1, Proto: TCP, Local: true}},
	{name: "v1 partial", in: "PROXY TCP4 198.18", err: "short"},
	{name: "v1 prefix only", in: "PRO", err: "short"},
	{name: "v1 bad word", in: "PROXZ TCP4", err: `want "PROXY "`},
	{name: "v1 family", in: "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", err: "family"},
	{name: "v1 mixed", in: "PROXY TCP4 fd00::1 1.2.3.4 1 2\r\n", err: "is not TCP4"},
	{name: "v1 port", in: "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", err: "port"},
	{name: "v1 leading zero port", in: "PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", err: "port"},
	{name: "v1 fields", in: "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", err: "want 5 fields"},
	{name: "v1 double space", in: "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", err: "want 5 fields"},
	{name: "v1 no CR", in: "PROXY UNKNOWN\n", err: "without CR"},
	{name: "v1 too long", in: "PROXY " + strings.Repeat("A", 120), err: "no line end"},
	{name: "v2 tcp4", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc6\x12\x00\x07\xc6\x12\x00\x01\x9c\x40\x01\xbbrest", n: 28,
		want: ProxyHeader{Version: 2, Proto: TCP, Src: netip.MustParseAddrPort("198.18.0.7:40000"), Dst: netip.MustParseAddrPort("198.18.0.1:443")}},
	{name: "v2 local", in: "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00", n: 16, want: ProxyHeader{Version: 2, Proto: TCP, Local: true}},
	{name: "v2 with tlv", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x10\x01\x02\x03\x04\x05\x06\x07\x08\x00\x35\x00\x35\x04\x00\x01\x00", n: 32,
		want: ProxyHeader{Version: 2, Proto: UDP, Src: netip.MustParseAddrPort("1.2.3.4:53"), Dst: netip.MustParseAddrPort("5.6.7.8:53")}},
	{name: "v2 unspec", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00", n: 16, want: ProxyHeader{Version: 2, Proto: TCP, Local: true}},
	{name: "v2 partial sig", in: "\r\n\r\n\x00", err: "short"},
	{name: "v2 partial body", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc6", err: "short"},
	{name: "v2 bad sig", in: "\r\n\r\nX", err: "bad signature"},
	{name: "v2 version", in: "\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x00", err: "version 1"},
	{name: "v2 command", in: "\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x00", err: "command 2"},
	{name: "v2 huge", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", err: "length 65535"},
	{name: "v2 short addrs", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x0c" + strings.Repeat("\x00", 12), err: "too short"},
	{name: "neither", in: "GET / HTTP/1.1\r\n", err: "offset 0"},
	{name: "empty", in: "", err: "short"},
}

func TestParseProxyHeader(t *testing.T) {
	for _, tc := range proxyCases {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := ParseProxyHeader([]byte(tc.in))
			switch {
			case tc.err == "short":
				if !errors.Is(err, ErrShortProxyHeader) {
					t.Fatalf("ParseProxyHeader(%q) = %v; want ErrShortProxyHeader", tc.in, err)
				}
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseProxyHeader(%q) = %v; want error with %q", tc.in, err, tc.err)
				}
			case err != nil:
				t.Fatalf("ParseProxyHeader(%q) = %v", tc.in, err)
			default:
				if n != tc.n {
					t.Errorf("ParseProxyHeader(%q) consumed %d; want %d", tc.in, n, tc.n)
				}
				if h != tc.want {
					t.Errorf("ParseProxyHeader(%q) = %+v; want %+v", tc.in, h, tc.want)
				}
				// ReadProxyHeader reads the same header and not a byte more.
				r := bytes.NewReader([]byte(tc.in))
				h2, err := ReadProxyHeader(r)
				if err != nil || r.Len() != len(tc.in)-tc.n {
					t.Errorf("ReadProxyHeader(%q) = %v, left %d; want nil, %d", tc.in, err, r.Len(), len(tc.in)-tc.n)
				}
				if h2 != h {
					t.Errorf("ReadProxyHeader(%q) = %+v; want %+v", tc.in, h2, h)
				}
			}
		})
	}
}

func TestProxyHeaderRoundTrip(t *testing.T) {
	for _, h := range []ProxyHeader{
		{Proto: TCP, Src: netip.MustParseAddrPort("198.18.0.7:40000"), Dst: netip.MustParseAddrPort("198.18.0.1:443")},
		{Proto: TCP, Src: netip.MustParseAddrPort("[fd00::7]:1"), Dst: netip.MustParseAddrPort("[fd00::1]:65535")},
		{Proto: TCP, Local: true},
	} {
		for v, enc := range map[int][]byte{1: h.AppendV1(nil), 2: h.AppendV2(nil)} {
			got, n, err := ParseProxyHeader(enc)
			want := h
			want.Version = v
			if err != nil || n != len(enc) {
				t.Fatalf("parse v%d %q = %v, %d", v, enc, err, n)
			}
			if got != want {
				t.Errorf("v%d round trip = %+v; want %+v", v, got, want)
			}
		}
	}
}

func FuzzParseProxyHeader(f *testing.F) {
	for _, tc := range proxyCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseProxyHeader(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("ParseProxyHeader(%q) consumed %d of %d", b, n, len(b))
		}
		if !h.Local && (!h.Src.IsValid() || !h.Dst.IsValid()) {
			t.Fatalf("ParseProxyHeader(%q) = %+v: addresses missing", b, h)
		}
		// Whatever parses must re-encode and parse to the same addresses.
		enc := h.AppendV2(nil)
		h2, _, err := ParseProxyHeader(enc)
		if err != nil || h2.Src != h.Src || h2.Dst != h.Dst {
			t.Fatalf("re-encoded %+v as %q: %+v, %v", h, enc, h2, err)
		}
	})
}

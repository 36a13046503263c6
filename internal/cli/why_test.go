package cli

import (
	"net/netip"
	"strings"
	"testing"

	"portolan/internal/portspec"
)

func TestParseBindTarget(t *testing.T) {
	cases := []struct {
		in      string
		addr    string // "" for the zero Addr
		port    portspec.Port
		proto   portspec.Proto
		wantErr string
	}{
		{"0.0.0.0:8080/tcp", "0.0.0.0", 8080, portspec.TCP, ""},
		{":80", "", 80, portspec.TCP, ""},
		{"8080", "", 8080, portspec.TCP, ""},
		{"*:53/udp", "", 53, portspec.UDP, ""},
		{"[::1]:5353/udp", "::1", 5353, portspec.UDP, ""},
		{"[fe80::1%eth0]:80", "fe80::1%eth0", 80, portspec.TCP, ""},
		{"127.0.0.1:http", "127.0.0.1", 80, portspec.TCP, ""},
		{"::1:80", "", 0, 0, "IPv6 addresses in brackets"},
		{"host:80", "", 0, 0, `"host" is not an IP address`},
		{"127.0.0.1:", "", 0, 0, "no port"},
		{"127.0.0.1:80/sctp", "", 0, 0, "want tcp or udp"},
		{"127.0.0.1:80-90", "", 0, 0, "want one"},
		{"127.0.0.1:70000", "", 0, 0, "70000"},
	}
	for _, c := range cases {
		addr, port, proto, err := parseBindTarget(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("parseBindTarget(%q) = %v, %d, %v, %v; want error with %q", c.in, addr, port, proto, err, c.wantErr)
			}
			continue
		}
		var want netip.Addr
		if c.addr != "" {
			want = netip.MustParseAddr(c.addr)
		}
		if err != nil || addr != want || port != c.port || proto != c.proto {
			t.Errorf("parseBindTarget(%q) = %v, %d, %v, %v; want %v, %d, %v", c.in, addr, port, proto, err, want, c.port, c.proto)
		}
	}
}

func TestParseDest(t *testing.T) {
	cases := []struct {
		in      string
		addr    string
		port    uint16
		wantErr bool
	}{
		{"10.0.0.5", "10.0.0.5", 0, false},
		{"10.0.0.5:5432", "10.0.0.5", 5432, false},
		{"[::1]:443", "::1", 443, false},
		{"[::1]", "::1", 0, false},
		{"::1", "::1", 0, false},
		{"db:5432", "", 0, true},
		{"10.0.0.5:0", "", 0, true},
		{"10.0.0.5:x", "", 0, true},
	}
	for _, c := range cases {
		a, p, err := parseDest(c.in)
		if c.wantErr {
			if err == nil || !strings.Contains(err.Error(), "--dest") {
				t.Errorf("parseDest(%q) = %v, %d, %v; want an error naming --dest", c.in, a, p, err)
			}
			continue
		}
		if err != nil || a != netip.MustParseAddr(c.addr) || p != c.port {
			t.Errorf("parseDest(%q) = %v, %d, %v; want %s, %d", c.in, a, p, err, c.addr, c.port)
		}
	}
}

func TestWrapText(t *testing.T) {
	cases := []struct {
		s     string
		width int
		lead  string
		want  string
	}{
		{"a b c", 0, "- ", "- a b c"},
		{"one two three four", 10, "", "one two\nthree four"},
		{"one two three four", 12, "  - ", "  - one two\n    three\n    four"},
		{"averyveryverylongword x", 8, "", "averyveryverylongword\nx"},
	}
	for _, c := range cases {
		if got := wrapText(c.s, c.width, c.lead); got != c.want {
			t.Errorf("wrapText(%q, %d, %q) = %q; want %q", c.s, c.width, c.lead, got, c.want)
		}
	}
}

func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " y ": true, "n\n": false, "\n": false, "": false, "yes please\n": false} {
		var errOut strings.Builder
		g := &Globals{io: IO{In: strings.NewReader(in), ErrOut: &errOut}}
		got, err := confirm(g, "go? [y/N] ")
		if err != nil || got != want {
			t.Errorf("confirm with answer %q = %v, %v; want %v", in, got, err, want)
		}
		if errOut.String() != "go? [y/N] " {
			t.Errorf("question on stderr = %q", errOut.String())
		}
	}
}

package target

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeHosts is the resolver of the tests: a fixed table, answering like a
// real resolver for network ip, ip4 and ip6.
var fakeHosts = map[string][]string{
	"web.test":    {"198.18.0.80"},
	"multi.test":  {"fd00::1", "198.18.0.1", "198.18.0.2", "fd00::2"},
	"six.test":    {"fd00::9"},
	"four.test":   {"198.18.0.9"},
	"mcast.test":  {"198.18.0.7", "224.0.0.1"},
	"doc.test":    {"192.0.2.1"},
	"group.test":  {"224.0.0.9"},
	"mapped.test": {"::ffff:198.18.0.44"},
}

func fakeResolve(_ context.Context, network, host string) ([]netip.Addr, error) {
	list, ok := fakeHosts[strings.TrimSuffix(host, ".")]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range list {
		a := netip.MustParseAddr(s)
		if network == "ip4" && !a.Unmap().Is4() || network == "ip6" && a.Unmap().Is4() {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		exprs    []string
		excludes []string
		opts     Options
		want     string // canonical String() of the set
		wantLen  uint64
	}{
		{"address v4", []string{"198.18.0.1"}, nil, Options{}, "198.18.0.1", 1},
		{"address v6", []string{"fd00::1"}, nil, Options{}, "fd00::1", 1},
		{"v4-mapped address", []string{"::ffff:198.18.0.1"}, nil, Options{}, "198.18.0.1", 1},
		{"prefix", []string{"198.18.0.0/30"}, nil, Options{}, "198.18.0.0/30", 4},
		{"prefix with host bits", []string{"198.18.0.5/30"}, nil, Options{}, "198.18.0.4/30", 4},
		{"prefix /32", []string{"198.18.0.5/32"}, nil, Options{}, "198.18.0.5", 1},
		{"prefix v6", []string{"fd00::/120"}, nil, Options{}, "fd00::/120", 256},
		{"prefix v4-mapped", []string{"::ffff:198.18.0.0/120"}, nil, Options{}, "198.18.0.0/24", 256},
		{"range full", []string{"198.18.0.10-198.18.0.20"}, nil, Options{}, "198.18.0.10-20", 11},
		{"range short", []string{"198.18.0.10-20"}, nil, Options{}, "198.18.0.10-20", 11},
		{"range across octets", []string{"198.18.0.250-198.18.1.5"}, nil, Options{}, "198.18.0.250-198.18.1.5", 12},
		{"range open end", []string{"fd00::1-"}, nil, Options{}, "fd00::1-ffff", 65535},
		{"range one address", []string{"198.18.0.7-7"}, nil, Options{}, "198.18.0.7", 1},
		{"range that is a prefix", []string{"198.18.0.0-198.18.1.255"}, nil, Options{}, "198.18.0.0/23", 512},
		{"range v6 full", []string{"fd00::1-fd00::5"}, nil, Options{}, "fd00::1-5", 5},
		{"range v6 short is hex", []string{"fd00::1-ff"}, nil, Options{}, "fd00::1-ff", 255},
		{"range v6 short to prefix", []string{"fd00::-ffff"}, nil, Options{}, "fd00::/112", 65536},
		{"range v6 across groups", []string{"fd00::ffff-fd00::1:1"}, nil, Options{}, "fd00::ffff-fd00::1:1", 3},
		{"octets", []string{"198.18.0-1.1-10"}, nil, Options{}, "198.18.0.1-10,198.18.1.1-10", 20},
		{"octet star", []string{"198.18.0.*"}, nil, Options{}, "198.18.0.0/24", 256},
		{"octet stars", []string{"198.18-19.*.*"}, nil, Options{}, "198.18.0.0/15", 1 << 17},
		{"octet open low", []string{"198.18.0.-5"}, nil, Options{}, "198.18.0.0-5", 6},
		{"octet open high", []string{"198.18.0.250-"}, nil, Options{}, "198.18.0.250-255", 6},
		{"octet middle", []string{"198.18.1-2.0"}, nil, Options{}, "198.18.1.0,198.18.2.0", 2},
		{"list commas", []string{"198.18.0.1,198.18.0.3"}, nil, Options{}, "198.18.0.1,198.18.0.3", 2},
		{"list white space", []string{"198.18.0.1 198.18.0.2\t198.18.0.3\n198.18.0.4"}, nil, Options{}, "198.18.0.1-4", 4},
		{"list empty items", []string{",198.18.0.1,, ,"}, nil, Options{}, "198.18.0.1", 1},
		{"several arguments", []string{"198.18.0.1", "198.18.0.2"}, nil, Options{}, "198.18.0.1-2", 2},
		{"overlap merges", []string{"198.18.0.0/24,198.18.0.5,198.18.0.200-198.18.1.0"}, nil, Options{}, "198.18.0.0-198.18.1.0", 257},
		{"adjacent merges", []string{"198.18.0.128/25,198.18.0.0/25"}, nil, Options{}, "198.18.0.0/24", 256},
		{"v4 before v6", []string{"fd00::1,198.18.0.1"}, nil, Options{}, "198.18.0.1,fd00::1", 2},
		{"families do not merge", []string{"255.255.255.254,::"}, nil, Options{IncludeReserved: true}, "255.255.255.254,::", 2},
		{"hostname", []string{"web.test"}, nil, Options{}, "198.18.0.80", 1},
		{"hostname mapped", []string{"mapped.test"}, nil, Options{}, "198.18.0.44", 1},
		{"hostname in list", []string{"198.18.0.1,web.test"}, nil, Options{}, "198.18.0.1,198.18.0.80", 2},
		{"hostname trailing dot", []string{"web.test."}, nil, Options{}, "198.18.0.80", 1},
		{"exclude address", []string{"198.18.0.0/30"}, []string{"198.18.0.1"}, Options{}, "198.18.0.0,198.18.0.2/31", 3},
		{"exclude ends", []string{"198.18.0.0/24"}, []string{"198.18.0.0,198.18.0.255"}, Options{}, "198.18.0.1-254", 254},
		{"exclude several", []string{"198.18.0.0/24,fd00::/126"}, []string{"198.18.0.10-19", "198.18.0.100/30,fd00::2"}, Options{}, "198.18.0.0-9,198.18.0.20-99,198.18.0.104-255,fd00::/127,fd00::3", 245},
		{"exclude hostname takes all", []string{"198.18.0.0/30"}, []string{"multi.test"}, Options{}, "198.18.0.0,198.18.0.3", 2},
		{"exclude everything", []string{"198.18.0.0/30"}, []string{"198.18.0.0/24"}, Options{}, "", 0},
		{"exclude other family", []string{"198.18.0.1"}, []string{"::/0"}, Options{}, "198.18.0.1", 1},
		{"exclude name of reserved", []string{"198.18.0.1,224.0.0.9"}, []string{"group.test"}, Options{}, "198.18.0.1", 1},
		{"benchmark range allowed", []string{"198.18.0.0/15"}, nil, Options{}, "198.18.0.0/15", 1 << 17},
		{"loopback allowed", []string{"127.0.0.1,::1"}, nil, Options{}, "127.0.0.1,::1", 2},
		{"excluded reserved part", []string{"192.0.2.0/23"}, []string{"192.0.2.0/24"}, Options{}, "192.0.3.0/24", 256},
		{"reserved included", []string{"224.0.0.1,2001:db8::1-5"}, nil, Options{IncludeReserved: true}, "224.0.0.1,2001:db8::1-5", 6},
		{"limit exact", []string{"10.0.0.0/8"}, nil, Options{}, "10.0.0.0/8", 1 << 24},
		{"limit custom", []string{"198.18.0.0/30"}, nil, Options{MaxAddrs: 4}, "198.18.0.0/30", 4},
		{"forced", []string{"fd00::/64"}, nil, Options{Force: true}, "fd00::/64", 1<<64 - 1},
		{"only4", []string{"198.18.0.1,multi.test"}, nil, Options{Only4: true}, "198.18.0.1", 1},
		{"only6", []string{"fd00::5,multi.test"}, nil, Options{Only6: true}, "fd00::1,fd00::5", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Resolver = fakeResolve
			s, err := Parse(context.Background(), tt.exprs, tt.excludes, opts)
			if err != nil {
				t.Fatalf("Parse(%q, %q) error: %v", tt.exprs, tt.excludes, err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("Parse(%q, %q) = %q; want %q", tt.exprs, tt.excludes, got, tt.want)
			}
			if got := s.Len(); got != tt.wantLen {
				t.Errorf("Parse(%q, %q).Len() = %d; want %d", tt.exprs, tt.excludes, got, tt.wantLen)
			}
			checkSet(t, s)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		exprs    []string
		excludes []string
		opts     Options
		want     string
	}{
		{"bad address", []string{"198.18.0.300"}, nil, Options{}, `bad address "198.18.0.300" at column 1`},
		{"bad address column", []string{"198.18.0.1,198.18.0.300"}, nil, Options{}, `bad address "198.18.0.300" at column 12 in "198.18.0.1,198.18.0.300"`},
		{"short address", []string{"198.18.0"}, nil, Options{}, `bad address "198.18.0" at column 1`},
		{"bad v6", []string{"fd00::g"}, nil, Options{}, `bad address "fd00::g" at column 1`},
		{"zone", []string{"fe80::1%eth0"}, nil, Options{}, `bad address "fe80::1%eth0" at column 1: zones are not supported`},
		{"prefix length", []string{"198.18.0.1 198.18.0.0/33"}, nil, Options{}, `bad prefix length "33" at column 23 in "198.18.0.1 198.18.0.0/33": want 0-32`},
		{"prefix length v6", []string{"fd00::/129"}, nil, Options{}, `bad prefix length "129" at column 8 in "fd00::/129": want 0-128`},
		{"prefix length empty", []string{"fd00::/"}, nil, Options{}, `bad prefix length "" at column 8 in "fd00::/": want 0-128`},
		{"prefix address", []string{"198.18.0.256/24"}, nil, Options{}, `bad prefix "198.18.0.256/24" at column 1: "198.18.0.256" is not an address`},
		{"prefix hostname", []string{"web.test/24"}, nil, Options{}, `bad prefix "web.test/24" at column 1: hostname/length is not supported; give the address`},
		{"prefix mapped short", []string{"::ffff:0:0/95"}, nil, Options{}, `bad prefix "::ffff:0:0/95" at column 1: an IPv4-mapped prefix needs a length of 96 or more`},
		{"range backwards", []string{"198.18.0.20-10"}, nil, Options{}, `bad range "198.18.0.20-10" at column 1: it ends before it starts`},
		{"range backwards full", []string{"fd00::5-fd00::1"}, nil, Options{}, `bad range "fd00::5-fd00::1" at column 1: it ends before it starts`},
		{"range end", []string{"198.18.0.10-300"}, nil, Options{}, `bad range end "300" at column 13 in "198.18.0.10-300": want an address or the last octet 0-255`},
		{"range end v6", []string{"fd00::1-fffff"}, nil, Options{}, `bad range end "fffff" at column 9 in "fd00::1-fffff": want an address or the last group 0-ffff (hex)`},
		{"range mixed", []string{"198.18.0.1-fd00::1"}, nil, Options{}, `bad range "198.18.0.1-fd00::1" at column 1: it mixes IPv4 and IPv6`},
		{"octet out of range", []string{"198.18.0-300.1"}, nil, Options{}, `bad octet range "198.18.0-300.1" at column 1: octet 3 "0-300" at column 8: want n, n-m, -m, n- or * within 0-255`},
		{"octet backwards", []string{"198.18.9-1.1"}, nil, Options{}, `bad octet range "198.18.9-1.1" at column 1: octet 3 "9-1" at column 8: want n, n-m, -m, n- or * within 0-255`},
		{"octet too many", []string{"1-255.1-255.1-255.1"}, nil, Options{}, `bad octet range "1-255.1-255.1-255.1" at column 1: it makes 16581375 separate ranges, more than 65536; use prefixes or ranges`},
		{"hostname character", []string{"ex!ample.test"}, nil, Options{}, `bad hostname "ex!ample.test" at column 1: character '!' at column 3`},
		{"hostname empty label", []string{"198.18.0.1 a..b"}, nil, Options{}, `bad hostname "a..b" at column 12 in "198.18.0.1 a..b": empty label at column 14`},
		{"hostname dash", []string{"-web.test"}, nil, Options{}, `bad hostname "-web.test" at column 1: label starts or ends with '-' at column 1`},
		{"hostname non-ASCII", []string{"bücher.test"}, nil, Options{}, `bad hostname "bücher.test" at column 1: non-ASCII character (use the xn-- form) at column 2`},
		{"no targets", []string{" , "}, nil, Options{}, `no targets given`},
		{"exclude syntax", []string{"198.18.0.1"}, []string{"198.18.0.0/40"}, Options{}, `exclude: bad prefix length "40" at column 12 in "198.18.0.0/40": want 0-32`},
		{"both families", []string{"198.18.0.1"}, nil, Options{Only4: true, Only6: true}, `only IPv4 and only IPv6 exclude each other`},
		{"only4 literal", []string{"198.18.0.1,fd00::1"}, nil, Options{Only4: true}, `fd00::1 is IPv6, but only IPv4 targets were asked for`},
		{"only6 literal", []string{"198.18.0.0/24"}, nil, Options{Only6: true}, `198.18.0.0/24 is IPv4, but only IPv6 targets were asked for`},
		{"unknown host", []string{"198.18.0.1,nosuch.test"}, nil, Options{}, `resolve "nosuch.test": no such host`},
		{"invalid TLD", []string{"nosuch.invalid"}, nil, Options{}, `resolve "nosuch.invalid": no such host`},
		{"exclude unknown host", []string{"198.18.0.1"}, []string{"nosuch.test"}, Options{}, `exclude: resolve "nosuch.test": no such host`},
		{"no v4", []string{"six.test"}, nil, Options{Only4: true}, `resolve "six.test": no IPv4 address`},
		{"no v6", []string{"four.test"}, nil, Options{Only6: true}, `resolve "four.test": no IPv6 address`},
		{"multicast", []string{"198.18.0.0/24,224.0.0.1"}, nil, Options{}, `224.0.0.1 is multicast (224.0.0.0/4): refused`},
		{"multicast v6", []string{"ff02::1"}, nil, Options{}, `ff02::1 is multicast (ff00::/8): refused`},
		{"this network", []string{"0.0.0.0"}, nil, Options{}, `0.0.0.0 is this network (0.0.0.0/8): refused`},
		{"broadcast", []string{"255.255.255.255"}, nil, Options{}, `255.255.255.255 is limited broadcast (255.255.255.255/32): refused`},
		{"future use", []string{"240.0.0.0/4"}, nil, Options{}, `240.0.0.0/4 is reserved for future use (240.0.0.0/4): refused`},
		{"unspecified", []string{"::"}, nil, Options{}, `:: is the unspecified address (::/128): refused`},
		{"documentation v4", []string{"198.51.100.7"}, nil, Options{}, `198.51.100.7 is documentation (198.51.100.0/24): refused`},
		{"documentation v4 3", []string{"203.0.113.0-203.0.113.9"}, nil, Options{}, `203.0.113.0-203.0.113.9 is documentation (203.0.113.0/24): refused`},
		{"documentation v6", []string{"198.18.0.0/30,2001:db8::1-5"}, nil, Options{}, `2001:db8::1-5 is documentation (2001:db8::/32): refused`},
		{"documentation v6 new", []string{"3fff::1"}, nil, Options{}, `3fff::1 is documentation (3fff::/20): refused`},
		{"partial overlap", []string{"192.0.0.0/16"}, nil, Options{}, `192.0.0.0/16 includes documentation (192.0.2.0/24): refused`},
		{"partial after exclude", []string{"192.0.2.0/24"}, []string{"192.0.2.0/25"}, Options{}, `192.0.2.0/24 is documentation (192.0.2.0/24): refused`},
		{"whole space", []string{"0.0.0.0/0"}, nil, Options{Force: true}, `0.0.0.0/0 includes this network (0.0.0.0/8): refused`},
		{"hostname reserved", []string{"mcast.test"}, nil, Options{AllAddrs: true}, `mcast.test (224.0.0.1) is multicast (224.0.0.0/4): refused`},
		{"hostname documentation", []string{"doc.test"}, nil, Options{}, `doc.test (192.0.2.1) is documentation (192.0.2.0/24): refused`},
		{"limit default", []string{"10.0.0.0/7"}, nil, Options{}, `targets hold 33554432 addresses, more than the limit of 16777216`},
		{"limit custom", []string{"198.18.0.0/24"}, nil, Options{MaxAddrs: 100}, `targets hold 256 addresses, more than the limit of 100`},
		{"limit v6", []string{"fd00::/64"}, nil, Options{}, `targets hold 18446744073709551616 addresses, more than the limit of 16777216`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Resolver = fakeResolve
			s, err := Parse(context.Background(), tt.exprs, tt.excludes, opts)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %v; want error %q", tt.exprs, tt.excludes, s, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q, %q) error:\n got %s\nwant %s", tt.exprs, tt.excludes, err, tt.want)
			}
		})
	}
}

// TestParseErrorTypes checks the types callers branch on.
func TestParseErrorTypes(t *testing.T) {
	ctx := context.Background()
	opts := Options{Resolver: fakeResolve}
	_, err := Parse(ctx, []string{"198.18.0.300"}, nil, opts)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Column != 1 || pe.Token != "198.18.0.300" {
		t.Errorf("Parse(bad address) error = %#v; want *ParseError at column 1", err)
	}
	_, err = Parse(ctx, []string{"224.0.0.1"}, nil, opts)
	var re *ReservedError
	if !errors.As(err, &re) || re.Addr != netip.MustParseAddr("224.0.0.1") || re.Range.Prefix != netip.MustParsePrefix("224.0.0.0/4") {
		t.Errorf("Parse(multicast) error = %#v; want *ReservedError", err)
	}
	_, err = Parse(ctx, []string{"fd00::/64"}, nil, opts)
	var le *LimitError
	if !errors.As(err, &le) || le.Max != DefaultMaxAddrs || le.Count.String() != "18446744073709551616" {
		t.Errorf("Parse(huge) error = %#v; want *LimitError", err)
	}
	_, err = Parse(ctx, []string{"nosuch.test"}, nil, opts)
	var rse *ResolveError
	var dns *net.DNSError
	if !errors.As(err, &rse) || rse.Host != "nosuch.test" || !errors.As(err, &dns) || !dns.IsNotFound {
		t.Errorf("Parse(unknown host) error = %#v; want *ResolveError wrapping a not-found *net.DNSError", err)
	}
}

func TestResolveOptions(t *testing.T) {
	tests := []struct {
		name        string
		opts        Options
		want        string
		wantNetwork string
	}{
		{"first prefers v4", Options{}, "198.18.0.1", "ip"},
		{"prefer6", Options{Prefer6: true}, "fd00::1", "ip"},
		{"all", Options{AllAddrs: true}, "198.18.0.1-2,fd00::1-2", "ip"},
		{"all only4", Options{AllAddrs: true, Only4: true}, "198.18.0.1-2", "ip4"},
		{"all only6", Options{AllAddrs: true, Only6: true}, "fd00::1-2", "ip6"},
		{"only6 prefers nothing else", Options{Only6: true}, "fd00::1", "ip6"},
		{"prefer6 falls back to v4", Options{Prefer6: true}, "198.18.0.9", "ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := "multi.test"
			if strings.Contains(tt.name, "falls back") {
				host = "four.test"
			}
			var networks []string
			opts := tt.opts
			opts.Resolver = func(ctx context.Context, network, h string) ([]netip.Addr, error) {
				networks = append(networks, network)
				return fakeResolve(ctx, network, h)
			}
			s, err := Parse(context.Background(), []string{host}, nil, opts)
			if err != nil {
				t.Fatalf("Parse(%q, %+v): %v", host, tt.opts, err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("Parse(%q, %+v) = %q; want %q", host, tt.opts, got, tt.want)
			}
			if !slices.Equal(networks, []string{tt.wantNetwork}) {
				t.Errorf("Parse(%q, %+v) looked up networks %q; want [%q]", host, tt.opts, networks, tt.wantNetwork)
			}
		})
	}
}

// TestResolveOnce checks that a name repeated in a long list is looked up
// once, and that .invalid names never reach the resolver.
func TestResolveOnce(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	opts := Options{Resolver: func(ctx context.Context, network, h string) ([]netip.Addr, error) {
		mu.Lock()
		calls[h]++
		mu.Unlock()
		return fakeResolve(ctx, network, h)
	}}
	exprs := []string{strings.Repeat("web.test four.test ", 50)}
	s, err := Parse(context.Background(), exprs, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "198.18.0.9,198.18.0.80"; got != want {
		t.Errorf("Parse(repeated names) = %q; want %q", got, want)
	}
	if calls["web.test"] != 1 || calls["four.test"] != 1 {
		t.Errorf("lookups = %v; want one per name", calls)
	}
	if _, err := Parse(context.Background(), []string{"x.invalid"}, nil, opts); err == nil || calls["x.invalid"] != 0 {
		t.Errorf("Parse(x.invalid) = %v with %d lookups; want an error and no lookup", err, calls["x.invalid"])
	}
	// Literal targets that are refused anyway cause no lookups.
	for _, exprs := range []string{"224.0.0.1 web.test", "fd00::/64 web.test"} {
		calls = map[string]int{}
		if _, err := Parse(context.Background(), []string{exprs}, nil, opts); err == nil || calls["web.test"] != 0 {
			t.Errorf("Parse(%q) = %v with %d lookups; want an error and no lookup", exprs, err, calls["web.test"])
		}
	}
}

// TestResolveLocalhost resolves a real name: the only one a test may ask
// the system for.
func TestResolveLocalhost(t *testing.T) {
	s, err := Parse(context.Background(), []string{"localhost"}, nil, Options{AllAddrs: true})
	if err != nil {
		t.Fatalf("Parse(localhost): %v", err)
	}
	if s.Len() == 0 {
		t.Fatal("Parse(localhost) is empty")
	}
	for _, r := range s.Ranges() {
		for a := r.First; ; a = a.Next() {
			if a != netip.MustParseAddr("127.0.0.1") && a != netip.IPv6Loopback() {
				t.Errorf("Parse(localhost) holds %v; want only 127.0.0.1 and ::1", a)
			}
			if a == r.Last {
				break
			}
		}
	}
}

func TestReadFile(t *testing.T) {
	got, err := ReadFile("testdata/targets.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.18.0.1", "198.18.0.10-12", "198.18.1.0/30, fd00::1-2", "web.test"}
	if !slices.Equal(got, want) {
		t.Errorf("ReadFile(targets.txt) = %q; want %q", got, want)
	}
	s, err := Parse(context.Background(), got, nil, Options{Resolver: fakeResolve})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "198.18.0.1,198.18.0.10-12,198.18.0.80,198.18.1.0/30,fd00::1-2"; got != want {
		t.Errorf("Parse(ReadFile(targets.txt)) = %q; want %q", got, want)
	}

	_, err = ReadFile("testdata/bad.txt")
	if want := `testdata/bad.txt:3: bad address "198.18.0.300" at column 12`; err == nil || err.Error() != want {
		t.Errorf("ReadFile(bad.txt) error = %v; want %s", err, want)
	}
	if _, err := ReadFile("testdata/missing.txt"); err == nil || !strings.Contains(err.Error(), "testdata/missing.txt") {
		t.Errorf("ReadFile(missing.txt) error = %v; want one naming the file", err)
	}
	long := strings.Repeat("x", 2<<20)
	if _, err := ReadList(strings.NewReader("198.18.0.1\n"+long), "big"); err == nil || !strings.HasPrefix(err.Error(), "read big:2: ") {
		t.Errorf("ReadList(long line) error = %v; want one naming big:2", err)
	}
}

// checkSet verifies the invariants of a Set: sorted, disjoint, not
// adjacent, consistent sizes, and At, Index and Contains agreeing.
func checkSet(t *testing.T, s *Set) {
	t.Helper()
	rs := s.Ranges()
	for i, r := range rs {
		if !r.First.IsValid() || r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) || r.First.Zone() != "" || r.First.Is4In6() {
			t.Fatalf("%v: bad range %d: %v", s, i, r)
		}
		if i > 0 {
			p := rs[i-1]
			if !p.Last.Less(r.First) || (p.Last.Is4() == r.First.Is4() && p.Last.Next() == r.First) {
				t.Fatalf("%v: ranges %v and %v overlap or touch", s, p, r)
			}
		}
	}
	if big := s.BigLen(); big.IsUint64() && big.Uint64() != s.Len() || !big.IsUint64() && s.Len() != math.MaxUint64 {
		t.Fatalf("%v: BigLen %v; Len %d", s, big, s.Len())
	}
	n := s.Len()
	if n == 0 {
		return
	}
	var idx []uint64
	for _, i := range []uint64{0, 1, n / 2, n - 2, n - 1} {
		if i < n {
			idx = append(idx, i)
		}
	}
	var start uint64
	for _, r := range rs {
		// The first and last address of each range sit at known indexes.
		if start < n {
			idx = append(idx, start)
		}
		start = satAdd(start, r.Len())
		if start <= n && start > 0 {
			idx = append(idx, start-1)
		}
		if len(idx) > 200 {
			break
		}
	}
	for _, i := range idx {
		a := s.At(i)
		if !s.Contains(a) {
			t.Fatalf("%v: At(%d) = %v, which it does not contain", s, i, a)
		}
		if j, ok := s.Index(a); !ok || j != i {
			t.Fatalf("%v: Index(At(%d) = %v) = %d, %v", s, i, a, j, ok)
		}
	}
	if a := rs[0].First.Prev(); a.IsValid() && s.Contains(a) {
		t.Fatalf("%v: contains %v before its first range", s, a)
	}
	if a := rs[len(rs)-1].Last.Next(); a.IsValid() && s.Contains(a) {
		t.Fatalf("%v: contains %v after its last range", s, a)
	}
}

// FuzzParse checks that Parse never panics, that what it returns is a
// well-formed set, and that the set's String parses back to the same set.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"198.18.0.1", "198.18.0.0/30", "198.18.0.5/30", "198.18.0.10-198.18.0.20", "198.18.0.10-20",
		"fd00::1-fd00::5", "fd00::1-ff", "198.18.0-1.1-10", "198.18.0.*", "198.18.0.-5", "198.18.0.250-",
		"198.18.0.1,198.18.0.3 fd00::1", "web.test", "multi.test,nosuch.test", "::ffff:198.18.0.0/120",
		"198.18.0.300", "198.18.0.0/33", "198.18.0.20-10", "fe80::1%eth0", "ex!ample.test", "0.0.0.0/0",
		"1-255.1-255.1-255.1", "::/0", "255.255.255.254,::", "a..b", "224.0.0.1",
	} {
		f.Add(s, "")
		f.Add(s, "198.18.0.1,fd00::/127")
	}
	f.Add("198.18.0.0/24", "198.18.0.10-20 web.test")
	f.Fuzz(func(t *testing.T, expr, exclude string) {
		opts := Options{Resolver: fuzzResolve, IncludeReserved: true, Force: true, AllAddrs: true}
		s, err := Parse(context.Background(), []string{expr}, []string{exclude}, opts)
		if err != nil {
			return
		}
		checkSet(t, s)
		if s.Len() == 0 {
			return
		}
		text := s.String()
		s2, err := Parse(context.Background(), []string{text}, nil, opts)
		if err != nil {
			t.Fatalf("Parse(%q) = %v; Parse(its String %q): %v", expr, s, text, err)
		}
		if !slices.Equal(s.Ranges(), s2.Ranges()) {
			t.Fatalf("Parse(%q) = %v; Parse(%q) = %v; want the same", expr, s, text, s2)
		}
	})
}

// fuzzResolve answers every name with addresses derived from it, without
// any network.
func fuzzResolve(_ context.Context, network, host string) ([]netip.Addr, error) {
	h := fnv.New32a()
	h.Write([]byte(host))
	v := h.Sum32()
	if v%7 == 0 {
		return nil, fmt.Errorf("no answer for %s", host)
	}
	a4 := netip.AddrFrom4([4]byte{198, 18, byte(v >> 8), byte(v)})
	a6 := netip.AddrFrom16([16]byte{0xfd, 14: byte(v >> 8), 15: byte(v)})
	return []netip.Addr{a4, a6}, nil
}

// TestParseNames: an address given by name keeps it, for the reports
// (nmap's "Scan report for web.test (198.18.0.80)"); one given as such has
// none, nor does an excluded one.
func TestParseNames(t *testing.T) {
	s, err := Parse(context.Background(), []string{"web.test", "198.18.0.1-3", "multi.test"}, []string{"198.18.0.2"},
		Options{Resolver: fakeResolve, AllAddrs: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ addr, want string }{
		{"198.18.0.80", "web.test"},
		{"198.18.0.3", ""},
		{"fd00::1", "multi.test"},
		{"198.18.0.1", "multi.test"}, // given twice: as an address and by name
		{"198.18.0.2", ""},           // excluded
	} {
		if got := s.Name(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Name(%s) = %q; want %q", tc.addr, got, tc.want)
		}
	}
}

package wait

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var targetTests = []struct {
	name string
	in   string
	want Target // Raw is filled in from in
	err  string // substring of the error; "" means no error
}{
	{"host and port", "db:5432", Target{Kind: TCP, Host: "db", Port: 5432}, ""},
	{"ipv4", "127.0.0.1:80", Target{Kind: TCP, Host: "127.0.0.1", Port: 80}, ""},
	{"ipv6", "[::1]:8080", Target{Kind: TCP, Host: "::1", Port: 8080}, ""},
	{"ipv6 zone", "[fe80::1%lo]:22", Target{Kind: TCP, Host: "fe80::1%lo", Port: 22}, ""},
	{"port only", ":8080", Target{Kind: TCP, Host: "localhost", Port: 8080}, ""},
	{"bare port", "8080", Target{Kind: TCP, Host: "localhost", Port: 8080}, ""},
	{"tcp scheme", "tcp://db:5432", Target{Kind: TCP, Host: "db", Port: 5432}, ""},
	{"unix", "unix:/run/app.sock", Target{Kind: Unix, Path: "/run/app.sock"}, ""},
	{"unix scheme", "unix:///run/app.sock", Target{Kind: Unix, Path: "/run/app.sock"}, ""},
	{"unix abstract", "unix:@portolan", Target{Kind: Unix, Path: "@portolan"}, ""},
	{"http", "http://api:8080/health", Target{Kind: HTTP, Host: "api", Port: 8080, URL: "http://api:8080/health"}, ""},
	{"http default port", "http://api/health", Target{Kind: HTTP, Host: "api", Port: 80, URL: "http://api/health"}, ""},
	{"https default port", "HTTPS://api", Target{Kind: HTTP, Host: "api", Port: 443, URL: "https://api"}, ""},
	{"http ipv6", "http://[::1]:9000/x?y=1", Target{Kind: HTTP, Host: "::1", Port: 9000, URL: "http://[::1]:9000/x?y=1"}, ""},

	{"empty", "", Target{}, "empty target at column 1"},
	{"no port", "db", Target{}, `missing ':port' after "db" at column 3`},
	{"empty port", "db:", Target{}, "missing port number at column 4"},
	{"port not a number", "db:pg", Target{}, `port "pg" is not a number at column 4`},
	{"port too big", "db:70000", Target{}, "port 70000 out of range 1-65535 at column 4"},
	{"bare port too big", "70000", Target{}, "port 70000 out of range 1-65535 at column 1"},
	{"port zero", ":0", Target{}, "port 0 cannot be waited for at column 2"},
	{"path needs http", "api:8080/health", Target{}, `path "/health" needs an http:// or https:// URL at column 9`},
	{"path without port", "api/health", Target{}, `missing ':port' before "/health" at column 4`},
	{"unbracketed ipv6", "::1:8080", Target{}, "IPv6 address needs brackets: [::1]:8080 at column 1"},
	{"unclosed bracket", "[::1:8080", Target{}, "missing ']' after IPv6 address at column 1"},
	{"ipv4 in brackets", "[127.0.0.1]:80", Target{}, `"127.0.0.1" is not an IPv6 address at column 2`},
	{"bracket without port", "[::1]", Target{}, `missing ':port' after "[::1]" at column 6`},
	{"bad host", "d b:1", Target{}, "unexpected space or control character at column 2"},
	{"bad host char", "d$b:1", Target{}, `character '$' not allowed in host "d$b" at column 2`},
	{"unknown scheme", "ftp://x:21", Target{}, `unknown scheme "ftp"`},
	{"unix empty", "unix:", Target{}, `missing socket path after "unix:" at column 6`},
	{"http no host", "http:///x", Target{}, "missing host at column 8"},
	{"http bad port", "http://api:99999/", Target{}, "port 99999 out of range 1-65535 at column 12"},
	{"http user", "http://u:p@api/", Target{}, "user info"},
}

func TestParseTarget(t *testing.T) {
	for _, tt := range targetTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseTarget(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
					t.Errorf("ParseTarget(%q) error %q does not name the input", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTarget(%q) = %v", tt.in, err)
			}
			tt.want.Raw = tt.in
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTarget(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// canonical writes t in the form ParseTarget reads back to the same target.
func canonical(t Target) string {
	switch t.Kind {
	case Unix:
		return "unix://" + t.Path
	case HTTP:
		return t.URL
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

func FuzzParseTarget(f *testing.F) {
	for _, tt := range targetTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			if !strings.Contains(err.Error(), "column") {
				t.Errorf("ParseTarget(%q) error %q names no column", s, err)
			}
			return
		}
		if got.Kind != Unix && (got.Port == 0 || got.Host == "") {
			t.Errorf("ParseTarget(%q) = %+v: no host or port", s, got)
		}
		c := canonical(got)
		again, err := ParseTarget(c)
		if err != nil {
			t.Fatalf("ParseTarget(%q) = %+v, but its canonical form %q does not parse: %v", s, got, c, err)
		}
		again.Raw = got.Raw
		if got.Kind == HTTP {
			again.URL = got.URL // canonical is the URL; Host and Port must agree
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Errorf("ParseTarget(%q) does not round-trip through %q (-first +second):\n%s", s, c, diff)
		}
	})
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int
		err    string
	}{
		{"200", 200, 200, ""},
		{"200-399", 200, 399, ""},
		{"100-599", 100, 599, ""},
		{"", 0, 0, "at column 1"},
		{"2xx", 0, 0, `"2xx" is not a three-digit HTTP status at column 1`},
		{"200-", 0, 0, "at column 5"},
		{"399-200", 0, 0, "backwards"},
		{"600", 0, 0, "out of range 100-599"},
		{"099", 0, 0, "out of range"},
	}
	for _, tt := range tests {
		lo, hi, err := ParseStatus(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseStatus(%q) = %d, %d, %v; want error containing %q", tt.in, lo, hi, err, tt.err)
			}
			continue
		}
		if err != nil || lo != tt.lo || hi != tt.hi {
			t.Errorf("ParseStatus(%q) = %d, %d, %v; want %d, %d", tt.in, lo, hi, err, tt.lo, tt.hi)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"200", "200-399", "", "2xx", "399-200", "600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseStatus(s)
		if err != nil {
			return
		}
		if lo < 100 || hi > 599 || lo > hi {
			t.Errorf("ParseStatus(%q) = %d, %d: out of 100-599 or backwards", s, lo, hi)
		}
		s2 := strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
		if lo2, hi2, err := ParseStatus(s2); err != nil || lo2 != lo || hi2 != hi {
			t.Errorf("ParseStatus(%q) = %d-%d does not round-trip: %d, %d, %v", s, lo, hi, lo2, hi2, err)
		}
	})
}

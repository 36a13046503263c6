package portspec

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// fakeNames is a tiny Resolver: the test seam standing in for the registry.
type fakeNames map[Proto]map[string][]Port

var names = fakeNames{
	TCP: {"ssh": {22}, "http": {80}, "http-alt": {8080}, "https": {443}, "914c/g": {211}, "3com-tsmux": {106}},
	UDP: {"domain": {53}, "ntp": {123}, "https": {443}},
}

var errUnknown = errors.New("unknown service")

func (f fakeNames) PortsByName(pattern string, proto Proto) ([]Port, error) {
	pattern = strings.ToLower(pattern)
	if !strings.ContainsAny(pattern, "*?") {
		if ps, ok := f[proto][pattern]; ok {
			return ps, nil
		}
		return nil, fmt.Errorf("%w %q for %v", errUnknown, pattern, proto)
	}
	var out []Port
	for name, ps := range f[proto] {
		if ok, _ := path.Match(pattern, name); ok {
			out = append(out, ps...)
		}
	}
	return out, nil
}

type parseCase struct {
	name   string
	parser Parser
	spec   string
	want   string // canonical spec of the result, when it parses
	err    string // the whole Error() text, or a part of it
	col    int
	token  string
}

var named = Parser{Names: names}

var parseCases = []parseCase{
	{name: "single", spec: "22", want: "T:22"},
	{name: "zero", spec: "0", want: "T:0"},
	{name: "zero range", spec: "0-10", want: "T:0-10"},
	{name: "list", spec: "22,80,443", want: "T:22,80,443"},
	{name: "spaces around commas", spec: " 22 , 80 ,\t443 ", want: "T:22,80,443"},
	{name: "range", spec: "8000-8100", want: "T:8000-8100"},
	{name: "one-port range", spec: "80-80", want: "T:80"},
	{name: "open low", spec: "-1024", want: "T:1-1024"},
	{name: "open low never 0", spec: "-5", want: "T:1-5"},
	{name: "open high", spec: "60000-", want: "T:60000-65535"},
	{name: "dash is all but 0", spec: "-", want: "T:1-65535"},
	{name: "zero open high", spec: "0-", want: "T:0-65535"},
	{name: "max port", spec: "65535", want: "T:65535"},
	{name: "leading zeros", spec: "080,00", want: "T:0,80"},
	{name: "overlap merges", spec: "80-90,85-95,96", want: "T:80-96"},
	{name: "prefixes", spec: "T:22,U:53,161,S:2905", want: "T:22,U:53,161,S:2905"},
	{name: "prefix lasts until next", spec: "U:53,T:80,81", want: "T:80-81,U:53"},
	{name: "lower-case prefix", spec: "u:53", want: "U:53"},
	{name: "long prefix", spec: "udp:53,SCTP:1", want: "U:53,S:1"},
	{name: "prefix with open range", spec: "U:-", want: "U:1-65535"},
	{name: "suffix", spec: "443/tcp,53/udp", want: "T:443,U:53"},
	{name: "suffix any case", spec: "53/UDP", want: "U:53"},
	{name: "proto first", spec: "udp/53,tcp/443", want: "T:443,U:53"},
	{name: "range with suffix", spec: "8000-8010/udp", want: "U:8000-8010"},
	{name: "suffix is for one entry", spec: "53/udp,54", want: "T:54,U:53"},
	{name: "suffix beats prefix", spec: "U:53/tcp,54", want: "T:53,U:54"},
	{name: "default proto", parser: Parser{Default: UDP}, spec: "53,T:80", want: "T:80,U:53"},
	{name: "name", parser: named, spec: "ssh", want: "T:22"},
	{name: "name with prefix", parser: named, spec: "T:http,U:domain", want: "T:80,U:53"},
	{name: "name with suffix", parser: named, spec: "domain/udp,udp/ntp", want: "U:53,123"},
	{name: "name for the current proto", parser: named, spec: "U:https,T:https", want: "T:443,U:443"},
	{name: "wildcard", parser: named, spec: "http*", want: "T:80,443,8080"},
	{name: "star", parser: named, spec: "U:*", want: "U:53,123,443"},
	{name: "question mark", parser: named, spec: "ss?,U:?tp", want: "T:22,U:123"},
	{name: "name with slash", parser: named, spec: "914c/g", want: "T:211"},
	{name: "name starting with digit", parser: named, spec: "3com-tsmux", want: "T:106"},
	{name: "names and numbers", parser: named, spec: "22,80,8000-8100,U:53,T:ssh", want: "T:22,80,8000-8100,U:53"},
	{name: "exclude", spec: "1-1024,!80", want: "T:1-79,81-1024"},
	{name: "exclude first", spec: "!80,1-1024", want: "T:1-79,81-1024"},
	{name: "exclude caret", spec: "1-10,^5-6", want: "T:1-4,7-10"},
	{name: "exclude with prefix", spec: "T:1-10,U:1-10,!U:5", want: "T:1-10,U:1-4,6-10"},
	{name: "exclude after prefix", spec: "T:1-10,U:1-10,U:!5", want: "T:1-10,U:1-4,6-10"},
	{name: "exclude prefix sticks", spec: "T:1-10,!U:5,6", want: "T:1-10,U:6"},
	{name: "exclude name", parser: named, spec: "1-100,!ssh", want: "T:1-21,23-100"},
	{name: "exclude suffix", spec: "T:1-3,U:1-3,!2/udp", want: "T:1-3,U:1,3"},
	{name: "exclude all keeps explicit 0", spec: "0-10,!-", want: "T:0"},

	{name: "empty", spec: "", err: `empty port spec at column 1 in ""`, col: 1},
	{name: "blank", spec: "  ", err: "empty port spec", col: 1},
	{name: "empty entry", spec: "22,,80", err: `empty entry at column 4 in "22,,80"`, col: 4},
	{name: "trailing comma", spec: "22,80,", err: "empty entry", col: 7},
	{name: "leading comma", spec: ",22", err: "empty entry", col: 1},
	{name: "blank entry", spec: "22, ,80", err: "empty entry", col: 5},
	{name: "out of range", spec: "22,80,70000", err: `port 70000 out of range 0-65535 at column 7 in "22,80,70000"`, col: 7, token: "70000"},
	{name: "just out of range", spec: "65536", err: "port 65536 out of range", col: 1, token: "65536"},
	{name: "huge number", spec: "1,99999999999999999999999", err: "out of range", col: 3},
	{name: "range end out of range", spec: "80-70000", err: "port 70000 out of range", col: 4, token: "70000"},
	{name: "reversed", spec: "90-80", err: `range "90-80" is reversed (did you mean 80-90?)`, col: 1, token: "90-80"},
	{name: "empty open range", spec: "1,-0", err: `open range "-0" is empty`, col: 3},
	{name: "double range", spec: "1-2-3", err: `invalid range "1-2-3"`, col: 1},
	{name: "double dash", spec: "--", err: "invalid range", col: 1},
	{name: "unknown prefix", spec: "22,P:6", err: `unknown protocol prefix "P:"`, col: 4, token: "P:"},
	{name: "dccp prefix", spec: "dccp:6", err: "unknown protocol prefix", col: 1},
	{name: "double prefix", spec: "T:U:80", err: `invalid character ':' in "U:80"`, col: 4},
	{name: "prefix alone", spec: "22,T:", err: `missing port after "T:"`, col: 4},
	{name: "bang alone", spec: "22,!", err: `missing port after "!"`, col: 4},
	{name: "double bang", spec: "1-9,!!8", err: `invalid port "!8"`, col: 6},
	{name: "space inside", spec: "22 80", err: "unexpected space", col: 3},
	{name: "space after prefix", spec: "T: 22", err: "unexpected space", col: 3},
	{name: "bad char", spec: "80!", err: `invalid port "80!"`, col: 1},
	{name: "plus", spec: "+80", err: `invalid port "+80"`, col: 1},
	{name: "non-ascii", spec: "22,ü", err: `invalid port "ü"`, col: 4},
	{name: "name without registry", spec: "22,ssh", err: `service name "ssh" needs the registry`, col: 4, token: "ssh"},
	{name: "wildcard without registry", spec: "http*", err: "needs the registry", col: 1},
	{name: "unknown name", parser: named, spec: "nosuch", err: `unknown service "nosuch" for tcp at column 1`, col: 1, token: "nosuch"},
	{name: "name on wrong proto", parser: named, spec: "U:ssh", err: `unknown service "ssh" for udp`, col: 3},
	{name: "wildcard matches nothing", parser: named, spec: "22,zz*", err: `no tcp service matches "zz*"`, col: 4},
	{name: "bad name char", parser: named, spec: "h@ttp", err: `invalid character '@' in "h@ttp"`, col: 2},
	{name: "unknown suffix", spec: "443/tpc", err: `unknown protocol "tpc" in "443/tpc"`, col: 5, token: "tpc"},
	{name: "unknown proto first", spec: "tpc/443", err: `unknown protocol "tpc"`, col: 1, token: "tpc"},
	{name: "missing proto", spec: "443/", err: "missing protocol after", col: 1},
	{name: "missing proto before", spec: "/80", err: "missing protocol before", col: 1},
	{name: "missing port before suffix", spec: "/tcp", err: `missing port before "/tcp"`, col: 1},
	{name: "missing port after proto", spec: "tcp/", err: `missing port after "tcp/"`, col: 1},
	{name: "dccp suffix", spec: "80/dccp", err: "protocol dccp has no port sets", col: 4, token: "dccp"},
	{name: "dccp default", parser: Parser{Default: DCCP}, spec: "80", err: "default protocol dccp has no port sets", col: 1},
	{name: "only exclusions", spec: "!80", err: "only exclusions", col: 1},
	{name: "everything excluded", spec: "80,!80", err: `no ports left after exclusions at column 1 in "80,!80"`, col: 1},
}

func TestParse(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			s, err := c.parser.Parse(c.spec)
			if c.err == "" {
				if err != nil {
					t.Fatalf("Parse(%q) error: %v; want %q", c.spec, err, c.want)
				}
				if got := s.String(); got != c.want {
					t.Errorf("Parse(%q) = %q; want %q", c.spec, got, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q) = %q; want error %q", c.spec, s.String(), c.err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v; want *SyntaxError", c.spec, err, err)
			}
			if !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q) error = %q; want it to contain %q", c.spec, err, c.err)
			}
			if se.Col != c.col {
				t.Errorf("Parse(%q) error column = %d; want %d (%v)", c.spec, se.Col, c.col, err)
			}
			if c.token != "" && se.Token != c.token {
				t.Errorf("Parse(%q) error token = %q; want %q", c.spec, se.Token, c.token)
			}
		})
	}
}

func TestParseResolverErrorUnwraps(t *testing.T) {
	_, err := named.Parse("nosuch")
	if !errors.Is(err, errUnknown) {
		t.Errorf("Parse(nosuch) error %v does not wrap the resolver's error", err)
	}
}

// TestParseWholeRange checks the counts of the forms that cover everything.
func TestParseWholeRange(t *testing.T) {
	for spec, want := range map[string]int{"-": 65535, "0-": 65536, "T:-,U:-,S:-": 3 * 65535, "0-65535,!1-65535": 1} {
		s, err := Parse(spec)
		if err != nil || s.Len() != want {
			t.Errorf("Parse(%q).Len() = %d, %v; want %d", spec, s.Len(), err, want)
		}
	}
}

// FuzzParse checks that no input panics, that errors point inside the spec,
// and that every spec that parses round-trips through its canonical form.
func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add(c.spec)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := named.Parse(spec)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v; want *SyntaxError", spec, err, err)
			}
			if se.Col < 1 || se.Col > utf8.RuneCountInString(spec)+1 {
				t.Fatalf("Parse(%q) error column %d outside the spec", spec, se.Col)
			}
			return
		}
		if s.Len() == 0 {
			t.Fatalf("Parse(%q) gave an empty set without an error", spec)
		}
		canon := s.String()
		back, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", spec, canon, err)
		}
		if !back.Equal(s) {
			t.Fatalf("Parse(%q) = %q, which parses to %q", spec, canon, back.String())
		}
		if back.String() != canon {
			t.Fatalf("canonical form %q is not stable: %q", canon, back.String())
		}
	})
}

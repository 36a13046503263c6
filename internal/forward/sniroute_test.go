package forward

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSNIRouteChoosesByName(t *testing.T) {
	r := Rule{Listen: "127.0.0.1:0", Targets: []string{"198.18.0.9:443"}, SNI: []SNIRoute{
		{Pattern: "a.example", Targets: []string{"198.18.0.1:443"}},
		{Pattern: "*.example", Targets: []string{"198.18.0.2:443"}},
		{Pattern: "*.B.Example", Targets: []string{"198.18.0.3:443"}},
		{Pattern: "x.b.example", Targets: []string{"198.18.0.4:443"}},
	}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	sr := newSNIRouter(context.Background(), &r, "t", &ruleStats{}, slog.New(slog.DiscardHandler))
	for _, tc := range []struct{ name, want string }{
		{"a.example", "198.18.0.1:443"},
		{"z.example", "198.18.0.2:443"},
		{"b.example", "198.18.0.2:443"},
		{"y.b.example", "198.18.0.3:443"},      // the longer wildcard wins
		{"deep.y.b.example", "198.18.0.3:443"}, // a wildcard takes any depth
		{"x.b.example", "198.18.0.4:443"},      // an exact name wins over wildcards
		{"example", ""},
		{"a.example.org", ""},
		{"other.test", ""},
		{"", ""},
	} {
		got := ""
		if p := sr.route(tc.name); p != nil {
			got = p.targets[0].addr
		}
		if got != tc.want {
			t.Errorf("route(%q) = %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestSNIRulesValidate(t *testing.T) {
	sni := func(pairs ...string) []SNIRoute {
		var out []SNIRoute
		for i := 0; i+1 < len(pairs); i += 2 {
			out = append(out, SNIRoute{Pattern: pairs[i], Targets: splitTargets(pairs[i+1])})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		rule Rule
		err  string // "" for valid
	}{
		{"routes and a default", Rule{Targets: []string{"198.18.0.9:443"}, SNI: sni("a.example", "198.18.0.1:443", "*.example", "198.18.0.2:443,198.18.0.3:443")}, ""},
		{"routes without a default", Rule{SNI: sni("a.example", "198.18.0.1:443")}, ""},
		{"neither", Rule{}, "targets: at least one is needed"},
		{"udp", Rule{Proto: UDP, Targets: []string{"198.18.0.9:53"}, SNI: sni("a.example", "198.18.0.1:53")}, "sni: only for tcp rules"},
		{"empty pattern", Rule{SNI: sni("", "198.18.0.1:443")}, `sni: pattern "": want a host name, or "*." and a name`},
		{"star alone", Rule{SNI: sni("*", "198.18.0.1:443")}, `sni: pattern "*": a wildcard is only "*." at the start`},
		{"star dot alone", Rule{SNI: sni("*.", "198.18.0.1:443")}, `sni: pattern "*.": want a host name, or "*." and a name`},
		{"inner star", Rule{SNI: sni("a.*.example", "198.18.0.1:443")}, `sni: pattern "a.*.example": a wildcard is only "*." at the start`},
		{"star in a label", Rule{SNI: sni("*foo.example", "198.18.0.1:443")}, `sni: pattern "*foo.example": a wildcard is only`},
		{"empty label", Rule{SNI: sni("a..example", "198.18.0.1:443")}, `sni: pattern "a..example": empty label`},
		{"trailing dot", Rule{SNI: sni("a.example.", "198.18.0.1:443")}, `sni: pattern "a.example.": empty label`},
		{"space", Rule{SNI: sni("a example", "198.18.0.1:443")}, `sni: pattern "a example": byte 0x20 is not allowed in a host name`},
		{"twice", Rule{SNI: sni("A.example", "198.18.0.1:443", "a.example", "198.18.0.2:443")}, `sni: pattern "a.example": same as "A.example"`},
		{"no targets", Rule{SNI: []SNIRoute{{Pattern: "a.example"}}}, `sni: pattern "a.example": no targets`},
		{"bad target", Rule{SNI: sni("a.example", "nohost")}, `sni: pattern "a.example": "nohost": want host:port`},
		{"target without host", Rule{SNI: sni("a.example", ":443")}, `sni: pattern "a.example": ":443" has no host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rule.Listen = ":443"
			err := tc.rule.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Validate() = %v; want nil", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Validate() = %v; want %q", err, tc.err)
			}
		})
	}
}

func TestSNIConfig(t *testing.T) {
	rules, err := ParseConfig("f.yaml", []byte(`
rules:
  - name: tls
    listen: ":443"
    targets: 198.18.0.9:443
    sni:
      a.example: 198.18.0.1:443
      "*.example": [198.18.0.2:443, 198.18.0.3:443]
      b.example: 198.18.0.4:443, 198.18.0.5:443
  - name: strict
    listen: ":8443"
    sni: {a.example: 198.18.0.1:443}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []SNIRoute{
		{Pattern: "a.example", Targets: []string{"198.18.0.1:443"}},
		{Pattern: "*.example", Targets: []string{"198.18.0.2:443", "198.18.0.3:443"}},
		{Pattern: "b.example", Targets: []string{"198.18.0.4:443", "198.18.0.5:443"}},
	}
	if diff := cmp.Diff(want, rules[0].SNI); diff != "" {
		t.Errorf("sni routes (-want +got):\n%s", diff)
	}
	if len(rules[1].Targets) != 0 || len(rules[1].SNI) != 1 {
		t.Errorf("rule without a default = %+v", rules[1])
	}

	for _, tc := range []struct{ yaml, err string }{
		{"sni: [a.example]", `f.yaml:5:10: rule x: sni: want a mapping of server name pattern to targets`},
		{"sni: {a.example: {x: 1}}", `f.yaml:5:22: rule x: sni: a.example: want a value or a list, not a mapping`},
		{"sni: {a..example: 198.18.0.1:443}", `f.yaml:2:5: rule x: sni: pattern "a..example": empty label`},
		{"sni: {a.example: nohost}", `f.yaml:2:5: rule x: sni: pattern "a.example": "nohost": want host:port`},
		{"sni: {a.example: 198.18.0.1:443, A.EXAMPLE: 198.18.0.2:443}", `f.yaml:2:5: rule x: sni: pattern "A.EXAMPLE": same as "a.example"`},
		{"proto: udp\n    sni: {a.example: 198.18.0.1:443}", `f.yaml:2:5: rule x: sni: only for tcp rules`},
	} {
		_, err := ParseConfig("f.yaml", []byte("rules:\n  - name: x\n    listen: \":443\"\n    targets: 198.18.0.9:443\n    "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseConfig(%q) = %v; want %q", tc.yaml, err, tc.err)
		}
	}
}

var sniFlagCases = []struct {
	in   string
	want SNIRoute
	err  string
}{
	{in: "a.example=198.18.0.1:443", want: SNIRoute{Pattern: "a.example", Targets: []string{"198.18.0.1:443"}}},
	{in: "*.example=198.18.0.1:443, 198.18.0.2:443", want: SNIRoute{Pattern: "*.example", Targets: []string{"198.18.0.1:443", "198.18.0.2:443"}}},
	{in: "a.example", err: `"a.example": want PATTERN=TARGET[,TARGET...]`},
	{in: "=198.18.0.1:443", err: `"=198.18.0.1:443": offset 0: no pattern before =`},
	{in: "a.example=", err: `"a.example=": offset 10: no target after =`},
	{in: "", err: "want PATTERN=TARGET"},
	{in: "a.example=198.18.0.1:443,,198.18.0.2:443", err: `offset 25: empty target`},
	{in: "a.example= ", err: `offset 10: empty target`},
}

func TestParseSNIRoute(t *testing.T) {
	for _, tc := range sniFlagCases {
		got, err := ParseSNIRoute(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSNIRoute(%q) = %v; want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSNIRoute(%q) = %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseSNIRoute(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func FuzzParseSNIRoute(f *testing.F) {
	for _, tc := range sniFlagCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSNIRoute(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want PATTERN=") && !strings.Contains(err.Error(), "offset ") {
				t.Fatalf("ParseSNIRoute(%q) error %q names neither the form nor an offset", s, err)
			}
			return
		}
		if r.Pattern == "" || len(r.Targets) == 0 {
			t.Fatalf("ParseSNIRoute(%q) = %+v", s, r)
		}
		// What parses prints back to the same route.
		again, err := ParseSNIRoute(r.Pattern + "=" + strings.Join(r.Targets, ","))
		if err != nil || !cmp.Equal(again, r) {
			t.Fatalf("ParseSNIRoute(%q) = %+v; printed and parsed again: %+v, %v", s, r, again, err)
		}
	})
}

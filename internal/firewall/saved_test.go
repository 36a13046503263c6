package firewall

import (
	"strings"
	"testing"
	"time"
)

func savedCases(t testing.TB) [][]byte {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rs := Ruleset{Policy: PolicyDrop, PolicyLog: true, Rules: []Rule{
		mustRuleNoT(RuleSpec{Action: "limit", Ports: "22/tcp"}),
		mustRuleNoT(RuleSpec{Action: "allow", Ports: "8080/tcp", Expires: exp.Format(time.RFC3339)}),
	}}
	b, err := MarshalSaved(&Saved{Version: 1, SavedAt: exp, Ruleset: rs})
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{b, []byte(`{"version":1,"ruleset":{"Policy":"accept","Rules":[]}}`)}
}

func TestParseSaved(t *testing.T) {
	good := savedCases(t)
	s, err := ParseSaved("f.json", good[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Ruleset.Rules) != 2 || !s.Ruleset.PolicyLog || s.Ruleset.Rules[1].Expires.Year() != 2030 {
		t.Errorf("ParseSaved: %+v", s.Ruleset)
	}
	for _, tt := range []struct{ in, want string }{
		{`{"version":1,`, "f.json: at byte 13: "},
		{`{"version":"x"}`, "f.json: at byte 14: "},
		{`{"version":2}`, "f.json: version 2: only version 1 is known"},
		{`{"version":1,"ruleset":{"Policy":"accept","PolicyLog":true}}`, "f.json: policy accept drops nothing to log"},
	} {
		if _, err := ParseSaved("f.json", []byte(tt.in)); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseSaved(%q) = %v; want %q...", tt.in, err, tt.want)
		}
	}
}

func FuzzParseSaved(f *testing.F) {
	for _, c := range savedCases(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseSaved("f.json", b) // must not panic
	})
}

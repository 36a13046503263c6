package firewall

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUpsertFindDelete(t *testing.T) {
	r := func(s RuleSpec) Rule { return mustRule(t, s) }
	rs := &Ruleset{}
	steps := []struct {
		rule    Rule
		pos     int
		n       int
		changed bool
	}{
		{r(RuleSpec{Action: "allow", Ports: "22/tcp"}), 0, 1, true},
		{r(RuleSpec{Action: "deny", Ports: "23/tcp"}), 0, 2, true},
		{r(RuleSpec{Action: "allow", Ports: "22/tcp"}), 0, 1, false},
		{r(RuleSpec{Action: "allow", Ports: "22/tcp", Comment: "ssh"}), 0, 1, true},
		{r(RuleSpec{Action: "allow", Ports: "80/tcp"}), 1, 1, true},
		{r(RuleSpec{Action: "limit", Ports: "22/tcp"}), 0, 4, true},
		{r(RuleSpec{Action: "limit", Ports: "22/tcp", Rate: "10/minute"}), 0, 4, true}, // the rate changes in place
		{r(RuleSpec{Action: "allow", Ports: "80/tcp", For: "1h"}), 9, 1, true},
	}
	for i, s := range steps {
		n, changed := rs.Upsert(s.rule, s.pos)
		if n != s.n || changed != s.changed {
			t.Errorf("step %d: Upsert(%s, %d) = %d, %v; want %d, %v", i+1, &s.rule, s.pos, n, changed, s.n, s.changed)
		}
	}
	var got []string
	for _, r := range rs.Rules {
		got = append(got, r.String())
	}
	want := []string{"allow 80/tcp", "allow 22/tcp", "deny 23/tcp", "limit 22/tcp rate 10/minute"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if rs.Rules[0].Expires.IsZero() || rs.Rules[1].Comment != "ssh" {
		t.Errorf("in-place updates lost: %+v", rs.Rules[:2])
	}
	lim := r(RuleSpec{Action: "limit", Ports: "22/tcp"})
	if n := rs.Find(&lim); n != 4 {
		t.Errorf("Find(limit 22/tcp at the default rate) = %d; want 4 (the rate does not pick)", n)
	}
	if _, err := rs.Delete(2, 9); err == nil {
		t.Error("Delete(2, 9): no error for rule 9")
	}
	gone, err := rs.Delete(3, 1)
	if err != nil || len(gone) != 2 || gone[0].String() != "allow 80/tcp" || gone[1].String() != "deny 23/tcp" || len(rs.Rules) != 2 {
		t.Errorf("Delete(3, 1) = %v, %v; left %d rules", gone, err, len(rs.Rules))
	}
}

func TestRuleJSON(t *testing.T) {
	for _, rs := range roundTripCases(t) {
		for _, r := range rs.Rules {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back Rule
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if diff := cmp.Diff(r, back, ruleCmp); diff != "" {
				t.Errorf("JSON round trip of %s (-want +got):\n%s", b, diff)
			}
		}
	}
	var r Rule
	if err := json.Unmarshal([]byte(`{"action":"limit","ports":"any"}`), &r); err == nil {
		t.Error("Unmarshal of a limit without ports: no error")
	}
}

package firewall

import (
	"errors"
	"testing"
	"time"
)

func TestCheckSafety(t *testing.T) {
	tests := []struct {
		spec RuleSpec
		bad  bool
	}{
		{RuleSpec{Action: "deny", Ports: "any"}, true},
		{RuleSpec{Action: "reject", Ports: ""}, true},
		{RuleSpec{Action: "deny", Ports: "any", From: "0.0.0.0/0"}, true},
		{RuleSpec{Action: "deny", Ports: "any", From: "::/0,198.18.0.0/15"}, true},
		{RuleSpec{Action: "deny", Ports: "any", To: "0.0.0.0/0,::/0"}, true},
		{RuleSpec{Action: "deny", Ports: "any", From: "198.18.0.0/15"}, false},
		{RuleSpec{Action: "deny", Ports: "any", Iface: "eth0"}, false},
		{RuleSpec{Action: "deny", Ports: "1-65535/tcp"}, false},
		{RuleSpec{Action: "allow", Ports: "any"}, false},
		{RuleSpec{Action: "log", Ports: "any"}, false},
	}
	for _, tt := range tests {
		r, err := tt.spec.Rule(nil, time.Now())
		if err != nil {
			t.Fatalf("%+v: %v", tt.spec, err)
		}
		err = r.CheckSafety()
		if got := errors.Is(err, ErrAllTraffic); got != tt.bad {
			t.Errorf("CheckSafety(%s) = %v; want refused %v", r.String(), err, tt.bad)
		}
		rs := Ruleset{Rules: []Rule{mustRuleNoT(RuleSpec{Action: "allow", Ports: "22/tcp"}), r}}
		var se *SafetyError
		if err := rs.CheckSafety(); errors.As(err, &se) != tt.bad || (tt.bad && se.Number != 2) {
			t.Errorf("Ruleset.CheckSafety with %s second = %v; want refused %v as rule 2", r.String(), err, tt.bad)
		}
	}
}

func mustRuleNoT(s RuleSpec) Rule {
	r, err := s.Rule(nil, time.Now())
	if err != nil {
		panic(err)
	}
	return r
}

package firewall

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const goodProfile = `# a profile
version: 1
policy: drop
rules:
  - allow: 22/tcp
    comment: ssh
  - allow: ssh
    from: [198.18.0.0/15, fd00::/8]
  - limit: 22/tcp
    rate: 6/30s
  - allow: 8080/tcp
    for: 2h
  - log: 23
    group: 5
  - deny: any
    from: 198.18.0.66
    iface: eth0
  - reject: "T:25,U:53"
    to: 198.18.0.1
    expires: 2030-02-01T00:00:00Z
  - allow:
    from: 198.18.0.7
`

func TestParseProfile(t *testing.T) {
	got, err := ParseProfile("good.yaml", []byte(goodProfile), names{}, t0)
	if err != nil {
		t.Fatalf("ParseProfile: %v", err)
	}
	want := &Ruleset{Policy: PolicyDrop, Rules: []Rule{
		{Action: Allow, Ports: set("T:22"), Comment: "ssh"},
		{Action: Allow, Ports: set("T:22"), From: prefixes("198.18.0.0/15", "fd00::/8")}, // ssh is used over TCP
		{Action: Limit, Ports: set("T:22"), Rate: Rate{6, 30 * time.Second}},
		{Action: Allow, Ports: set("T:8080"), Expires: t0.Add(2 * time.Hour)},
		{Action: Log, Ports: set("T:23,U:23"), Group: 5},
		{Action: Deny, From: prefixes("198.18.0.66/32"), Iface: "eth0"},
		{Action: Reject, Ports: set("T:25,U:53"), To: prefixes("198.18.0.1/32"), Expires: time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)},
		{Action: Allow, From: prefixes("198.18.0.7/32")},
	}}
	if diff := cmp.Diff(want, got, ruleCmp); diff != "" {
		t.Errorf("ParseProfile (-want +got):\n%s", diff)
	}
	// What MarshalProfile writes reads back the same.
	b, err := MarshalProfile(got, "exported")
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseProfile("again.yaml", b, nil, t0)
	if err != nil {
		t.Fatalf("ParseProfile(MarshalProfile(...)): %v\n%s", err, b)
	}
	if diff := cmp.Diff(got, again, ruleCmp); diff != "" {
		t.Errorf("profile round trip (-want +got):\n%s\n%s", diff, b)
	}
	if !strings.HasPrefix(string(b), "# exported\n") {
		t.Errorf("MarshalProfile: header missing:\n%s", b)
	}
}

// badProfiles are profiles and the exact error each gives, with its line
// and column.
var badProfiles = []struct {
	name, yaml, err string
}{
	{"empty", "", "p.yaml:1: empty file: want at least a policy or rules"},
	{"syntax", "rules:\n  - allow: 22\n   deny: 23\n", "p.yaml:1: did not find expected '-' indicator"},
	{"not a mapping", "- allow: 22\n", "p.yaml:1:1: want a mapping with policy and rules, not a list"},
	{"unknown top key", "policy: drop\nrule:\n  - allow: 22\n", `p.yaml:2:1: unknown key "rule" (did you mean "rules"?)`},
	{"bad policy", "policy: maybe\n", `p.yaml:1:9: policy: unknown policy "maybe" (want accept, drop or reject)`},
	{"twice", "policy: drop\npolicy: accept\n", `p.yaml:2:1: policy: given twice (first on line 1)`},
	{"version", "version: 2\n", `p.yaml:1:10: version: "2": only version 1 is known`},
	{"rules not list", "rules: allow\n", `p.yaml:1:8: rules: want a list of rules, not the value "allow"`},
	{"rule not mapping", "rules:\n  - allow 22\n", `p.yaml:2:5: rule 1: want a mapping like {allow: 22/tcp}, not the value "allow 22"`},
	{"no action", "rules:\n  - from: 198.18.0.1\n", "p.yaml:2:5: rule 1: no action (want one of allow, deny, reject, limit, log: PORTS)"},
	{"two actions", "rules:\n  - allow: 22\n    deny: 23\n", "p.yaml:3:5: rule 1: two actions, allow and deny: one rule has one action"},
	{"unknown key", "rules:\n  - allow: 22\n    coment: ssh\n", `p.yaml:3:5: rule 1: unknown key "coment" (did you mean "comment"?)`},
	{"bad port", "rules:\n  - allow: 22\n  - deny: 70000/tcp\n", `p.yaml:3:11: rule 2 (deny): ports: port 70000 out of range 0-65535 at column 1 in "70000/tcp"`},
	{"bad from in list", "rules:\n  - allow: 22\n    from: [198.18.0.1, 198.18.0.0/40]\n", `p.yaml:3:11: rule 1 (allow): from: "198.18.0.0/40" is not an address or prefix at column 12 in "198.18.0.1,198.18.0.0/40"`},
	{"bad rate", "rules:\n  - limit: 22/tcp\n    rate: fast\n", `p.yaml:3:11: rule 1 (limit): rate: rate "fast": want COUNT/PERIOD, like 6/30s or 10/minute`},
	{"rate on allow", "rules:\n  - allow: 22/tcp\n    rate: 6/30s\n", `p.yaml:3:11: rule 1 (allow): rate: only limit rules take a rate, not allow`},
	{"list for iface", "rules:\n  - allow: 22/tcp\n    iface: [eth0, eth1]\n", `p.yaml:3:12: rule 1: iface: want one value, not a list`},
	{"nested", "rules:\n  - allow: {port: 22}\n", `p.yaml:2:12: rule 1: allow: want a value, not a mapping`},
	{"bad for", "rules:\n  - allow: 22\n    for: ever\n", `p.yaml:3:10: rule 1 (allow): for: "ever" is not a duration like 90s, 2h or 3d`},
	{"unknown key, nothing close", "rules:\n  - allow: 22\n    colour: red\n", `p.yaml:3:5: rule 1: unknown key "colour" (want one of allow, deny, reject, limit, log, from, to, iface, direction, translated, rate, prefix6, group, for, expires, comment)`},
	{"duplicate key", "rules:\n  - allow: 22\n    from: 198.18.0.1\n    from: 198.18.0.2\n", `p.yaml:4:5: rule 1: from: given twice (first on line 3)`},
	{"families", "rules:\n  - allow: 22\n    from: 198.18.0.1\n    to: fd00::1\n", `p.yaml:4:9: rule 1 (allow): to: from and to have no address family in common`},
}

func TestParseProfileErrors(t *testing.T) {
	for _, tt := range badProfiles {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProfile("p.yaml", []byte(tt.yaml), names{}, t0)
			if err == nil {
				t.Fatalf("ParseProfile(%q) = nil error; want %q", tt.yaml, tt.err)
			}
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Errorf("ParseProfile(%q) error %T is not a *ProfileError", tt.yaml, err)
			}
			if err.Error() != tt.err {
				t.Errorf("ParseProfile(%q) =\n  %v\nwant\n  %v", tt.yaml, err, tt.err)
			}
		})
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add(goodProfile)
	for _, tt := range badProfiles {
		f.Add(tt.yaml)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseProfile("f.yaml", []byte(s), names{}, t0)
		if err != nil {
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ProfileError", err)
			}
			return
		}
		if err := rs.Validate(); err != nil {
			t.Fatalf("parsed profile does not validate: %v", err)
		}
		b, err := MarshalProfile(rs, "")
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseProfile("again.yaml", b, nil, t0)
		if err != nil {
			t.Fatalf("re-reading what MarshalProfile wrote: %v\n%s", err, b)
		}
		if !rs.Equal(again) {
			t.Fatalf("round trip changed the ruleset:\n%s", b)
		}
		if _, err := rs.NFT(); err != nil {
			t.Fatalf("NFT: %v", err)
		}
	})
}

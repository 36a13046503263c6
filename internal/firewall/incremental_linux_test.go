package firewall

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

// handles returns nft's handle of each rule line of portolan's chain, by
// the line without its handle.
func handles(t *testing.T, l *lab) map[string]string {
	t.Helper()
	out := nft(t, l.srv, "-a", "list", "chain", "inet", TableName, ChainName)
	re := regexp.MustCompile(`^\s*(.*\S) # handle (\d+)$`)
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if s := re.FindStringSubmatch(line); s != nil && !strings.HasPrefix(s[1], "chain ") {
			m[s[1]] = s[2]
		}
	}
	return m
}

// TestApplyIsIncremental changes one rule in the middle of a ruleset: the
// kernel rules of the others stay (same handles, so limit meters and
// counters stay too), the chain is what a full write gives, and packets
// follow the new rules.
func TestApplyIsIncremental(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	for _, p := range []int{22, 80, 443, 8080} {
		serveTCP(t, l.srv, p)
	}
	a := Ruleset{Policy: PolicyDrop, Rules: []Rule{
		mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "80"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "443/tcp", For: "1h"}),
		mustRule(t, RuleSpec{Action: "reject", Ports: "8080/tcp", From: "198.18.0.0/15"}),
	}}
	if err := l.fw.Apply(ctx, &a); err != nil {
		t.Fatal(err)
	}
	before := handles(t, l)
	b := *a.Clone()
	b.Rules[1] = mustRule(t, RuleSpec{Action: "deny", Ports: "80"})
	b.Rules = append(b.Rules, mustRule(t, RuleSpec{Action: "allow", Ports: "8080/tcp"}))
	tab, err := l.fw.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.fw.ApplyTo(ctx, tab, &b); err != nil {
		t.Fatal(err)
	}
	got, err := l.fw.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got.Ruleset, ruleCmp); diff != "" {
		t.Errorf("Read after an incremental apply (-want +got):\n%s", diff)
	}
	want, _ := got.Ruleset.NFT()
	if diff := cmp.Diff(want, chainLines(t, l.srv)); diff != "" {
		t.Errorf("nft list chain differs from Ruleset.NFT (-ours +nft):\n%s", diff)
	}
	after := handles(t, l)
	kept := 0
	for line, h := range before {
		if strings.Contains(line, "th dport 80 ") || strings.Contains(line, "dport 80 accept") {
			if after[line] != "" {
				t.Errorf("the replaced rule %q is still there", line)
			}
			continue
		}
		if after[line] != h {
			t.Errorf("rule %q: handle %s -> %q; want it kept", line, h, after[line])
		}
		kept++
	}
	if kept < 8 {
		t.Errorf("only %d kernel rules kept: %v", kept, before)
	}
	l.runChecks(t, []check{
		{portspec.TCP, false, 22, open}, {portspec.TCP, true, 80, dropped}, {portspec.TCP, false, 443, open},
		{portspec.TCP, false, 8080, refused}, {portspec.TCP, true, 8080, open},
	})
	// Applying it again changes nothing: every handle stays.
	tab, _ = l.fw.Read(ctx)
	if err := l.fw.ApplyTo(ctx, tab, &b); err != nil {
		t.Fatal(err)
	}
	if again := handles(t, l); !cmp.Equal(again, after) {
		t.Errorf("re-applying the same rules changed the chain:\n%s", cmp.Diff(after, again))
	}
}

// TestApplyToStaleTable: ApplyTo given a table read before another change
// still writes the wanted rules (it reads again when the kernel refuses).
func TestApplyToStaleTable(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a := Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"}), mustRule(t, RuleSpec{Action: "deny", Ports: "23/tcp"})}}
	if err := l.fw.Apply(ctx, &a); err != nil {
		t.Fatal(err)
	}
	stale, err := l.fw.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "reject", Ports: "25/tcp"})}}
	if err := l.fw.Apply(ctx, &other); err != nil {
		t.Fatal(err)
	}
	b := Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"}), mustRule(t, RuleSpec{Action: "allow", Ports: "80/tcp"})}}
	if err := l.fw.ApplyTo(ctx, stale, &b); err != nil {
		t.Fatal(err)
	}
	got, err := l.fw.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got.Ruleset, ruleCmp); diff != "" {
		t.Errorf("after ApplyTo on a stale table (-want +got):\n%s", diff)
	}
}

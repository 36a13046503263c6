package firewall

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

// startGuard runs State.Guard for p in the background, as the guard
// process would, and returns its result when it ends.
func startGuard(t *testing.T, st State, fw *Firewall, p *Pending) <-chan error {
	t.Helper()
	if err := st.WritePending(p); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		rolled, err := st.Guard(context.Background(), fw, p.Token, 20*time.Millisecond)
		if err == nil && !rolled {
			err = errNotRolledBack
		}
		done <- err
	}()
	return done
}

var errNotRolledBack = errors.New("guard exited without rolling back")

func waitGuard(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("guard still running after 60s")
	}
	return nil
}

func TestRollbackRestoresIdenticalRuleset(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	st := State{Dir: t.TempDir(), ID: "test"}
	serveTCP(t, l.srv, 22)
	serveTCP(t, l.srv, 8080)
	before := Ruleset{Policy: PolicyDrop, Rules: []Rule{
		mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp", Comment: "ssh"}),
		mustRule(t, RuleSpec{Action: "limit", Ports: "2222/tcp"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "80,443", From: "198.18.0.0/15,fd00::/8"}),
	}}
	if err := l.fw.Apply(ctx, &before); err != nil {
		t.Fatal(err)
	}
	wantJSON := rulesetJSON(t, l.srv)
	tab, err := l.fw.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pending{Token: NewToken(), Applied: time.Now(), Deadline: time.Now().Add(2 * time.Second), Snapshot: tab.Snapshot()}
	done := startGuard(t, st, l.fw, p)

	// The new rules lock port 22 out and open 8080.
	after := Ruleset{Policy: PolicyReject, Rules: []Rule{
		mustRule(t, RuleSpec{Action: "limit", Ports: "2222/tcp", Rate: "10/minute"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "8080/tcp"}),
	}}
	if err := l.fw.Apply(ctx, &after); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 22); got != refused {
		t.Fatalf("22 after apply: %s; want refused", got)
	}
	if err := waitGuard(t, done); err != nil {
		t.Fatal(err)
	}
	if got := rulesetJSON(t, l.srv); got != wantJSON {
		t.Errorf("after rollback the ruleset differs:\n%s", cmp.Diff(wantJSON, got))
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 22); got != open {
		t.Errorf("22 after rollback: %s; want open", got)
	}
	if _, err := st.ReadPending(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending file after rollback: %v; want none", err)
	}
	var rb *RolledBackError
	if _, err := st.Confirm(ctx); !errors.As(err, &rb) {
		t.Errorf("Confirm after rollback = %v; want a RolledBackError", err)
	}
}

func TestConfirmKeepsRuleset(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	st := State{Dir: t.TempDir(), ID: "test"}
	tab, err := l.fw.Read(ctx) // no table yet
	if err != nil {
		t.Fatal(err)
	}
	p := &Pending{Token: NewToken(), Deadline: time.Now().Add(3 * time.Second), Snapshot: tab.Snapshot()}
	done := startGuard(t, st, l.fw, p)
	rs := Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "deny", Ports: "23/tcp"})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	want := rulesetJSON(t, l.srv)
	got, err := st.Confirm(ctx)
	if err != nil || got.Token != p.Token {
		t.Fatalf("Confirm = %v, %v", got, err)
	}
	if err := waitGuard(t, done); !errors.Is(err, errNotRolledBack) {
		t.Fatalf("guard after confirm: %v; want it to exit without rolling back", err)
	}
	// Past the deadline, nothing changed.
	time.Sleep(time.Until(p.Deadline) + 200*time.Millisecond)
	if after := rulesetJSON(t, l.srv); after != want {
		t.Errorf("confirmed ruleset changed:\n%s", cmp.Diff(want, after))
	}
	if _, err := st.Confirm(ctx); !errors.Is(err, ErrNothingPending) {
		t.Errorf("second Confirm = %v; want ErrNothingPending", err)
	}
}

// TestGuardStoppedRollsBack: a guard told to stop (SIGTERM, shutdown)
// restores at once rather than leave an unconfirmed change behind.
func TestGuardStoppedRollsBack(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	st := State{Dir: t.TempDir(), ID: "test"}
	tab, _ := l.fw.Read(ctx)
	p := &Pending{Token: NewToken(), Deadline: time.Now().Add(time.Hour), Snapshot: tab.Snapshot()}
	if err := st.WritePending(p); err != nil {
		t.Fatal(err)
	}
	rs := Ruleset{Policy: PolicyDrop}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		rolled, err := st.Guard(gctx, l.fw, p.Token, 20*time.Millisecond)
		if err == nil && !rolled {
			err = errNotRolledBack
		}
		done <- err
	}()
	stop()
	if err := waitGuard(t, done); err != nil {
		t.Fatal(err)
	}
	if tab, _ := l.fw.Read(ctx); tab.Exists {
		t.Errorf("table still there after the stopped guard rolled back: %+v", tab.Ruleset)
	}
}

func TestRollbackToNoTable(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	st := State{Dir: t.TempDir(), ID: "test"}
	empty := rulesetJSON(t, l.srv)
	tab, _ := l.fw.Read(ctx)
	done := startGuard(t, st, l.fw, &Pending{Token: NewToken(), Deadline: time.Now().Add(time.Second), Snapshot: tab.Snapshot()})
	rs := Ruleset{Policy: PolicyDrop}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	if err := waitGuard(t, done); err != nil {
		t.Fatal(err)
	}
	if got := rulesetJSON(t, l.srv); got != empty {
		t.Errorf("after rolling back to no table:\n%s", got)
	}
}

// otherTables is a ruleset other tools might have in a namespace: a nat
// table publishing ports (one directly, one through a jump, as Docker's
// chains do) and a filter table of its own.
const otherTables = `
table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat to 198.18.0.1:80
		fib daddr type local jump DOCKER
	}
	chain DOCKER {
		iifname != "docker0" udp dport 9000-9010 dnat to 198.18.0.1:9000
		tcp dport 7000 counter return
	}
}
table inet filter {
	chain input {
		type filter hook input priority 10; policy accept;
		tcp dport 9 counter drop
	}
}
`

func loadOtherTables(t *testing.T, l *lab) {
	t.Helper()
	cmd := l.srv.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(otherTables)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

func TestOtherTablesUntouched(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	loadOtherTables(t, l)
	nat := nft(t, l.srv, "-j", "list", "table", "ip", "nat")
	filter := nft(t, l.srv, "-j", "list", "table", "inet", "filter")
	for _, rs := range roundTripCases(t) {
		if err := l.fw.Apply(ctx, &rs); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.fw.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, l.srv, "-j", "list", "table", "ip", "nat"); got != nat {
		t.Errorf("table ip nat changed:\n%s", cmp.Diff(nat, got))
	}
	if got := nft(t, l.srv, "-j", "list", "table", "inet", "filter"); got != filter {
		t.Errorf("table inet filter changed:\n%s", cmp.Diff(filter, got))
	}
}

func TestPublished(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if pubs, err := l.fw.Published(ctx); err != nil || len(pubs) != 0 {
		t.Fatalf("Published with no nat table = %v, %v; want none", pubs, err)
	}
	loadOtherTables(t, l)
	pubs, err := l.fw.Published(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Publication{
		{Table: "ip nat", Chain: "prerouting", Proto: portspec.TCP, Lo: 8080, Hi: 8080, To: "198.18.0.1:80"},
		{Table: "ip nat", Chain: "DOCKER", Proto: portspec.UDP, Lo: 9000, Hi: 9010, To: "198.18.0.1:9000"},
	}
	if diff := cmp.Diff(want, pubs); diff != "" {
		t.Errorf("Published (-want +got):\n%s", diff)
	}
	rs := &Ruleset{Rules: []Rule{
		mustRule(t, RuleSpec{Action: "deny", Ports: "8080/tcp"}),
		mustRule(t, RuleSpec{Action: "deny", Ports: "8080/udp"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "9005"}),
		mustRule(t, RuleSpec{Action: "deny", Ports: "any", From: "198.18.0.9"}),
	}}
	got := PublishedWarnings(rs, pubs)
	if len(got) != 2 || !strings.HasPrefix(got[0], "rule 1 (deny 8080/tcp): 8080/tcp is forwarded by DNAT in table ip nat chain prerouting to 198.18.0.1:80") ||
		!strings.HasPrefix(got[1], "rule 3 (allow 9005): 9000-9010/udp is forwarded by DNAT in table ip nat chain DOCKER") {
		t.Errorf("PublishedWarnings = %q", got)
	}
}

func TestNetnsAndLock(t *testing.T) {
	l := newLab(t)
	a, err := OpenNetns(l.srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenNetns(l.srv.Netns()) // by name under /run/netns
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	self, err := OpenNetns("")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if a.ID != b.ID || a.ID == self.ID {
		t.Errorf("namespace ids: path %s, name %s, self %s; want the first two equal and the third different", a.ID, b.ID, self.ID)
	}
	if _, err := OpenNetns("/proc/self/ns/mnt"); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("OpenNetns(mnt namespace) = %v; want 'not a network namespace'", err)
	}
	if _, err := OpenNetns("pl-no-such-namespace"); err == nil {
		t.Error("OpenNetns of a missing name: no error")
	}
	st := State{Dir: t.TempDir(), ID: a.ID}
	unlock, err := st.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := st.Lock(ctx); err == nil {
		t.Error("second Lock while held: no error")
	}
	unlock()
	u2, err := st.Lock(context.Background())
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	u2()
}

package firewall

import (
	"context"
	"testing"
	"time"

	"portolan/internal/portspec"
)

// TestLogRulesAreRateLimited opens 25 connections to a logged port: the
// log rule logs the first burst of 10 (ufw's 3/minute, burst 10), not all
// 25, and every connection still goes on to the allow.
func TestLogRulesAreRateLimited(t *testing.T) {
	l, c := loggedTelnetLab(t)
	for i := range 25 {
		addr := l.link.A4
		if i%2 == 1 {
			addr = l.link.A6
		}
		if got := probe(t, l.cli, portspec.TCP, addr, 23); got != open {
			t.Fatalf("connection %d: %s; want open", i+1, got)
		}
	}
	// 25 connections take far less than the 20 s a fourth token needs at
	// 3 a minute, so at most the burst (and one refill) is logged.
	if n := countLogged(t, c, "portolan telnet: ", 2*time.Second); n < 1 || n > logBurst+1 {
		t.Errorf("logged %d of 25 new connections; want 1 to %d", n, logBurst+1)
	}
}

// TestPolicyLog logs what the drop policy drops, to an NFLOG group.
func TestPolicyLog(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	serveTCP(t, l.srv, 22)
	rs := Ruleset{Policy: PolicyDrop, PolicyLog: true, PolicyLogGroup: 9, Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	got, err := l.fw.Read(ctx)
	if err != nil || !got.Ruleset.Equal(&rs) || got.Unmanaged != 0 {
		t.Fatalf("Read: %+v, %v; want the policy log back", got, err)
	}
	c := nflog(t, l, 9)
	l.runChecks(t, []check{{portspec.TCP, false, 22, open}, {portspec.TCP, false, 8080, dropped}, {portspec.TCP, true, 8080, dropped}})
	if n := countLogged(t, c, "portolan dropped: ", time.Second); n < 2 {
		t.Errorf("the policy logged %d packets; want the dropped SYNs (2 or more)", n)
	}
}

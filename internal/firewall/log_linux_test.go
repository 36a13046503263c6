package firewall

import (
	"context"
	"errors"
	"testing"
	"time"

	// Aliased: the helper below is named nflog.
	nfl "portolan/internal/nflog"
	"portolan/internal/portspec"
)

// TestLogRuleReachesNFLOG listens on NFLOG group 7 inside srv with the
// reader knockd and watch use (internal/nflog), and checks a log rule
// delivers its packets there with the rule's prefix, while the packets go
// on to the next rule.
func TestLogRuleReachesNFLOG(t *testing.T) {
	l, r := loggedTelnetLab(t)
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got != open {
		t.Fatalf("23/tcp after log: %s; want open (log goes on to the allow)", got)
	}
	if n := countLogged(t, r, "portolan telnet: ", 2*time.Second); n < 1 {
		t.Error("no NFLOG packet with the rule's prefix")
	}
}

// nflog binds NFLOG group inside the lab's srv and returns its reader.
// Every packet comes at once (queue threshold 1); the headers are enough.
func nflog(t *testing.T, l *lab, group uint16) *nfl.Reader {
	t.Helper()
	r, err := nfl.Open(context.Background(), nfl.Config{Group: group, NetNS: l.srv.FD(), CopyRange: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// countLogged counts the NFLOG packets with prefix that arrive on r until
// it has been quiet for quiet.
func countLogged(t *testing.T, r *nfl.Reader, prefix string, quiet time.Duration) int {
	t.Helper()
	n := 0
	pkts := make([]nfl.Packet, 16)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		got, err := r.Read(ctx, pkts)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:got] {
			if p.Prefix == prefix {
				n++
			}
		}
	}
}

// loggedTelnetLab is a lab whose srv serves 23/tcp behind a log rule
// (NFLOG group 7, prefix telnet) and an allow, with the group listened to.
func loggedTelnetLab(t *testing.T) (*lab, *nfl.Reader) {
	t.Helper()
	l := newLab(t)
	serveTCP(t, l.srv, 23)
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{
		mustRule(t, RuleSpec{Action: "log", Ports: "23/tcp", Group: "7", Comment: "telnet"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "23/tcp"}),
	}}
	if err := l.fw.Apply(context.Background(), &rs); err != nil {
		t.Fatal(err)
	}
	return l, nflog(t, l, 7)
}

package firewall

import (
	"context"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
)

// TestDoorOpensForSourceOnly protects 23/tcp with a door, opens it for cli
// for a second, and checks the port is reachable only then, that a later
// Apply of the rules keeps the doors, and that the holder is listed.
func TestDoorOpensForSourceOnly(t *testing.T) {
	l := newLab(t)
	serveTCP(t, l.srv, 23)
	ctx := context.Background()
	tel := DoorPort{Proto: portspec.TCP, Port: 23}
	if err := l.fw.SetDoors(ctx, &Doors{Protect: []DoorPort{tel}, Watch: []DoorPort{{portspec.UDP, 62201}}, Group: 9, Prefix: "knock"}); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got == open {
		t.Fatalf("23/tcp behind a closed door: %s; want not open", got)
	}
	if err := l.fw.OpenDoor(ctx, l.link.B4, []DoorPort{tel}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// Opening again restarts the time instead of failing.
	if err := l.fw.OpenDoor(ctx, l.link.B4, []DoorPort{tel}, 2*time.Second); err != nil {
		t.Fatalf("open an open door: %v", err)
	}
	// The rules of the input chain are rewritten; the doors stay.
	rs := Ruleset{Policy: PolicyAccept, Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "23/tcp"})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got != open {
		t.Fatalf("23/tcp with the door open for cli: %s; want open", got)
	}
	hs, protect, err := l.fw.DoorHolders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Src != l.link.B4 || hs[0].Port != tel || time.Until(hs[0].Expires) > 3*time.Second {
		t.Errorf("DoorHolders = %+v; want cli on 23/tcp for at most 2s", hs)
	}
	if len(protect) != 1 || protect[0] != tel {
		t.Errorf("protected ports %+v; want 23/tcp", protect)
	}
	if out := nft(t, l.srv, "list", "chain", "inet", TableName, DoorChain); !strings.Contains(out, `log prefix "knock" group 9 queue-threshold 1`) {
		t.Errorf("doors chain lacks the watch rule:\n%s", out)
	}
	time.Sleep(2500 * time.Millisecond)
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got == open {
		t.Fatalf("23/tcp after the door timed out: %s; want not open", got)
	}
	if err := l.fw.RemoveDoors(ctx); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got != open {
		t.Fatalf("23/tcp without doors: %s; want open", got)
	}
}

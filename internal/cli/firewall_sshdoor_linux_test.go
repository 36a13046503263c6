package cli

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// TestSSHGuardKnowsDoor: with portolan knockd protecting 22/tcp, the SSH
// guard of the firewall commands says whether the door is open for the
// client, and a refusal says that no knock can help, as the packets show.
func TestSSHGuardKnowsDoor(t *testing.T) {
	srv, cli, lk := netlab.NewPair(t)
	ln, err := srv.Listen("tcp", ":22")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, nil)
	dir := t.TempDir()
	k := startKnockd(t, srv, dir, "--protect", "22/tcp", "--sequence", "7000,8000/udp,9000", "--open-for", "1m")
	k.waitLine(t, `"msg":"door"`)

	sshConn := fmt.Sprintf("SSH_CONNECTION=%s 40000 %s 22", lk.B4, lk.A4)
	fw := func(args ...string) (string, error) {
		t.Helper()
		cmd := srv.Command(context.Background(), portolanExe(t), append([]string{"firewall"}, args...)...)
		cmd.Env = append(portolanEnv(dir), "PORTOLAN_RUNTIME_DIR="+filepath.Join(dir, "run"), sshConn)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	wantIn := func(what, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s:\n%s\nwant %q", what, out, w)
			}
		}
	}

	out, err := fw("allow", "22/tcp")
	if err != nil {
		t.Fatalf("allow 22/tcp: %v\n%s", err, out)
	}
	wantIn("allow 22/tcp behind a closed door", out,
		fmt.Sprintf("warning: SSH guard: a knock door protects 22/tcp and is closed for %s: new SSH connections from it need a knock or SPA request first", lk.B4))

	knock := cli.Command(context.Background(), portolanExe(t), "knock", lk.A4.String(), "7000", "8000/udp", "9000")
	knock.Env = portolanEnv(dir)
	if out, err := knock.CombinedOutput(); err != nil {
		t.Fatalf("knock: %v\n%s", err, out)
	}
	k.waitLine(t, `"msg":"door opened"`, `"src":"`+lk.B4.String()+`"`)

	out, err = fw("default-policy", "drop")
	if err != nil {
		t.Fatalf("default-policy drop: %v\n%s", err, out)
	}
	wantIn("default-policy drop with the door open", out,
		fmt.Sprintf("warning: SSH guard: a knock door protects 22/tcp: it is open for %s until ", lk.B4))
	// As the guard says: the rules and the open door let a new one in.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.DialContext(ctx, "tcp", netip.AddrPortFrom(lk.A4, 22).String())
	if err != nil {
		t.Fatalf("new SSH connection through the open door: %v", err)
	}
	c.Close()

	out, err = fw("delete", "1")
	if err == nil {
		t.Fatalf("delete the rule allowing 22/tcp under a drop policy: accepted\n%s", out)
	}
	wantIn("delete 1", out,
		fmt.Sprintf("refused: this change would drop new SSH connections from your client (%s -> %s/tcp), by the default policy drop", lk.B4, netip.AddrPortFrom(lk.A4, 22)),
		"a knock door protects 22/tcp too, but a door only narrows what the rules accept: no knock can let that client in")
	k.stop(t)
}

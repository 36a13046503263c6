package cli

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// TestFirewallWithCapNetAdminNotRoot runs portolan as user nobody with
// CAP_NET_ADMIN only (what setcap gives a binary), inside a lab namespace,
// without PORTOLAN_RUNTIME_DIR: commands must work (state goes to the
// user's runtime directory, since /run is not theirs), and the rule must
// hold for real connections.
func TestFirewallWithCapNetAdminNotRoot(t *testing.T) {
	testenv.RequireRoot(t)
	srv, cli, lk := netlab.NewPair(t)
	// The test binary, where nobody can run it.
	bin := exeForNobody(t)
	dir := filepath.Dir(bin)
	xdg := filepath.Join(dir, "xdg")
	if err := os.Mkdir(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(xdg, 65534, 65534)

	ln, err := srv.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, nil)

	run := func(args ...string) (string, error) {
		cmd := &exec.Cmd{Path: bin, Args: append([]string{"portolan", "firewall"}, args...), Dir: dir,
			Env: []string{"PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR=" + xdg, "NO_COLOR=1"},
			SysProcAttr: &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
				AmbientCaps: []uintptr{unix.CAP_NET_ADMIN},
			}}
		var out []byte
		// Started from a thread inside srv's namespace, the process runs there.
		err := srv.Do(func() error {
			var err error
			out, err = cmd.CombinedOutput()
			return err
		})
		return string(out), err
	}
	for _, args := range [][]string{{"list"}, {"deny", "8080/tcp"}, {"list"}} {
		if out, err := run(args...); err != nil {
			t.Fatalf("firewall %s as nobody with CAP_NET_ADMIN: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, a := range []netip.Addr{lk.A4, lk.A6} {
		ctx, cancel := context.WithTimeout(context.Background(), dropWait)
		c, err := cli.DialContext(ctx, "tcp", netip.AddrPortFrom(a, 8080).String())
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("8080 on %s reachable after deny by nobody with CAP_NET_ADMIN", a)
		}
	}
	if _, err := os.Stat(filepath.Join(xdg, "portolan")); err != nil {
		t.Errorf("no state in the user's runtime directory: %v", err)
	}
}

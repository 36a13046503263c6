package cli

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portolan/internal/knock"
	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// TestKnockdAFPacket runs knockd on its AF_PACKET fallback (forced with
// --capture packet) and opens its door with real knocks from portolan
// knock: a sequence over IPv4, a sealed SPA request over IPv6.
func TestKnockdAFPacket(t *testing.T) {
	srv, cli, lk := netlab.NewPair(t)
	ln, err := srv.Listen("tcp", ":2222")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "client.key")
	if err := knock.WriteKeyPair(key, knock.Ed25519, "laptop"); err != nil {
		t.Fatal(err)
	}
	serverKey := filepath.Join(dir, "knockd.key")
	if err := knock.WriteServerKeyPair(serverKey, "gw"); err != nil {
		t.Fatal(err)
	}
	k := startKnockd(t, srv, dir, "--capture", "packet", "--protect", "2222/tcp", "--sequence", "7000,8000/udp,9000",
		"--open-for", "1m", "--authorized-keys", key+".pub", "--server-key", serverKey)
	k.waitLine(t, `"msg":"capture"`, `"via":"af_packet"`)
	k.waitLine(t, `"msg":"sealed spa requests"`)
	k.waitLine(t, `"msg":"door"`)

	connect := func(host string, timeout time.Duration) bool {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := cli.DialContext(ctx, "tcp", net.JoinHostPort(host, "2222"))
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	portolanKnock := func(args ...string) {
		t.Helper()
		cmd := cli.Command(context.Background(), portolanExe(t), append([]string{"knock"}, args...)...)
		cmd.Env = portolanEnv(dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("portolan knock %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if connect(lk.A4.String(), 700*time.Millisecond) {
		t.Fatal("2222/tcp reachable before any knock")
	}
	portolanKnock(lk.A4.String(), "7000", "8000/udp", "9000")
	k.waitLine(t, `"msg":"door opened"`, `"via":"sequence"`, `"src":"`+lk.B4.String()+`"`)
	if !connect(lk.A4.String(), 10*time.Second) {
		t.Fatal("2222/tcp not reachable after the sequence")
	}
	portolanKnock("--spa", "["+lk.A6.String()+"]", "--key", key, "--server-key", serverKey+".pub", "--open", "2222/tcp")
	k.waitLine(t, `"msg":"door opened"`, `"via":"spa"`, `"key":"laptop"`, `"src":"`+lk.B6.String()+`"`)
	if !connect(lk.A6.String(), 10*time.Second) {
		t.Fatal("[fd00::1]:2222 not reachable after the SPA request")
	}
	k.stop(t)
}

package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/knock"
	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/store"
	"portolan/internal/testenv"
)

// knockdChild is portolan knockd running in a namespace, its log lines
// read as they come.
type knockdChild struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

func startKnockd(t *testing.T, h *netlab.Host, dir string, args ...string) *knockdChild {
	t.Helper()
	cmd := h.Command(context.Background(), portolanExe(t), append([]string{"knockd", "--log-format", "json"}, args...)...)
	cmd.Env = append(portolanEnv(dir), "SSH_CONNECTION=198.18.0.9 40000 198.18.0.1 2222")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k := &knockdChild{cmd: cmd, lines: make(chan string, 256), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			k.lines <- sc.Text()
		}
		close(k.lines)
		k.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return k
}

// waitLine waits for a log line containing all of want.
func (k *knockdChild) waitLine(t *testing.T, want ...string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-k.lines:
			if !ok {
				t.Fatalf("knockd exited before a line with %q", want)
			}
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			if all {
				return l
			}
		case <-deadline:
			t.Fatalf("no knockd line with %q in 20s", want)
		}
	}
}

func (k *knockdChild) stop(t *testing.T) {
	t.Helper()
	k.cmd.Process.Signal(syscall.SIGTERM)
	for range k.lines {
	}
	if err := <-k.done; err != nil {
		t.Fatalf("knockd after SIGTERM: %v", err)
	}
}

// TestKnockdDaemon runs the daemon as a user would: a door from a file,
// an SPA request opening it, a SIGHUP adding a key, a SIGTERM, and a
// restart on the same store that still refuses the first request replayed.
func TestKnockdDaemon(t *testing.T) {
	srv, cli, lk := netlab.NewPair(t)
	ln, err := srv.Listen("tcp", ":2222")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, nil)

	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	for _, n := range []string{"laptop", "phone"} {
		if err := knock.WriteKeyPair(path(n+".key"), knock.Ed25519, n); err != nil {
			t.Fatal(err)
		}
	}
	laptopPub, _ := os.ReadFile(path("laptop.key.pub"))
	phonePub, _ := os.ReadFile(path("phone.key.pub"))
	os.WriteFile(path("keys"), laptopPub, 0o600)
	os.WriteFile(path("knockd.yaml"), []byte("authorized-keys: "+path("keys")+"\ndoors:\n  - name: ssh\n    protect: 2222/tcp\n    open-for: 1m\n"), 0o600)
	db := path("p.db")

	send := func(key string) []byte {
		t.Helper()
		text, _ := os.ReadFile(path(key + ".key"))
		ck, err := knock.ParseClientKey(key, text)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		if err := cli.Do(func() error {
			b, err = (&knock.SPA{Key: ck}).Send(context.Background(), netip.AddrPortFrom(lk.A4, knock.DefaultSPAPort), netip.Addr{},
				[]knock.DoorPort{{Proto: portspec.TCP, Port: 2222}}, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A dropped SYN is given 700 ms, an expected open port 10 s: a busy
	// machine can only make an open port look closed, never the reverse.
	connect := func(timeout time.Duration) bool {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := cli.DialContext(ctx, "tcp", net.JoinHostPort(lk.A4.String(), "2222"))
		if err == nil {
			c.Close()
		}
		return err == nil
	}

	k := startKnockd(t, srv, dir, "-c", path("knockd.yaml"), "--db", db, "--metrics", "127.0.0.1:0")
	k.waitLine(t, `"msg":"capture"`, `"via":"nflog"`, `"group":7421`)
	// As if run over SSH to port 2222: the door protecting it is worth a warning.
	k.waitLine(t, `"level":"WARN"`, `a door protects your SSH port`, `"client":"198.18.0.9"`)
	k.waitLine(t, `"msg":"door"`, `"name":"ssh"`)
	var metricsAddr struct{ Addr string }
	json.Unmarshal([]byte(k.waitLine(t, `"msg":"metrics"`)), &metricsAddr)
	metrics := func() string {
		t.Helper()
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: srv.DialContext}}
		resp, err := hc.Get("http://" + metricsAddr.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if connect(700 * time.Millisecond) {
		t.Fatal("2222/tcp reachable before any request")
	}
	first := send("laptop")
	k.waitLine(t, `"msg":"door opened"`, `"key":"laptop"`)
	if !connect(10 * time.Second) {
		t.Fatal("2222/tcp not reachable after the laptop's request")
	}

	send("phone")
	k.waitLine(t, `"reason":"unknown key"`)
	os.WriteFile(path("keys"), append(laptopPub, phonePub...), 0o600)
	k.cmd.Process.Signal(syscall.SIGHUP)
	k.waitLine(t, `"msg":"reloaded"`, `"keys":2`)
	send("phone")
	k.waitLine(t, `"msg":"door opened"`, `"key":"phone"`)

	m := metrics()
	for _, want := range []string{`portolan_knock_opens_total{via="spa"} 2`, `portolan_knock_rejects_total{reason="unknown key"} 1`, "portolan_knock_open_latency_seconds_count 2"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// firewall list shows the door and who holds it open.
	list := srv.Command(context.Background(), portolanExe(t), "firewall", "list")
	list.Env = portolanEnv(dir)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("firewall list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "doors (portolan knockd) protect 2222/tcp") || !strings.Contains(string(out), lk.B4.String()+"  2222/tcp  in ") {
		t.Errorf("firewall list does not show the open door:\n%s", out)
	}
	k.stop(t)

	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.KnockEvents(context.Background(), 0)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type+":"+e.Key+":"+e.Reason)
	}
	if got, want := strings.Join(types, " "), "opened:laptop: rejected::unknown key opened:phone:"; got != want {
		t.Errorf("stored events %q; want %q", got, want)
	}

	k = startKnockd(t, srv, dir, "-c", path("knockd.yaml"), "--db", db)
	k.waitLine(t, `"msg":"door"`)
	c, err := cli.DialContext(context.Background(), "udp", netip.AddrPortFrom(lk.A4, knock.DefaultSPAPort).String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(first)
	c.Close()
	k.waitLine(t, `"reason":"replayed nonce"`, `"key":"laptop"`)
	k.stop(t)
}

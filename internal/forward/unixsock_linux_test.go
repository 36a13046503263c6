package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/testenv"
)

// unixBackend serves fn on a unix socket at path (a file, or @name for an
// abstract one) until the test ends.
func unixBackend(t *testing.T, path string, fn func(c net.Conn)) string {
	t.Helper()
	name := path
	if strings.HasPrefix(path, "@") {
		name = "\x00" + path[1:]
	}
	ln, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testenv.Serve(ln, fn)
	return "unix:" + path
}

func unixEcho(c net.Conn) {
	io.Copy(c, c)
	c.(*net.UnixConn).CloseWrite()
}

func dialUnix(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	path := strings.TrimPrefix(addr, "unix:")
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// abstractName is an abstract socket name no other test run shares.
func abstractName(t *testing.T, what string) string {
	return fmt.Sprintf("@portolan-test-%d-%s-%s", os.Getpid(), t.Name(), what)
}

func TestUnixListenerToTCPTarget(t *testing.T) {
	listen := "unix:" + filepath.Join(t.TempDir(), "app.sock")
	s, logs := start(t, Rule{Name: "u", Listen: listen, Targets: []string{backend(t, echo)}})
	if got := s.Addr("u").String(); got != strings.TrimPrefix(listen, "unix:") {
		t.Errorf("Addr = %q; want the path", got)
	}
	c := dialUnix(t, listen)
	roundTrip(t, c, "hello over a unix socket")
	c.Close()
	waitFor(t, "the log line", func() bool { return len(logs.lines()) == 1 })
	line := logs.lines()[0]
	if line["client"] != listen || line["reason"] != "eof" {
		t.Errorf("log line = %v; want client %s and reason eof", line, listen)
	}
}

func TestTCPListenerToUnixTarget(t *testing.T) {
	target := unixBackend(t, filepath.Join(t.TempDir(), "pg.sock"), unixEcho)
	// With a weight, as a balanced target is written.
	s, logs := start(t, Rule{Name: "t", Listen: "127.0.0.1:0", Targets: []string{target + " weight=2"}})
	c := dial(t, s, "t")
	roundTrip(t, c, "to a unix target")
	c.Close()
	waitFor(t, "the log line", func() bool { return len(logs.lines()) == 1 })
	if line := logs.lines()[0]; line["target"] != target || line["reason"] != "eof" {
		t.Errorf("log line = %v; want target %s and reason eof", line, target)
	}
}

func TestUnixTargetGoneIsDialError(t *testing.T) {
	target := "unix:" + filepath.Join(t.TempDir(), "none.sock")
	s, logs := start(t, Rule{Name: "t", Listen: "127.0.0.1:0", Targets: []string{target}})
	expectReset(t, s, "t", "no socket file")
	waitFor(t, "the log line", func() bool { return len(logs.lines()) == 1 })
	if r, _ := logs.lines()[0]["reason"].(string); !strings.Contains(r, "dial unix "+strings.TrimPrefix(target, "unix:")) {
		t.Errorf("reason = %q; want the dial error naming the path", r)
	}
}

func TestUnixToUnixAndAbstract(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, listen, target string }{
		{"files", "unix:" + filepath.Join(dir, "front.sock"), filepath.Join(dir, "back.sock")},
		{"abstract", "unix:" + abstractName(t, "front"), abstractName(t, "back")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := unixBackend(t, tc.target, unixEcho)
			start(t, Rule{Name: tc.name, Listen: tc.listen, Targets: []string{target}})
			roundTrip(t, dialUnix(t, tc.listen), "unix to unix")
		})
	}
}

func TestUnixModeAndOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mode.sock")
	start(t, Rule{Name: "m", Listen: "unix:" + path, Targets: []string{backend(t, echo)}, UnixMode: 0o660})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v; want a socket with 0660", fi.Mode())
	}

	t.Run("owner", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "owner.sock")
		r := Rule{Name: "o", Listen: "unix:" + path, Targets: []string{backend(t, echo)}, UnixOwner: "65534:65534"}
		if os.Geteuid() != 0 {
			// The relay tests also run unprivileged (scripts/test.sh):
			// there the chown must fail clearly, leaving no file behind.
			err := (&Server{}).Apply(context.Background(), []Rule{r})
			if err == nil || !strings.Contains(err.Error(), "chown: operation not permitted") {
				t.Fatalf("Apply as uid %d = %v; want a chown error", os.Geteuid(), err)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("stat %s after the failed start: %v; want no file", path, err)
			}
			return
		}
		start(t, r)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("owner = %d:%d; want 65534:65534", st.Uid, st.Gid)
		}
	})
}

func TestUnixStaleFileReplacedLiveRefused(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	// A socket file nobody listens on, as a killed run leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale file: %v", err)
	}
	start(t, Rule{Name: "s", Listen: "unix:" + stale, Targets: []string{backend(t, echo)}})
	roundTrip(t, dialUnix(t, "unix:"+stale), "stale replaced")

	live := filepath.Join(dir, "live.sock")
	unixBackend(t, live, unixEcho)
	s := &Server{}
	err = s.Apply(context.Background(), []Rule{{Name: "l", Listen: "unix:" + live, Targets: []string{backend(t, echo)}}})
	if err == nil || !strings.Contains(err.Error(), "in use: something listens on it") {
		t.Fatalf("Apply on a live socket: %v; want an in-use error", err)
	}

	file := filepath.Join(dir, "plain")
	os.WriteFile(file, []byte("data"), 0o600)
	err = s.Apply(context.Background(), []Rule{{Name: "f", Listen: "unix:" + file, Targets: []string{backend(t, echo)}}})
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Apply on a plain file: %v; want not a socket", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Errorf("the plain file was touched")
	}
}

func TestUnixFileRemovedOnShutdownAndRuleRemoval(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	tgt := backend(t, echo)
	s := &Server{}
	ctx := context.Background()
	if err := s.Apply(ctx, []Rule{{Name: "a", Listen: "unix:" + a, Targets: []string{tgt}}, {Name: "b", Listen: "unix:" + b, Targets: []string{tgt}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []Rule{{Name: "b", Listen: "unix:" + b, Targets: []string{tgt}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("after rule a was removed, stat %s: %v; want gone", a, err)
	}
	roundTrip(t, dialUnix(t, "unix:"+b), "b still serves")
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	s.Shutdown(sctx)
	if _, err := os.Stat(b); !os.IsNotExist(err) {
		t.Errorf("after shutdown, stat %s: %v; want gone", b, err)
	}
}

// TestUnixBulkAndHalfClose sends several MiB each way through a unix hop
// on both sides of the relay, with the end of each direction passed on
// as a half-close.
func TestUnixBulkAndHalfClose(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()
	target := unixBackend(t, filepath.Join(dir, "back.sock"), func(c net.Conn) {
		// Read everything first: the client's half-close must arrive
		// for this to answer at all.
		h := sha256.New()
		io.Copy(h, c)
		sum := h.Sum(nil)
		c.Write(sum)
		data := make([]byte, size)
		copy(data, sum)
		c.Write(data)
		c.(*net.UnixConn).CloseWrite()
	})
	listen := "unix:" + filepath.Join(dir, "front.sock")
	start(t, Rule{Name: "bulk", Listen: listen, Targets: []string{target}})
	c := dialUnix(t, listen)
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 32+size || !bytes.Equal(got[:32], want[:]) {
		t.Fatalf("got %d bytes, sum ok %v; want %d and the sum of what was sent", len(got), len(got) >= 32 && bytes.Equal(got[:32], want[:]), 32+size)
	}
	if !bytes.Equal(got[32:64], want[:]) {
		t.Errorf("the bulk answer is not what the target sent")
	}
}

func TestUnixListenerSendsProxyLocal(t *testing.T) {
	hdr := make(chan []byte, 1)
	tgt := backend(t, func(c *net.TCPConn) {
		b := make([]byte, 16)
		io.ReadFull(c, b)
		hdr <- b
		io.Copy(c, c)
	})
	listen := "unix:" + filepath.Join(t.TempDir(), "p.sock")
	start(t, Rule{Name: "p", Listen: listen, Targets: []string{tgt}, ProxyProtocol: 2})
	roundTrip(t, dialUnix(t, listen), "after the header")
	b := <-hdr
	if !bytes.Equal(b[:12], proxyV2Sig) || b[12] != 0x20 || b[13] != 0 || b[14] != 0 || b[15] != 0 {
		t.Errorf("header = %x; want the v2 LOCAL form with family UNSPEC", b)
	}
}

// configCase is an element of configCases.
type configCase = struct {
	name string
	in   string
	want []Rule
	err  string
}

// Unix socket rules in config files, as table cases and fuzz seeds of
// ParseConfig.
func init() {
	configCases = append(configCases, []configCase{
		{name: "unix listen", in: "rules:\n  - {name: a, listen: \"unix:/run/a.sock\", targets: [198.18.0.2:80], unix-mode: \"0660\", unix-owner: \"0:0\"}\n",
			want: []Rule{{Name: "a", Listen: "unix:/run/a.sock", Targets: []string{"198.18.0.2:80"}, UnixMode: 0o660, UnixOwner: "0:0"}}},
		{name: "unix target", in: "rules:\n  - {name: a, listen: \":5432\", targets: \"unix:/var/run/postgresql/.s.PGSQL.5432\"}\n",
			want: []Rule{{Name: "a", Listen: ":5432", Targets: []string{"unix:/var/run/postgresql/.s.PGSQL.5432"}}}},
		{name: "unix target weighted", in: "rules:\n  - {name: a, listen: \":1\", targets: [\"unix:/run/b.sock weight=3\", 198.18.0.2:80]}\n",
			want: []Rule{{Name: "a", Listen: ":1", Targets: []string{"unix:/run/b.sock weight=3", "198.18.0.2:80"}}}},
		{name: "unix target bad weight", in: "rules:\n  - {name: a, listen: \":1\", targets: [\"unix:/run/b.sock weight=0\"]}\n",
			err: `rule a: targets: "unix:/run/b.sock weight=0": weight "0"`},
		{name: "unix abstract", in: "rules:\n  - {name: a, listen: \"unix:@front\", targets: [\"unix:@back\"]}\n",
			want: []Rule{{Name: "a", Listen: "unix:@front", Targets: []string{"unix:@back"}}}},
		{name: "unix allow", in: "rules:\n  - {name: a, listen: \"unix:/run/a.sock\", targets: [198.18.0.2:80], allow: [198.18.0.0/15]}\n",
			err: "f.yaml:2:5: rule a: allow: a unix socket's clients have no address to match"},
		{name: "unix deny", in: "rules:\n  - {name: a, listen: \"unix:/run/a.sock\", targets: [198.18.0.2:80], deny: [198.18.0.0/15]}\n",
			err: "rule a: deny: a unix socket's clients have no address to match"},
		{name: "unix udp", in: "rules:\n  - {name: a, udp: true, listen: \"unix:/run/a.sock\", targets: [198.18.0.2:80]}\n",
			err: "rule a: proto: unix sockets are relayed for tcp rules only"},
		{name: "unix empty", in: "rules:\n  - {name: a, listen: \"unix:\", targets: [198.18.0.2:80]}\n",
			err: `rule a: listen: "unix:": empty path after unix: (at 5)`},
		{name: "unix bad target", in: "rules:\n  - {name: a, listen: \":1\", targets: [\"unix:/x/\"]}\n",
			err: `rule a: targets: "unix:/x/": a directory`},
		{name: "unix bad mode", in: "rules:\n  - {name: a, listen: \"unix:/a\", targets: [198.18.0.2:80], unix-mode: \"rwx\"}\n",
			err: `f.yaml:2:71: rule a: unix-mode: "rwx": want octal`},
		{name: "unix mode on tcp", in: "rules:\n  - {name: a, listen: \":1\", targets: [198.18.0.2:80], unix-mode: \"0600\"}\n",
			err: `rule a: unix-mode, unix-owner: only for a unix: listen address`},
		{name: "unix owner unknown", in: "rules:\n  - {name: a, listen: \"unix:/a\", targets: [198.18.0.2:80], unix-owner: no-such-user-portolan}\n",
			err: `rule a: unix-owner: "no-such-user-portolan": user "no-such-user-portolan": no such name`},
		{name: "unix mode abstract", in: "rules:\n  - {name: a, listen: \"unix:@a\", targets: [198.18.0.2:80], unix-mode: \"0600\"}\n",
			err: `rule a: unix-mode, unix-owner: an abstract socket has no file`},
		{name: "unix target with accept-proxy", in: "rules:\n  - {name: a, listen: \":1\", targets: [\"unix:/b\"], accept-proxy: [127.0.0.1]}\n",
			err: `rule a: targets: "unix:/b": a unix socket target cannot be used with accept-proxy`},
	}...)
}

// TestUnixTargetHealthCheck: --health connects to a unix target too; a
// missing socket is marked down, one that appears comes back up.
func TestUnixTargetHealthCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "late.sock")
	s, _ := start(t, Rule{Name: "h", Listen: "127.0.0.1:0", Targets: []string{"unix:" + path}, HealthInterval: 20 * time.Millisecond})
	tgt := func() *target {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.listeners {
			return l.state().pool.targets[0]
		}
		return nil
	}()
	waitFor(t, "the missing socket to be marked down", func() bool { return tgt.down.Load() })
	unixBackend(t, path, unixEcho)
	waitFor(t, "the socket to be marked up again", func() bool { return !tgt.down.Load() })
	roundTrip(t, dial(t, s, "h"), "checked and up")
}

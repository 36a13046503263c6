package wait

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"portolan/internal/freeport"
	"portolan/internal/portspec"
)

// Short pauses keep the tests quick; the deadlines are generous so a busy
// machine does not fail them: no test passes or fails on timing.
var fast = Options{Interval: 20 * time.Millisecond, MaxInterval: 50 * time.Millisecond, AttemptTimeout: 10 * time.Second}

func mustTarget(t *testing.T, s string) Target {
	t.Helper()
	tg, err := ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	l, err := tryListen(t, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tryListen listens and serves by accepting and closing, as a server would;
// it may run in a goroutine of its own (it does not stop the test).
func tryListen(t *testing.T, network, addr string) (net.Listener, error) {
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("Listen(%s, %s): %w", network, addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l, nil
}

func portOf(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

// unusedPort returns a port nothing listens on right now, from
// 20000-31999: below the default ephemeral range, so no other program's
// outgoing connection takes it before a test listens on it.
func unusedPort(t *testing.T) int {
	t.Helper()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if freeport.CheckFree(portspec.Port(p)) == nil {
			return p
		}
	}
	t.Fatal("no unused port found")
	return 0
}

// waitFail waits for one target that is not expected to become ready, and
// stops the wait after its first complete attempt, so the reason comes
// from a whole attempt however slow the machine is.
func waitFail(t *testing.T, target string, opts Options) (Status, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts.OnAttempt = func(int, Status) { cancel() }
	st, err := Wait(ctx, []Target{mustTarget(t, target)}, opts)
	if len(st) != 1 {
		t.Fatalf("Wait returned %d statuses; want 1", len(st))
	}
	if st[0].Ready || !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(%s) = %+v, %v; want not ready", target, st[0], err)
	}
	return st[0], err
}

// waitOne waits for one target, for at most 20s, and returns its status.
func waitOne(t *testing.T, target string, opts Options) (Status, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := Wait(ctx, []Target{mustTarget(t, target)}, opts)
	if len(st) != 1 {
		t.Fatalf("Wait returned %d statuses; want 1", len(st))
	}
	return st[0], err
}

func TestWaitLateListener(t *testing.T) {
	p := unusedPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	go func() {
		time.Sleep(300 * time.Millisecond)
		if _, err := tryListen(t, "tcp4", addr); err != nil {
			t.Error(err)
		}
	}()
	st, err := waitOne(t, addr, fast)
	if err != nil || !st.Ready {
		t.Fatalf("Wait(%s) = %+v, %v; want ready once the listener starts", addr, st, err)
	}
	if st.Attempts < 2 || st.Reason != "" {
		t.Errorf("Wait(%s) = %+v; want several attempts and no reason", addr, st)
	}
}

func TestWaitLocalhostBothFamilies(t *testing.T) {
	v6 := listen(t, "tcp6", "[::1]:0")
	target := fmt.Sprintf("localhost:%d", portOf(v6))
	st, err := waitOne(t, target, fast)
	if err != nil || !st.Ready {
		t.Fatalf("Wait(%s) with a listener on ::1 only = %+v, %v; want ready", target, st, err)
	}
	v4 := listen(t, "tcp4", "127.0.0.1:0")
	target = fmt.Sprintf(":%d", portOf(v4))
	if st, err := waitOne(t, target, fast); err != nil || !st.Ready {
		t.Fatalf("Wait(%s) with a listener on 127.0.0.1 only = %+v, %v; want ready", target, st, err)
	}
}

func TestWaitWrongFamily(t *testing.T) {
	v4 := listen(t, "tcp4", "127.0.0.1:0")
	v6 := listen(t, "tcp6", "[::1]:0")
	tests := []struct{ target, reason string }{
		{fmt.Sprintf("[::1]:%d", portOf(v4)), "listening on 127.0.0.1 only, you asked for ::1"},
		{fmt.Sprintf("127.0.0.1:%d", portOf(v6)), "listening on ::1 only, you asked for 127.0.0.1"},
	}
	for _, tt := range tests {
		st, _ := waitFail(t, tt.target, fast)
		if st.Reason != tt.reason {
			t.Errorf("Wait(%s) reason = %q; want %q", tt.target, st.Reason, tt.reason)
		}
	}
}

func TestWaitRefused(t *testing.T) {
	p := unusedPort(t)
	target := fmt.Sprintf("localhost:%d", p)
	st, err := waitFail(t, target, fast)
	if want := "connection refused (tried 127.0.0.1, ::1)"; st.Reason != want {
		t.Errorf("Wait(%s) reason = %q; want %q", target, st.Reason, want)
	}
	if len(st.Addrs) != 2 {
		t.Errorf("Wait(%s) addrs = %+v; want both loopbacks", target, st.Addrs)
	}
	if !strings.Contains(err.Error(), "1 of 1 targets not ready ("+target+")") {
		t.Errorf("Wait(%s) error = %q; want it to name the target", target, err)
	}
}

func TestWaitUnresolvable(t *testing.T) {
	o := fast
	o.Resolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in tests")
	}}
	st, _ := waitFail(t, "db.invalid:5432", o)
	if !strings.HasPrefix(st.Reason, "cannot resolve db.invalid") {
		t.Errorf("Wait(db.invalid:5432) reason = %q; want cannot resolve", st.Reason)
	}
}

func TestWaitHTTPFailingFirst(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		if n.Add(1) <= 2 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	o := fast
	var mu sync.Mutex
	var reasons []string
	o.OnAttempt = func(_ int, s Status) {
		mu.Lock()
		if !s.Ready {
			reasons = append(reasons, s.Reason)
		}
		mu.Unlock()
	}
	target := srv.URL + "/health"
	st, err := waitOne(t, target, o)
	if err != nil || !st.Ready || st.Attempts != 3 {
		t.Fatalf("Wait(%s) = %+v, %v; want ready on the third attempt", target, st, err)
	}
	want := "accepting but HTTP 503 Service Unavailable (want 200-399)"
	if len(reasons) != 2 || reasons[0] != want || reasons[1] != want {
		t.Errorf("reasons before ready = %q; want two of %q", reasons, want)
	}
	if len(st.Addrs) != 1 || st.Addrs[0].Result != "HTTP 200 OK" {
		t.Errorf("Wait(%s) addrs = %+v; want HTTP 200 OK", target, st.Addrs)
	}

	// A status outside --status never makes it ready, and the reason says so.
	o = fast
	o.StatusMin, o.StatusMax = 200, 200
	st, err = waitFail(t, srv.URL+"/nothing", o)
	if err == nil || st.Reason != "accepting but HTTP 404 Not Found (want 200-200)" {
		t.Errorf("Wait(/nothing) = %+v, %v; want HTTP 404 as the reason", st, err)
	}
}

func TestWaitHTTPLocalhostTrap(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != fmt.Sprintf("localhost:%d", portOf(l)) {
			http.Error(w, "wrong Host "+r.Host, http.StatusBadRequest)
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	target := fmt.Sprintf("http://localhost:%d/", portOf(l))
	st, err := waitOne(t, target, fast)
	if err != nil || !st.Ready {
		t.Fatalf("Wait(%s) with the server on ::1 only = %+v, %v; want ready", target, st, err)
	}
}

func TestWaitHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes we fail on purpose
	srv.StartTLS()
	defer srv.Close()
	o := fast
	o.AttemptTimeout = 15 * time.Second // handshakes are slow under the race detector
	st, err := waitFail(t, srv.URL, o)
	if err == nil || st.Reason != "TLS handshake failed: certificate signed by an unknown authority" {
		t.Errorf("Wait(%s) with an untrusted certificate = %+v, %v; want a TLS reason", srv.URL, st, err)
	}
	o.TLS = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	if st, err := waitOne(t, srv.URL, o); err != nil || !st.Ready {
		t.Errorf("Wait(%s) trusting its certificate = %+v, %v; want ready", srv.URL, st, err)
	}
	// Plain HTTP spoken to a TLS server gets an answer (400): accepting, wrong status.
	plain := strings.Replace(srv.URL, "https://", "http://", 1)
	st, _ = waitFail(t, plain, o)
	if !strings.HasPrefix(st.Reason, "accepting but HTTP 400") {
		t.Errorf("Wait(%s) = %+v; want accepting but HTTP 400", plain, st)
	}
}

func TestWaitHTTPNoAnswer(t *testing.T) {
	l := listen(t, "tcp4", "127.0.0.1:0") // accepts and hangs up at once
	target := fmt.Sprintf("http://127.0.0.1:%d/", portOf(l))
	st, _ := waitFail(t, target, fast)
	if !strings.HasPrefix(st.Reason, "accepting but no HTTP answer") {
		t.Errorf("Wait(%s) = %+v; want accepting but no HTTP answer", target, st)
	}
}

func TestWaitUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	st, _ := waitFail(t, "unix:"+path, fast)
	if st.Reason != "no socket there (the file does not exist)" {
		t.Errorf("Wait(unix:%s) before the socket exists: reason %q", path, st.Reason)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		if _, err := tryListen(t, "unix", path); err != nil {
			t.Error(err)
		}
	}()
	st, err := waitOne(t, "unix:"+path, fast)
	if err != nil || !st.Ready {
		t.Fatalf("Wait(unix:%s) = %+v, %v; want ready", path, st, err)
	}
}

func TestWaitFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf(":%d", portOf(l))
	o := fast
	o.Free = true
	st, err := waitFail(t, target, o)
	if err == nil || st.Ready || st.Reason != "still listening (accepting on 127.0.0.1)" {
		t.Errorf("Wait(--free %s) while listening = %+v, %v; want still listening", target, st, err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l.Close()
	}()
	st, err = waitOne(t, target, o)
	if err != nil || !st.Ready {
		t.Fatalf("Wait(--free %s) = %+v, %v; want ready once the listener closed", target, st, err)
	}
}

func TestWaitParallel(t *testing.T) {
	up := listen(t, "tcp4", "127.0.0.1:0")
	down := unusedPort(t)
	ts := []Target{
		mustTarget(t, fmt.Sprintf("127.0.0.1:%d", down)),
		mustTarget(t, fmt.Sprintf("127.0.0.1:%d", portOf(up))),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Stop once the first has failed and the second is ready.
	var mu sync.Mutex
	failed, ready := false, false
	o := fast
	o.OnAttempt = func(i int, s Status) {
		mu.Lock()
		defer mu.Unlock()
		failed = failed || (i == 0 && !s.Ready)
		ready = ready || (i == 1 && s.Ready)
		if failed && ready {
			cancel()
		}
	}
	st, err := Wait(ctx, ts, o)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 of 2 targets not ready") {
		t.Errorf("Wait = %v; want 1 of 2 not ready", err)
	}
	if st[0].Ready || !st[1].Ready || st[0].Target != ts[0] {
		t.Errorf("Wait statuses = %+v; want the first not ready, the second ready, in order", st)
	}
}

// TestWaitFreePrivileged: where a bind is not permitted (a port below
// ip_unprivileged_port_start, for a normal user), --free asks by connecting.
func TestWaitFreePrivileged(t *testing.T) {
	o := fast
	o.Free = true
	o.bind = func(portspec.Proto, netip.AddrPort, bool) error { return syscall.EACCES }
	l := listen(t, "tcp4", "127.0.0.1:0")
	target := fmt.Sprintf("127.0.0.1:%d", portOf(l))
	st, _ := waitFail(t, target, o)
	if st.Reason != "still listening (accepting on 127.0.0.1)" {
		t.Errorf("Wait(--free %s) while listening, bind not permitted: reason %q", target, st.Reason)
	}
	target = fmt.Sprintf(":%d", unusedPort(t))
	if st, err := waitOne(t, target, o); err != nil || !st.Ready {
		t.Errorf("Wait(--free %s) with nothing listening, bind not permitted = %+v, %v; want ready", target, st, err)
	}
}

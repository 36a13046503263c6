package cli

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/store"
	"portolan/internal/testenv"
	"portolan/internal/watch"
)

// watchPair is a client and a server namespace (198.18.0.1 and .2, root
// required), the server serving 8080/tcp: the port a banned client
// cannot reach.
func watchPair(t *testing.T) (cli, srv *netlab.Host) {
	testenv.RequireRoot(t)
	cli, srv, _ = netlab.NewPair(t)
	ln, err := srv.Listen("tcp", "198.18.0.2:8080")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testenv.Serve(ln, nil)
	return cli, srv
}

// TestWatchBlocksScanner runs `portolan watch --block` on a server
// namespace while `portolan scan` runs from a client namespace: the scan
// is detected and blocked (JSON lines on stdout, the --log file, the
// store, the metrics say so), the client cannot connect during the ban
// and can after it, SIGHUP reloads, and SIGTERM takes the rules out.
func TestWatchBlocksScanner(t *testing.T) {
	cli, srv := watchPair(t)

	dir := t.TempDir()
	db, logFile := filepath.Join(dir, "w.db"), filepath.Join(dir, "events.jsonl")
	exe, _ := os.Executable()
	cmd := &exec.Cmd{Path: exe, Args: []string{"portolan", "watch", "-v", "--json", "--netns", srv.Netns(), "--block", "--ban", "2s",
		"--log", logFile, "--db", db, "--metrics", "127.0.0.1:0", "--resolv-conf", "/nonexistent"}}
	// READY=1 says the daemon handles signals (systemd's Type=notify).
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	cmd.Env = append(os.Environ(), "SSH_CONNECTION=", "NO_COLOR=1", "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var mu sync.Mutex
	var lines []watch.Event
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e watch.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("stdout line %q: %v", sc.Text(), err)
				continue
			}
			mu.Lock()
			lines = append(lines, e)
			mu.Unlock()
		}
	}()
	metricsAddr := make(chan string, 1)
	var errOut bytes.Buffer
	go func() {
		re := regexp.MustCompile(`msg=metrics addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			errOut.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				metricsAddr <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-metricsAddr:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("portolan watch did not start:\n%s", errOut.String())
	}
	notify.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		buf := make([]byte, 256)
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("no READY=1: %v", err)
		}
		if string(buf[:n]) == "READY=1" {
			break
		}
	}
	// SIGHUP re-reads the never-block list and the daemon goes on.
	cmd.Process.Signal(syscall.SIGHUP)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		reloaded := strings.Contains(errOut.String(), "reloaded the never-block list")
		mu.Unlock()
		if reloaded {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no reload after SIGHUP")
		}
	}
	blocks := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range lines {
			if e.Type == watch.TypeBlock && e.Action == "blocked" && e.Source.String() == "198.18.0.1/32" {
				n++
			}
		}
		return n
	}

	var scanOut bytes.Buffer
	if err := cli.Do(func() error {
		Main(context.Background(), []string{"scan", "198.18.0.2", "-p", "1000-1199", "--no-store", "--max-retries", "0"}, strings.NewReader(""), &scanOut, io.Discard)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for blocks() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if blocks() != 1 {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d blocks of 198.18.0.1/32 on stdout; want 1\n%s", blocks(), errOut.String())
	}
	dial := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c, err := cli.DialContext(ctx, "tcp", "198.18.0.2:8080")
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if dial() {
		t.Fatal("the scanner connected during its ban")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`portolan_watch_blocks_total{result="blocked"} 1`, `portolan_watch_detections_total{kind="vertical"} 1`, `portolan_watch_kernel_drops_total{reason="rate_limit"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if m := regexp.MustCompile(`portolan_watch_attempts_total\{kind="syn"\} (\d+)`).FindSubmatch(body); m == nil {
		t.Error("no syn attempts in the metrics")
	} else if n, _ := strconv.Atoi(string(m[1])); n < watch.DefaultThresholds.Ports {
		t.Errorf("%d syn attempts counted; want at least %d", n, watch.DefaultThresholds.Ports)
	}
	deadline = time.Now().Add(6 * time.Second)
	for !dial() {
		if time.Now().After(deadline) {
			t.Fatal("still blocked 6 s into a 2 s ban")
		}
		time.Sleep(100 * time.Millisecond)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("watch exit: %v\n%s", err, errOut.String())
	}
	if out, _ := srv.Command(context.Background(), "nft", "list", "table", "inet", "portolan").CombinedOutput(); strings.Contains(string(out), "watch") {
		t.Errorf("watch rules left after SIGTERM:\n%s", out)
	}
	data, _ := os.ReadFile(logFile)
	if n := bytes.Count(data, []byte("\n")); n != len(lines) {
		t.Errorf("--log has %d lines, stdout %d; want the same events", n, len(lines))
	}
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"events", "--db", db, "--since", "1h", "--source", "198.18.0.1", "--type", "block", "--json"}, strings.NewReader(""), &out, io.Discard); code != 0 {
		t.Fatalf("events exit %d", code)
	}
	var stored []watch.Event
	if err := json.Unmarshal(out.Bytes(), &stored); err != nil || len(stored) != 1 || stored[0].Action != "blocked" {
		t.Fatalf("stored blocks %s, %v; want one", out.String(), err)
	}
	out.Reset()
	if code := Main(context.Background(), []string{"events", "--db", db, "--source", "198.18.9.9"}, strings.NewReader(""), &out, io.Discard); code != ExitNotFound {
		t.Errorf("events of a source never seen: exit %d; want %d", code, ExitNotFound)
	}
}

// TestWatchTerminalView: on a terminal, watch redraws its view in place
// (cursor home, clear screen): totals, the scanning source with its
// distinct ports, and the detection; Ctrl-C (ctx) ends it with exit 0.
func TestWatchTerminalView(t *testing.T) {
	testenv.RequireRoot(t)
	cli, srv, _ := netlab.NewPair(t)
	master, tty := openPTY(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var errOut strings.Builder
	go func() {
		done <- Main(ctx, []string{"watch", "--netns", srv.Netns(), "--refresh", "100ms", "--no-store", "--resolv-conf", "/nonexistent"}, strings.NewReader(""), tty, &errOut)
	}()
	var got strings.Builder
	var gotMu sync.Mutex
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := master.Read(buf)
			gotMu.Lock()
			got.Write(buf[:n])
			gotMu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	screen := func() string {
		gotMu.Lock()
		defer gotMu.Unlock()
		s := got.String()
		if i := strings.LastIndex(s, "\x1b[H\x1b[2J"); i >= 0 {
			return s[i:]
		}
		return ""
	}
	// Wait for the first redraw: the rules are in by then.
	deadline := time.Now().Add(15 * time.Second)
	for screen() == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cli.Do(func() error {
		Main(context.Background(), []string{"scan", "198.18.0.2", "-p", "1000-1049", "--no-store", "--max-retries", "0"}, strings.NewReader(""), io.Discard, io.Discard)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"198.18.0.1", "SOURCE", "PORT", "vertical scan", "detection 198.18.0.1/32"}
	ok := func() bool {
		s := screen()
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}
	for !ok() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !ok() {
		t.Errorf("screen %q; want %q", screen(), want)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("watch ended with exit %d; want 0 after Ctrl-C; stderr:\n%s", code, errOut.String())
	}
	if strings.Contains(screen(), `"type"`) {
		t.Error("JSON on the terminal view")
	}
}

// TestWatchLogStalled: the --log file is a pipe nobody reads. The capture
// goes on (every attempt counted), and the lines the log could not take
// are dropped and counted, not waited for.
func TestWatchLogStalled(t *testing.T) {
	testenv.RequireRoot(t)
	cli, srv, _ := netlab.NewPair(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "log.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Held open for reading, never read: the writer's open does not
	// wait, its writes stall once the pipe is full.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	exe, _ := os.Executable()
	cmd := &exec.Cmd{Path: exe, Args: []string{"portolan", "watch", "-v", "--json", "--netns", srv.Netns(), "--ports", "100000", "--slow-pairs", "100000",
		"--log", fifo, "--no-store", "--metrics", "127.0.0.1:0", "--resolv-conf", "/nonexistent"}}
	cmd.Env = append(os.Environ(), "SSH_CONNECTION=")
	cmd.Stdout = io.Discard
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg=metrics addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		t.Fatal("portolan watch did not start")
	}
	const ports = 8000 // ~250 bytes a line: past the pipe and the 1 MiB buffer
	if err := cli.Do(func() error {
		Main(context.Background(), []string{"scan", "198.18.0.2", "-p", "1-" + strconv.Itoa(ports), "--no-store", "--max-retries", "0"}, strings.NewReader(""), io.Discard, io.Discard)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	metric := func(body []byte, name string) int {
		m := regexp.MustCompile(regexp.QuoteMeta(name) + ` (\d+)`).FindSubmatch(body)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	var body []byte
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if metric(body, `portolan_watch_attempts_total{kind="syn"}`) >= ports {
			break
		}
	}
	if n := metric(body, `portolan_watch_attempts_total{kind="syn"}`); n < ports {
		t.Fatalf("%d SYNs captured behind a stalled log; want %d", n, ports)
	}
	if n := metric(body, "portolan_watch_events_dropped_total"); n <= 0 {
		t.Errorf("events dropped = %d; want the lines the stalled log could not take counted", n)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not stop within 20 s of SIGTERM with its log stalled")
	}
}

// TestWatchStoreStalled: another connection holds the event store's
// SQLite file locked (BEGIN EXCLUSIVE) for the whole run. watch starts,
// detects and blocks the scanner, and its JSON Lines log gets every
// event while the lock is held; on SIGTERM it does not wait for the
// store without end: it stops, and says how many events it could not
// store.
func TestWatchStoreStalled(t *testing.T) {
	cli, srv := watchPair(t)

	dir := t.TempDir()
	dbPath, logFile := filepath.Join(dir, "w.db"), filepath.Join(dir, "events.jsonl")
	ctx := context.Background()
	st, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	lockDB, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lockDB.Close()
	lock, err := lockDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	defer lock.ExecContext(ctx, "ROLLBACK")

	exe, _ := os.Executable()
	cmd := &exec.Cmd{Path: exe, Args: []string{"portolan", "watch", "-v", "--netns", srv.Netns(), "--block", "--ban", "1m",
		"--log", logFile, "--db", dbPath, "--metrics", "127.0.0.1:0", "--resolv-conf", "/nonexistent"}}
	cmd.Env = append(os.Environ(), "SSH_CONNECTION=", "NO_COLOR=1")
	cmd.Stdout = io.Discard
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var mu sync.Mutex
	var errOut bytes.Buffer
	started := make(chan struct{})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			errOut.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "msg=metrics ") {
				once.Do(func() { close(started) })
			}
		}
	}()
	stderrText := func() string {
		mu.Lock()
		defer mu.Unlock()
		return errOut.String()
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("portolan watch did not start with its store locked:\n%s", stderrText())
	}

	if err := cli.Do(func() error {
		Main(ctx, []string{"scan", "198.18.0.2", "-p", "1000-1199", "--no-store", "--max-retries", "0"}, strings.NewReader(""), io.Discard, io.Discard)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logged := func() (attempts, detections, blocks int) {
		data, _ := os.ReadFile(logFile)
		for l := range bytes.Lines(data) {
			var e watch.Event
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatalf("--log line %q: %v", l, err)
			}
			switch {
			case e.Type == watch.TypeAttempt:
				attempts++
			case e.Type == watch.TypeDetection && e.Source.String() == "198.18.0.1/32":
				detections++
			case e.Type == watch.TypeBlock && e.Action == "blocked" && e.Source.String() == "198.18.0.1/32":
				blocks++
			}
		}
		return
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, _, b := logged(); b > 0 {
			break
		}
	}
	a, d, b := logged()
	if a < watch.DefaultThresholds.Ports || d != 1 || b != 1 {
		t.Fatalf("--log with the store locked: %d attempts, %d detections, %d blocks; want >= %d, 1, 1\n%s", a, d, b, watch.DefaultThresholds.Ports, stderrText())
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if c, err := cli.DialContext(dctx, "tcp", "198.18.0.2:8080"); err == nil {
		c.Close()
		t.Error("the scanner connected during its ban, the store locked")
	}
	cancel()

	// Still locked: SIGTERM.
	cmd.Process.Signal(syscall.SIGTERM)
	stop := time.Now()
	done := make(chan error, 1)
	go func() { <-stderrDone; done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("stopped %v after SIGTERM", time.Since(stop).Round(time.Millisecond))
		if err != nil {
			t.Errorf("watch exit: %v\n%s", err, stderrText())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("watch did not stop within 30 s of SIGTERM with its store locked:\n%s", stderrText())
	}
	if !regexp.MustCompile(`events not stored.* events=[1-9]`).MatchString(stderrText()) {
		t.Errorf("no count of the events the locked store did not take on stderr:\n%s", stderrText())
	}
	if out, _ := srv.Command(ctx, "nft", "list", "table", "inet", "portolan").CombinedOutput(); strings.Contains(string(out), "watch") {
		t.Errorf("watch rules left after SIGTERM:\n%s", out)
	}
}

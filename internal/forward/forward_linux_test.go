package forward

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// manyChildEnv marks the child process of TestManyConnectionsFreeTheirSockets.
const manyChildEnv = "PORTOLAN_MANY_CHILD"

// TestManyConnectionsFreeTheirSockets holds 10,000 connections open
// through the relay at once, closes them, and wants the relay process's
// open file count back at its baseline. The clients and the echo backend
// run in a child process (this test binary again), so the relay's process
// holds only the relay's two sockets per connection. Where the hard
// open-files limit is below what that takes and cannot be raised (no
// CAP_SYS_RESOURCE: 20,000 in the sandbox this was written in), it holds
// as many as the limit allows, and says so.
func TestManyConnectionsFreeTheirSockets(t *testing.T) {
	n := 10000
	const spare = 200 // the relay process's other descriptors
	if limit := raiseNoFile(t, 2*n+spare); (limit-spare)/2 < n {
		n = (limit - spare) / 2
		t.Logf("open-files limit %d: %d connections", limit, n)
	}
	if testing.Short() {
		n = min(n, 500)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestManyConnectionsChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), manyChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				return strings.TrimSpace(rest)
			}
			t.Logf("child: %s", lines.Text())
		}
		t.Fatalf("child ended before %q: %v", prefix, lines.Err())
		return ""
	}
	backendAddr := expect("BACKEND ")
	s, _ := start(t, Rule{Name: "many", Listen: "127.0.0.1:0", Targets: []string{backendAddr}})
	base := openFDs(t)
	fmt.Fprintf(stdin, "%s %d\n", s.Addr("many"), n)
	// The child has connected n clients and had a byte echoed on each:
	// every connection is relayed end to end, all at the same time.
	expect("HELD")
	if got := s.stats["many"].active.Load(); got != int64(n) {
		t.Fatalf("%d connections active; want %d", got, n)
	}
	// The relay's two sockets per connection, whatever else (counted in
	// the baseline) has come and gone meanwhile.
	if fds := openFDs(t); fds < 2*n {
		t.Fatalf("%d descriptors open with %d connections held; want at least 2 per connection", fds, n)
	}
	fmt.Fprintln(stdin, "CLOSE")
	expect("CLOSED")
	waitFor(t, "descriptors back to baseline", func() bool {
		// Empty splice pipes wait in a sync.Pool for the next
		// connections; a collection (the runtime forces one every two
		// minutes at the latest) hands them back to their cleanups.
		runtime.GC()
		return openFDs(t) <= base && s.stats["many"].active.Load() == 0
	})
}

// TestManyConnectionsChild is the clients and the echo backend of
// TestManyConnectionsFreeTheirSockets, in a process of their own.
func TestManyConnectionsChild(t *testing.T) {
	if os.Getenv(manyChildEnv) == "" {
		t.Skip("helper process of TestManyConnectionsFreeTheirSockets")
	}
	raiseNoFile(t, 1<<20)
	// Not io.Copy, which splices through a pipe of its own: two more
	// descriptors per connection.
	fmt.Printf("BACKEND %s\n", backend(t, func(c *net.TCPConn) {
		b := make([]byte, 64)
		for {
			n, err := c.Read(b)
			if n > 0 {
				c.Write(b[:n])
			}
			if err != nil {
				return
			}
		}
	}))
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		t.Fatal("no relay address")
	}
	var addr string
	var n int
	if _, err := fmt.Sscan(in.Text(), &addr, &n); err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	one := []byte{'x'}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.Write(one); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i, c := range conns {
		if _, err := io.ReadFull(c, one); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	fmt.Println("HELD")
	if !in.Scan() || in.Text() != "CLOSE" {
		t.Fatal("no CLOSE")
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	fmt.Println("CLOSED")
	for in.Scan() { // until the parent is done
	}
}

// raiseNoFile lifts the soft open-files limit to want, or as far as the
// hard limit lets it (raising that needs CAP_SYS_RESOURCE), and returns the
// soft limit in force.
func raiseNoFile(t *testing.T, want int) int {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= uint64(want) {
		return int(rl.Cur)
	}
	old := rl
	rl.Cur, rl.Max = uint64(want), max(rl.Max, uint64(want))
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		rl = old
		rl.Cur = min(rl.Max, uint64(want))
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	return int(rl.Cur)
}

// TestReloadUnderLoadDropsNothing reloads repeatedly while clients make
// connections; every connection must be relayed.
func TestReloadUnderLoadDropsNothing(t *testing.T) {
	rule := Rule{Name: "r", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}}
	s, _ := start(t, rule)
	addr := s.Addr("r").String()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 5)
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp4", addr)
				if err == nil {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					_, err = c.Write([]byte("hello"))
					if err == nil {
						_, err = io.ReadFull(c, buf)
					}
					c.Close()
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("connection during reloads: %v", err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	for i := range 50 {
		r := rule
		r.KeepAlive = time.Duration(i+1) * time.Second // a change, so the rule is swapped
		if err := s.Apply(context.Background(), []Rule{r}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if ok.Load() == 0 || failed.Load() != 0 {
		t.Errorf("through reloads: %d relayed, %d failed", ok.Load(), failed.Load())
	}
}

// TestSlowReaderBackpressure: a client that never reads must stall the
// target's writes (kernel buffers only), not grow the relay's memory.
func TestSlowReaderBackpressure(t *testing.T) {
	wrote := make(chan int64, 1)
	src := backend(t, func(c *net.TCPConn) {
		buf := make([]byte, 1<<20)
		var n int64
		for n < 1<<30 { // bounded
			c.SetWriteDeadline(time.Now().Add(time.Second))
			m, err := c.Write(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		wrote <- n
	})
	s, _ := start(t, Rule{Name: "slow", Listen: "127.0.0.1:0", Targets: []string{src}})
	c := dial(t, s, "slow")
	n := <-wrote
	if n >= 1<<30 {
		t.Fatalf("the target wrote %d bytes to a client that reads nothing; want a stall", n)
	}
	if n > 64<<20 {
		t.Errorf("the target wrote %d MiB before stalling; want socket buffers only", n>>20)
	}
	c.Close()
}

// TestMoveSmallReadsToAFullSocket drives one direction of the TCP loop
// by hand: small messages are read into the loop's buffer and sent on;
// when the destination's socket fills, what it does not take waits in the
// pipe, the source is left unread (backpressure), and once the reader
// drains its side every byte arrives once and in order.
func TestMoveSmallReadsToAFullSocket(t *testing.T) { moveThroughFullSocket(t, 700, 2000) }

// moveThroughFullSocket is TestMoveSmallReadsToAFullSocket with msgs
// messages of size bytes (less than the copy buffer).
func moveThroughFullSocket(t *testing.T, size, msgs int) {
	srcW, srcR := tcpPair(t)
	dstW, dstR := tcpPair(t)
	// A small send buffer, so that the destination fills after a few
	// hundred messages (the reader's window closes first).
	rc, _ := dstW.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
	src, dst := rawFD(t, srcR), rawFD(t, dstW)

	msg := func(i int) []byte {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(i + j)
		}
		return b
	}
	var l tcpLoop
	c := &loopConn{}
	var h, other half
	readable, writable := false, true
	move := func() {
		t.Helper()
		if _, err := l.move(c, &h, &other, src, dst, &readable, &writable, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	sent := 0
	for ; sent < msgs && h.p == nil; sent++ {
		if _, err := srcW.Write(msg(sent)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // the message arrives on its own
		readable = true
		move()
		if h.bulk {
			t.Fatalf("message %d: a %d-byte read marked the direction bulk", sent, size)
		}
	}
	if h.p == nil || h.p.n == 0 || writable {
		t.Fatalf("after %d messages nothing waits in the pipe (writable %v); want the destination full", sent, writable)
	}
	t.Logf("the destination took %d messages before it filled", sent)
	// Full: more arrives, and stays in the source socket.
	if _, err := srcW.Write(msg(sent)); err != nil {
		t.Fatal(err)
	}
	sent++
	readable = true
	before := h.n
	move()
	if h.n != before || !readable {
		t.Fatalf("the source was read while the destination is full (moved %d, readable %v)", h.n-before, readable)
	}
	for ; sent < msgs; sent++ {
		if _, err := srcW.Write(msg(sent)); err != nil {
			t.Fatal(err)
		}
	}
	srcW.CloseWrite()
	// The reader drains; the loop moves on each writable report.
	got := make([]byte, 0, msgs*size)
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < msgs*size && time.Now().Before(deadline) {
		dstR.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		n, _ := dstR.Read(buf)
		got = append(got, buf[:n]...)
		readable, writable = true, true
		move()
	}
	if len(got) != msgs*size || h.n != int64(msgs*size) {
		t.Fatalf("read %d bytes, moved %d; want %d", len(got), h.n, msgs*size)
	}
	for i := range msgs {
		if want := msg(i); !bytes.Equal(got[i*size:(i+1)*size], want) {
			t.Fatalf("message %d arrived changed", i)
		}
	}
	if !h.eof {
		t.Error("the source's end was not seen")
	}
	dropPipe(&h)
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// rawFD returns c's descriptor (non-blocking, as Go leaves it); c must
// stay open meanwhile.
func rawFD(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// TestUDPManyClientsOwnRepliesAndExpiry runs many clients through one UDP
// relay at once, each with its own socket and session: every reply must
// be the answer to that client's own request, and once the sessions
// expire their upstream sockets must be closed (descriptor count back at
// its baseline).
func TestUDPManyClientsOwnRepliesAndExpiry(t *testing.T) {
	const clients, exchanges = 50, 200
	upAddr := udpBackend(t, udpEcho)
	// The idle time outlasts a retry, so that a datagram lost on a busy
	// machine does not end the client's session.
	s, lb := start(t, Rule{Name: "many", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{upAddr}, IdleTimeout: time.Second})
	addr := s.Addr("many").String()
	base := openFDs(t)
	var wrong, lost, retries atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		conn, err := net.Dial("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			buf := make([]byte, 256)
			for i := range exchanges {
				q := fmt.Sprintf("client %d request %d", c, i)
				// A datagram lost on a busy machine is retried; a reply
				// from an earlier try is skipped, not counted as wrong.
				for try := 0; ; try++ {
					if try == 5 {
						lost.Add(1)
						return
					}
					if try > 0 {
						retries.Add(1)
					}
					conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
					if _, err := conn.Write([]byte(q)); err != nil {
						continue
					}
					n, err := conn.Read(buf)
					for err == nil && string(buf[:n]) != q {
						if !strings.HasPrefix(string(buf[:n]), fmt.Sprintf("client %d request ", c)) {
							wrong.Add(1)
							t.Errorf("client %d got %q", c, buf[:n])
							return
						}
						n, err = conn.Read(buf)
					}
					if err == nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if wrong.Load() != 0 || lost.Load() != 0 {
		t.Fatalf("%d replies reached the wrong client, %d clients gave up", wrong.Load(), lost.Load())
	}
	// One session per client; a client stalled past the idle time by a
	// busy machine (it had to retry) may have needed a second one.
	sessions := int64(s.stats["many"].total.Load())
	if sessions < clients || sessions > clients+retries.Load() {
		t.Errorf("sessions opened = %d; want %d (retries: %d)", sessions, clients, retries.Load())
	}
	waitFor(t, "sessions expired and sockets closed", func() bool {
		return s.stats["many"].active.Load() == 0 && openFDs(t) <= base
	})
	waitFor(t, "a log line per session", func() bool { return int64(len(lb.lines())) == sessions })
	var to, back float64
	for _, l := range lb.lines() {
		if l["reason"] != "idle" {
			t.Errorf("session log = %v; want reason idle", l)
		}
		to += l["bytes_to_target"].(float64)
		back += l["bytes_to_client"].(float64)
	}
	if min(to, back) < clients*exchanges*18 {
		t.Errorf("bytes relayed = %v to the target, %v back; want at least %d each way", to, back, clients*exchanges*18)
	}
}

// blackhole returns a loopback address whose SYNs go unanswered: a
// listener with a full accept queue drops them.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	// Fill the queue until a connect is left waiting.
	for i := range 8 {
		c, err := net.DialTimeout("tcp4", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
		if i == 7 {
			t.Skip("the accept queue does not fill up here")
		}
	}
	return addr
}

// TestConnectTimeout: a target that never answers is given up after the
// connect timeout: the client gets a reset and the reason, or the next
// target when there is one.
func TestConnectTimeout(t *testing.T) {
	hole := blackhole(t)
	s, lb := start(t,
		Rule{Name: "hole", Listen: "127.0.0.1:0", Targets: []string{hole}, ConnectTimeout: 200 * time.Millisecond},
		Rule{Name: "next", Listen: "127.0.0.1:0", Targets: []string{hole, backend(t, echo)}, Balance: FirstHealthy, ConnectTimeout: 200 * time.Millisecond},
	)
	expectReset(t, s, "hole", "target never answers")
	waitFor(t, "log line", func() bool { return len(lb.lines()) == 1 })
	if l := lb.lines()[0]; l["rule"] != "hole" || !strings.HasPrefix(l["reason"].(string), "dial: ") || !strings.HasSuffix(l["reason"].(string), "i/o timeout") || l["target"] != hole {
		t.Errorf("log = %v; want rule hole, target %s, reason dial: ... i/o timeout", l, hole)
	}
	c := dial(t, s, "next")
	roundTrip(t, c, "second target")
	if got := s.stats["hole"].dialErrs.Load(); got != 1 {
		t.Errorf("dial errors = %d; want 1", got)
	}
}

// TestManyConcurrentConnectionsOwnEchoes: many clients at once, each
// exchanging messages of its own through the relay, each gets exactly
// its own bytes back.
func TestManyConcurrentConnectionsOwnEchoes(t *testing.T) {
	const clients, rounds = 200, 20
	s, lb := start(t, Rule{Name: "e", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}})
	addr := s.Addr("e").String()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			for r := range rounds {
				msg := []byte(fmt.Sprintf("client %d round %d %s", i, r, strings.Repeat("x", (i*r)%3000)))
				if _, err := c.Write(msg); err != nil {
					t.Errorf("client %d write: %v", i, err)
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
					t.Errorf("client %d round %d: got %.40q, %v", i, r, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "a log line per connection", func() bool { return len(lb.lines()) == clients })
	if got := s.stats["e"].total.Load(); got != clients {
		t.Errorf("connections = %d; want %d", got, clients)
	}
}

// TestTargetThatNeverReads: a client writing to a target that reads
// nothing stalls once the kernel buffers are full (no growth in the
// relay), and the other connections of the listener go on meanwhile.
func TestTargetThatNeverReads(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	deaf := backend(t, func(c *net.TCPConn) { <-hold })
	s, _ := start(t,
		Rule{Name: "deaf", Listen: "127.0.0.1:0", Targets: []string{deaf}},
		Rule{Name: "e", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}},
	)
	c := dial(t, s, "deaf")
	buf := make([]byte, 1<<20)
	var n int64
	for n < 1<<30 { // bounded
		c.SetWriteDeadline(time.Now().Add(time.Second))
		m, err := c.Write(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	if n >= 1<<30 {
		t.Fatalf("the client wrote %d bytes to a target that reads nothing; want a stall", n)
	}
	if n > 64<<20 {
		t.Errorf("the client wrote %d MiB before stalling; want socket buffers and one pipe only", n>>20)
	}
	roundTrip(t, dial(t, s, "e"), "not held up by the stalled one")
}

// TestNamedTarget: a target given by host name is relayed too.
func TestNamedTarget(t *testing.T) {
	_, port, _ := net.SplitHostPort(backend(t, echo))
	s, lb := start(t, Rule{Name: "n", Listen: "127.0.0.1:0", Targets: []string{"localhost:" + port}})
	c := dial(t, s, "n")
	roundTrip(t, c, "by name")
	c.Close()
	waitFor(t, "log line", func() bool { return len(lb.lines()) == 1 })
	if l := lb.lines()[0]; l["reason"] != "eof" || l["target"] != "localhost:"+port {
		t.Errorf("log = %v; want reason eof, target localhost:%s", l, port)
	}
	// A name that does not resolve (.onion is refused without a query) is
	// skipped for the next target, and alone it gets the client a reset.
	s2, _ := start(t,
		Rule{Name: "skip", Listen: "127.0.0.1:0", Targets: []string{"gone.onion:" + port, "localhost:" + port}},
		Rule{Name: "none", Listen: "127.0.0.1:0", Targets: []string{"gone.onion:" + port}})
	roundTrip(t, dial(t, s2, "skip"), "past the bad name")
	expectReset(t, s2, "none", "a target name that does not resolve")
	if n := s2.stats["none"].dialErrs.Load(); n != 1 {
		t.Errorf("dial errors on the unresolvable rule = %d; want 1", n)
	}
	// A refused named target: the log names the address it resolved to.
	_, closed, _ := net.SplitHostPort(closedPort(t))
	s3, lb3 := start(t, Rule{Name: "refused", Listen: "127.0.0.1:0", Targets: []string{"localhost:" + closed}})
	expectReset(t, s3, "refused", "a named target that refuses")
	waitFor(t, "log line", func() bool { return len(lb3.lines()) == 1 })
	if r, _ := lb3.lines()[0]["reason"].(string); !strings.Contains(r, "127.0.0.1:"+closed) || !strings.Contains(r, "refused") {
		t.Errorf("log reason = %q; want the refused address 127.0.0.1:%s", r, closed)
	}
}

// TestKeepAliveOptions checks the socket options each KeepAlive value
// stands for, also when a socket with its own timers goes back to the
// kernel's.
func TestKeepAliveOptions(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	get := func(level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	kIdle, _ := kernelKeepAlive()
	for _, tc := range []struct {
		d      time.Duration
		custom bool
		on     int
		idle   int
	}{
		{-1, false, 0, -1},
		{45 * time.Second, false, 1, 45},
		{0, true, 1, kIdle},
		{1500 * time.Millisecond, false, 1, 2},
		{-1, true, 0, -1},
	} {
		setKeepAliveFD(fd, tc.d, tc.custom)
		if on := get(unix.SOL_SOCKET, unix.SO_KEEPALIVE); on != tc.on {
			t.Errorf("setKeepAliveFD(%v): SO_KEEPALIVE = %d; want %d", tc.d, on, tc.on)
		}
		if idle := get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); tc.idle >= 0 && idle != tc.idle {
			t.Errorf("setKeepAliveFD(%v): TCP_KEEPIDLE = %d; want %d", tc.d, idle, tc.idle)
		}
	}
}

// TestMixedClientsEndCleanly runs clients that end in every way at once:
// a clean close, a half-close before reading, a close right after
// connecting, a reset in the middle of a stream, a large echo. Every
// connection must end, leaving no descriptor and no active count behind.
func TestMixedClientsEndCleanly(t *testing.T) {
	const clients = 250
	s, lb := start(t, Rule{Name: "m", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}})
	addr := s.Addr("m").String()
	base := openFDs(t)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			c := nc.(*net.TCPConn)
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			msg := []byte(fmt.Sprintf("client %d", i))
			switch i % 5 {
			case 0: // echo, close
				_, err := c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, make([]byte, len(msg)))
				}
				if err != nil {
					t.Errorf("client %d echo: %v", i, err)
				}
			case 1: // half-close, then read everything back
				c.Write(msg)
				c.CloseWrite()
				if b, err := io.ReadAll(c); err != nil || string(b) != string(msg) {
					t.Errorf("client %d after half-close: %q, %v", i, b, err)
				}
			case 2: // gone at once
			case 3: // reset mid-stream
				c.Write(bytes.Repeat([]byte("r"), 64<<10))
				c.SetLinger(0)
			case 4: // a large echo, written and read at the same time
				big := bytes.Repeat(msg, (1<<20)/len(msg))
				go func() { c.Write(big); c.CloseWrite() }()
				if b, err := io.ReadAll(c); err != nil || len(b) != len(big) {
					t.Errorf("client %d large echo: %d bytes, %v; want %d", i, len(b), err, len(big))
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every connection ended and its descriptors closed", func() bool {
		runtime.GC() // pooled pipes are closed once the pool drops them
		return s.stats["m"].active.Load() == 0 && openFDs(t) <= base
	})
	waitFor(t, "a log line per connection", func() bool { return len(lb.lines()) == clients })
}

// TestLoopsShareListener: with Server.Loops a TCP listener is that many
// loops on one socket, and clients arriving together reach more than one.
func TestLoopsShareListener(t *testing.T) {
	lb := &logBuf{}
	s := &Server{Logger: slog.New(slog.NewJSONHandler(lb, nil)), Loops: 3}
	if err := s.Apply(context.Background(), []Rule{{Name: "e", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		s.Shutdown(ctx)
	})
	s.mu.Lock()
	var loops tcpLoops
	for _, l := range s.listeners {
		loops, _ = l.(tcpLoops)
	}
	s.mu.Unlock()
	if len(loops) != 3 {
		t.Fatalf("listener has %d loops; want 3", len(loops))
	}
	spread := func() bool {
		for _, l := range loops {
			if l.accepted.Load() == 0 {
				return false
			}
		}
		return true
	}
	for round := 0; round < 10 && !spread(); round++ {
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				c, err := net.Dial("tcp", s.Addr("e").String())
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 8)
				if _, err := c.Write([]byte("together")); err != nil {
					t.Error(err)
				} else if _, err := io.ReadFull(c, b); err != nil || string(b) != "together" {
					t.Errorf("echo = %q, %v", b, err)
				}
			})
		}
		wg.Wait()
	}
	if !spread() {
		for i, l := range loops {
			t.Errorf("loop %d accepted %d connections", i, l.accepted.Load())
		}
	}
}

// The replies held in a turn of the UDP loop go out with sendmmsg, each
// to its own session's client, in order, however many sessions and
// however the batch fills (by count, by bytes), with the bytes counted
// per session.
func TestReplyBatchSendsEachToItsClient(t *testing.T) {
	out, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	fd := rawFD(t, out)
	const clients = 5
	conns := make([]*net.UDPConn, clients)
	sessions := make([]*udpSession, clients)
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadBuffer(4 << 20)
		conns[i] = c
		ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
		sess := &udpSession{client: ap, nameLen: unix.SizeofSockaddrInet4}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sess.name))
		sa.Family = unix.AF_INET
		sa.Port = ap.Port()>>8 | ap.Port()<<8
		sa.Addr = ap.Addr().As4()
		sessions[i] = sess
	}
	var r replyBatch
	r.setup()
	// 3 rounds of 30 replies, round-robin over the clients: past the count
	// bound; then 6 of 60 KiB: past the byte bound; then one alone.
	var want [clients][]string
	send := func(i int, b []byte) {
		r.add(fd, sessions[i], b)
		want[i] = append(want[i], string(b))
	}
	for k := range 90 {
		send(k%clients, fmt.Appendf(nil, "reply %d to client %d", k, k%clients))
	}
	r.flush(fd)
	for k := range 6 {
		b := bytes.Repeat([]byte{byte('a' + k)}, 60<<10)
		send(k%clients, b)
	}
	r.flush(fd)
	send(2, []byte("alone"))
	r.flush(fd)
	buf := make([]byte, 64<<10)
	for i, c := range conns {
		var total int64
		for j, w := range want[i] {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("client %d, reply %d of %d: %v", i, j, len(want[i]), err)
			}
			if string(buf[:n]) != w {
				t.Fatalf("client %d, reply %d: got %d bytes %.30q; want %d bytes %.30q", i, j, n, buf[:n], len(w), w)
			}
			total += int64(n)
		}
		if sessions[i].toClient != total {
			t.Errorf("client %d: %d bytes counted; %d sent", i, sessions[i].toClient, total)
		}
	}
	if r.n != 0 || len(r.buf) != 0 {
		t.Errorf("after flush: %d replies, %d bytes held", r.n, len(r.buf))
	}
}

// A client's consecutive datagrams go to its target in one sendmmsg on
// the session's socket: all of them, in order, counted.
func TestToTargetSendsARunInOrder(t *testing.T) {
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	src, err := net.DialUDP("udp4", nil, dst.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sess := &udpSession{fd: rawFD(t, src)}
	var l udpListener
	l.setup()
	var want []string
	for _, k := range []int{udpBatch, 1, 3} {
		for i := range k {
			b := fmt.Appendf(nil, "datagram %d of a run of %d", i, k)
			l.upIovs[i].Base = &b[0]
			l.upIovs[i].SetLen(len(b))
			want = append(want, string(b))
		}
		l.toTarget(sess, k)
	}
	buf := make([]byte, 256)
	var total int64
	for i, w := range want {
		dst.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := dst.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if string(buf[:n]) != w {
			t.Fatalf("datagram %d = %q; want %q", i, buf[:n], w)
		}
		total += int64(n)
	}
	if sess.toTarget != total {
		t.Errorf("%d bytes counted; %d sent", sess.toTarget, total)
	}
}

// A socket is read in batches when it was read in the turn before or its
// last batch held more than one datagram; otherwise one at a time.
func TestReadModeBatchesBusySockets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		m     readMode
		turn  uint64
		batch bool
	}{
		{"every other turn, one datagram", readMode{turn: 10}, 12, false},
		{"two turns in a row", readMode{turn: 11}, 12, true},
		{"last batch held several", readMode{turn: 3, many: true}, 12, true},
		{"again in the same turn", readMode{turn: 12}, 12, false},
	} {
		if got := tc.m.batch(tc.turn); got != tc.batch || tc.m.turn != tc.turn {
			t.Errorf("%s: batch = %v, turn %d; want %v, turn %d", tc.name, got, tc.m.turn, tc.batch, tc.turn)
		}
	}
}

// Read one datagram at a time or in a batch, the listener gets every
// datagram whole (an empty one too) with the address it came from.
func TestReadOneOrBatchKeepsSenders(t *testing.T) {
	in, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var senders [2]*net.UDPConn
	for i := range senders {
		if senders[i], err = net.DialUDP("udp4", nil, in.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		defer senders[i].Close()
	}
	l := udpListener{fd: rawFD(t, in)}
	l.setup()
	type dgram struct {
		from netip.AddrPort
		data string
	}
	var want, got []dgram
	for i := range 6 {
		s := senders[i%2]
		b := bytes.Repeat([]byte{byte('a' + i)}, i*1000) // the first is empty
		if _, err := s.Write(b); err != nil {
			t.Fatal(err)
		}
		want = append(want, dgram{s.LocalAddr().(*net.UDPAddr).AddrPort(), string(b)})
	}
	// Turn 5: one datagram (the socket was not read in turn 4); turn 6: a
	// batch of the other five (read in the turn before).
	for l.turn = 5; l.turn <= 6; l.turn++ {
		n, err := l.read(l.fd, &l.reads, true)
		if err != nil {
			t.Fatalf("turn %d: %v", l.turn, err)
		}
		if wantN := []int{1, 5}[l.turn-5]; n != wantN {
			t.Fatalf("turn %d: read %d datagrams; want %d", l.turn, n, wantN)
		}
		for i := range n {
			from, ok := sockaddrPort(&l.names[i], l.msgs[i].Hdr.Namelen)
			if !ok {
				t.Fatalf("turn %d, datagram %d: no sender address", l.turn, i)
			}
			got = append(got, dgram{from, string(l.bufs[i*maxDatagram : i*maxDatagram+int(l.msgs[i].Len)])})
		}
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }), cmp.AllowUnexported(dgram{})); diff != "" {
		t.Errorf("datagrams read (-want +got):\n%s", diff)
	}
	if _, err := l.read(l.fd, &l.reads, true); err != unix.EAGAIN {
		t.Errorf("read of an empty socket: %v; want EAGAIN", err)
	}
}

// The loop's timer wakes its epoll set at the time set, not before; a
// later time leaves it as it is, an earlier one brings it forward.
func TestLoopTimer(t *testing.T) {
	var c loopCtl
	if err := c.open(func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.mu.Lock()
		c.closeCtlLocked()
		c.mu.Unlock()
	}()
	c.begin()
	events := make([]unix.EpollEvent, 4)
	fired := func(timeout time.Duration) bool {
		n, err := unix.EpollWait(c.epfd, events, int(timeout.Milliseconds()))
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == c.timer {
				c.timerFired()
				return true
			}
		}
		return false
	}
	now := c.now()
	c.setTimer(now+int64(300*time.Millisecond), now)
	c.setTimer(now+int64(time.Hour), now) // later: no change
	if !fired(10 * time.Second) {
		t.Fatal("timer set for 300 ms did not fire")
	}
	if el := c.now() - now; el < int64(300*time.Millisecond) {
		t.Errorf("timer fired after %v; set for 300 ms", time.Duration(el))
	}
	now = c.now()
	c.setTimer(now+int64(time.Hour), now)
	c.setTimer(now+int64(50*time.Millisecond), now) // earlier: brought forward
	if !fired(10 * time.Second) {
		t.Fatal("timer brought forward to 50 ms did not fire")
	}
	if c.armedAt != noTimer || fired(0) {
		t.Errorf("after firing: armed at %d, fired again", c.armedAt)
	}
}

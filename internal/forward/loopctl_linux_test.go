package forward

import (
	"context"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLoopHeartbeat checks the loop's kernel timer as the UDP loop sets
// it: a loop that relayed something lately is woken by heartbeatAfter past
// its last yield, even with nothing else to wait for, so that the Go
// runtime's monitor never finds it 10 ms without a pass by the scheduler
// (and preempts it, see heartbeat); an idle one sleeps with the timer
// disarmed; the timer moves later at each yield instead of firing for
// nothing, and not at each datagram.
func TestLoopHeartbeat(t *testing.T) {
	var c loopCtl
	if err := c.open(func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	defer c.closeCtlLocked()
	armed := func() time.Duration {
		t.Helper()
		var its unix.ItimerSpec
		if err := unix.TimerfdGettime(c.timer, &its); err != nil {
			t.Fatal(err)
		}
		return time.Duration(its.Value.Nano())
	}
	ms := int64(time.Millisecond)

	// Active 1 ms ago, yielded just now (at 100 ms): due 8 ms from now.
	now := 100 * ms
	c.pass(now)
	at := c.heartbeat(now, now-ms)
	if want := now + int64(heartbeatAfter); at != want {
		t.Fatalf("heartbeat after a yield at %v = %v; want %v", time.Duration(now), time.Duration(at), time.Duration(want))
	}
	c.moveTimer(at, now)
	if d := armed(); d <= 7*time.Millisecond || d > heartbeatAfter {
		t.Fatalf("timer armed for %v; want just under %v", d, heartbeatAfter)
	}

	// A datagram just after, no yield due: the heartbeat stays put.
	if got := c.heartbeat(now+ms/2, now+ms/2); got != at {
		t.Fatalf("heartbeat after a datagram = %v; want %v still", time.Duration(got), time.Duration(at))
	}

	// Yielded again 5 ms later: the timer moves on rather than firing.
	now += int64(yieldEvery)
	c.pass(now)
	c.moveTimer(c.heartbeat(now, now), now)
	if d := armed(); d <= 7*time.Millisecond || d > heartbeatAfter {
		t.Fatalf("after the next yield, timer armed for %v; want just under %v", d, heartbeatAfter)
	}

	// An earlier deadline (a session's expiry) takes its place.
	c.moveTimer(now+2*ms, now)
	if d := armed(); d <= time.Millisecond || d > 2*time.Millisecond {
		t.Fatalf("timer armed for %v; want just under 2ms", d)
	}

	// Idle for activeFor: nothing to wake for, the timer is disarmed.
	now += int64(activeFor)
	if at := c.heartbeat(now, now-int64(activeFor)); at != noTimer {
		t.Fatalf("heartbeat of an idle loop = %v; want none", time.Duration(at))
	}
	c.moveTimer(noTimer, now)
	if d := armed(); d != 0 {
		t.Fatalf("idle loop's timer armed for %v; want disarmed", d)
	}
}

// TestUDPIdleLoopWaitsInPoller checks where an idle UDP loop waits: in
// the Go runtime's poller (see waitIdle), holding no P, from its start
// and again activeFor after its last datagram; and that it still does its
// work from there: a session's expiry (its timer), the next datagram, a
// stop.
func TestUDPIdleLoopWaitsInPoller(t *testing.T) {
	upAddr := udpBackend(t, udpEcho)
	s, lb := start(t, Rule{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{upAddr}, IdleTimeout: 400 * time.Millisecond})
	waitParked := func(when string) {
		t.Helper()
		// Bounded: activeFor (100 ms) and some, on a loaded machine.
		for end := time.Now().Add(5 * time.Second); !loopParked(); {
			if time.Now().After(end) {
				t.Fatalf("%s: no UDP loop waits in the runtime's poller; goroutines:\n%s", when, allStacks())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitParked("fresh listener")

	c, err := net.Dial("udp4", s.Addr("u").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	udpExchange(t, c, "one")
	waitParked("after a datagram")

	// The session's expiry comes by its timer while the loop is parked.
	for end := time.Now().Add(5 * time.Second); len(lb.lines()) == 0; {
		if time.Now().After(end) {
			t.Fatal("the idle session never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := lb.lines()[0]["reason"]; got != "idle" {
		t.Fatalf("session ended with reason %v; want idle", got)
	}
	udpExchange(t, c, "two")
	waitParked("after the second session")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown of a parked loop: %v", err)
	}
}

// loopParked reports whether a goroutine waits in loopCtl.waitIdle for
// the runtime's poller.
func loopParked() bool {
	for _, g := range strings.Split(allStacks(), "\n\n") {
		if strings.Contains(g, "[IO wait") && strings.Contains(g, "(*loopCtl).waitIdle") {
			return true
		}
	}
	return false
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// BenchmarkUDPIdleLoop measures what an idle UDP relay costs its process:
// each iteration relays one exchange, waits past activeFor, then counts
// the process's context switches (its threads' wake-ups) and CPU time
// over idleWindow. An idle loop waits in the runtime's poller (see
// waitIdle); asleep in epoll_wait it kept the runtime's monitor looking
// every 10 ms. Run: go test -bench UDPIdleLoop -run XXX ./internal/forward
func BenchmarkUDPIdleLoop(b *testing.B) {
	const idleWindow = 500 * time.Millisecond
	c := udpRelayClient(b)
	buf := make([]byte, 64)
	var switches int64
	var cpu time.Duration
	for range b.N {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Write(buf)
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		time.Sleep(activeFor + 50*time.Millisecond)
		s0, c0 := processSwitches(b), processCPU(b)
		time.Sleep(idleWindow)
		cpu += processCPU(b) - c0 // first: reading the switches costs CPU
		switches += processSwitches(b) - s0
	}
	idle := time.Duration(b.N) * idleWindow
	b.ReportMetric(float64(switches)/idle.Seconds(), "switches/s-idle")
	b.ReportMetric(float64(cpu.Microseconds())/idle.Seconds(), "cpu-us/s-idle")
}

// processSwitches is the number of context switches of this process's
// threads so far.
func processSwitches(tb testing.TB) int64 {
	var n int64
	eachTask(tb, "status", func(b []byte) {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "voluntary_ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	})
	return n
}

// processCPU is the CPU time this process's threads have used so far,
// from the scheduler's nanosecond counts (getrusage counts clock ticks
// here: 10 ms).
func processCPU(tb testing.TB) time.Duration {
	var t time.Duration
	eachTask(tb, "schedstat", func(b []byte) {
		if f := strings.Fields(string(b)); len(f) > 0 {
			x, _ := strconv.ParseInt(f[0], 10, 64)
			t += time.Duration(x)
		}
	})
	return t
}

// eachTask calls f with the file name of each of this process's threads.
func eachTask(tb testing.TB, name string, f func([]byte)) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		tb.Fatal(err)
	}
	for _, task := range tasks {
		if b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/" + name); err == nil {
			f(b) // else the thread ended
		}
	}
}

// TestPassKeepsSteadyLoopOnItsThread: a pinned loop's yield under steady
// traffic keeps it locked to its thread (see threadPin); a yield after
// sparse traffic goes unlocked, and the loop is pinned again after it.
// (Watched from outside, a back-to-back exchange test could not tell:
// on a loaded machine its traffic is not always steady.)
func TestPassKeepsSteadyLoopOnItsThread(t *testing.T) {
	for _, tt := range []struct {
		pinned bool
		worked int
		want   bool
	}{{true, steadyTurns, true}, {true, 100, true}, {true, steadyTurns - 1, false}, {true, 0, false}, {false, 100, false}} {
		if got := lockedYield(tt.pinned, tt.worked); got != tt.want {
			t.Errorf("lockedYield(%v, %d) = %v; want %v", tt.pinned, tt.worked, got, tt.want)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var c loopCtl
		c.pin.set(true)
		defer c.pin.set(false)
		tid := unix.Gettid()
		for i := range 50 {
			c.worked = steadyTurns
			c.pass(c.nextYield)
			if got := unix.Gettid(); got != tid || !c.pin.locked {
				t.Errorf("steady yield %d: on thread %d (locked %v); want %d, locked", i, got, c.pin.locked, tid)
				return
			}
		}
		c.worked = steadyTurns - 1
		c.pass(c.nextYield)
		if !c.pin.locked {
			t.Error("after a yield of sparse traffic: not locked again")
		}
		c.pin.set(false)
		c.pass(c.nextYield)
		if c.pin.locked {
			t.Error("an unpinned loop's yield locked it")
		}
	}()
	<-done
}

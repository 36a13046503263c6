package forward

import (
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
// nothing.
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

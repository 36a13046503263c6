package forward

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// loopCtl is what an event loop (TCP or UDP) shares with the goroutines
// that drain and stop it: its epoll set, the eventfd that wakes it, and,
// under mu, the requests and the drain calls waiting for an answer. It also
// holds the loop's clock and timer.
type loopCtl struct {
	epfd  int
	wake  int // eventfd: drain or shutdown asked
	timer int // timerfd: the loop's next timer (see setTimer)

	// The epoll set as the Go runtime's poller sees it, a duplicate of
	// epfd, made when the loop first waits idle (see waitIdle); nil
	// before, or when the runtime would not take it.
	poll   *os.File
	pollRC syscall.RawConn

	mu       sync.Mutex
	started  bool // the loop runs (or ran)
	draining bool
	stopping bool            // end everything now
	closed   bool            // epoll set and eventfd closed; wake must not be written
	acks     []chan struct{} // drain calls waiting for the loop

	t0        time.Time // the loop clock's zero, set when the loop begins
	nextYield int64     // loop clock: when the loop next passes by the scheduler
	armedAt   int64     // loop clock: when timer fires; noTimer when not armed
	pin       threadPin // the loop's thread, held while the UDP loop is active
	worked    int       // turns that relayed something since the last yield (UDP loop)
}

// noTimer is a loop clock time that never comes.
const noTimer = 1<<63 - 1

// now is the loop's clock: nanoseconds since it began.
func (c *loopCtl) now() int64 { return int64(time.Since(c.t0)) }

// yieldEvery is how often a loop passes by the Go scheduler. A loop
// goroutine never blocks in Go, only in epoll_wait, so the runtime sees
// one goroutine running for ever: every 10 ms its monitor thread asks it
// to yield (a preemption that moves it to another thread), and then
// watches at 20 us intervals for a millisecond. Yielding first, a few
// hundred nanoseconds when nothing else waits, spares all that: -15% CPU
// per short connection for a relay with a millisecond between its
// connections, -4% back to back (bench/RESULTS.md, 2026-12-07).
const yieldEvery = 5 * time.Millisecond

// steadyTurns is how many turns relaying something, since the last
// yield, make a loop's traffic steady (see pass).
const steadyTurns = 8

// pass yields to the scheduler if the loop has not for yieldEvery; now
// is the loop's clock.
func (c *loopCtl) pass(now int64) {
	if now >= c.nextYield {
		c.nextYield = now + int64(yieldEvery)
		// A locked goroutine's yield hands its P to another thread and
		// back: three wake-ups where an unlocked one makes one. Worth it
		// under steady traffic (see threadPin), not for a datagram now
		// and then: 917 against 497 us of CPU per exchange 50 ms apart.
		pinned := c.pin.locked
		c.pin.set(lockedYield(pinned, c.worked))
		c.worked = 0
		runtime.Gosched()
		c.pin.set(pinned)
	}
}

// lockedYield reports whether a loop yields locked to its thread: when it
// is pinned (active) and relayed something in steadyTurns turns since its
// last yield.
func lockedYield(pinned bool, worked int) bool { return pinned && worked >= steadyTurns }

// The runtime's monitor also preempts a loop asleep in epoll_wait once
// it has not passed by the scheduler for 10 ms: a signal that wakes the
// thread, its P taken away, and the monitor then polling at 20 us for a
// millisecond before it backs off again. A relay with a few milliseconds
// between its datagrams paid that for nearly every one: 1.4 ms of CPU
// per exchange 20 ms apart, against nginx's 0.15 (bench/RESULTS.md,
// 2026-12-07). A loop that was active lately therefore wakes by
// heartbeatAfter past its last yield and yields again; one idle for
// activeFor waits in the runtime's poller (see waitIdle), where it holds
// no P and needs no heartbeat. The window is short because a loop asleep
// in epoll_wait keeps its P, which the monitor gives other goroutines
// only when it preempts. It is not shorter because a loop woken from the
// poller wakes the sleeping monitor with its next system call, which
// then polls at 20 us for a millisecond: at 7 ms, exchanges 16-100 ms
// apart cost 1.0-1.1 ms of CPU each against 0.3-0.9 at 100 ms
// (bench/RESULTS.md, 2026-12-07 21:36). Only raw calls would leave the
// monitor asleep, and a raw wait is against the module's policy
// (internal/testenv).
const (
	heartbeatAfter = 8 * time.Millisecond
	activeFor      = 100 * time.Millisecond
)

// heartbeat returns when the loop must wake to pass by the scheduler in
// time (loop clock), or noTimer if it has been idle for activeFor;
// lastActive is when it last relayed something. The heartbeat that finds
// the loop idle sends it to the poller. (A timer at lastActive+activeFor
// would be moved by every datagram: a system call each.)
func (c *loopCtl) heartbeat(now, lastActive int64) int64 {
	if now-lastActive >= int64(activeFor) {
		return noTimer
	}
	return c.nextYield - int64(yieldEvery) + int64(heartbeatAfter)
}

// waitIdle waits for the loop's next events (as epoll_wait into events)
// in the Go runtime's poller, where the epoll set is one more descriptor:
// the goroutine parks and gives its P back, and the runtime's monitor,
// once every P is idle, sleeps. A loop asleep in epoll_wait instead
// holds its P, and the monitor never sleeps: it looked every 10 ms for
// as long as the relay was idle (~70 wake-ups a second). Should the
// runtime refuse the descriptor, the loop sleeps in epoll_wait.
func (c *loopCtl) waitIdle(events []unix.EpollEvent) (int, error) {
	if c.poll == nil && !c.openPoll() {
		return unix.EpollWait(c.epfd, events, -1)
	}
	var n int
	var werr error
	err := c.pollRC.Read(func(uintptr) bool {
		n, werr = epollNow(c.epfd, events)
		return n > 0 || werr != nil
	})
	if err != nil {
		return unix.EpollWait(c.epfd, events, -1)
	}
	return n, werr
}

// openPoll hands a duplicate of the epoll set to the runtime's poller;
// false if it would not take it.
func (c *loopCtl) openPoll() bool {
	fd, err := unix.FcntlInt(uintptr(c.epfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return false
	}
	// Non-blocking, or os.NewFile leaves it out of the poller; epoll_wait
	// itself ignores the flag.
	if unix.SetNonblock(fd, true) != nil {
		unix.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	c.poll, c.pollRC = f, rc
	return true
}

// epollNow returns the events waiting in the epoll set epfd, without
// waiting.
func epollNow(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		n, err := unix.EpollWait(epfd, events, 0)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// threadPin keeps an active UDP loop goroutine on one OS thread, and so
// its yields under steady traffic (see pass) hand the P to another thread
// and back, the loop's thread asleep meanwhile. Measured on a 2-vCPU
// guest, back to back through one client socket, against nginx in the
// same rounds (medians of 15-24 rounds, 7 sets): unlocked 0.93-1.00x,
// locked 0.98-1.05x and 3-5 points ahead of unlocked in every set,
// locked but yielding unlocked level with unlocked (bench/RESULTS.md,
// 2026-12-08). So
// the gain is the locked yield's: every 5 ms it puts the relay's thread
// to sleep and has it woken by another, which changes where the kernel
// places the exchange's later wake-ups; why that placement is better
// is not known. An idle loop waits in the runtime's poller unlocked:
// woken there, an unlocked goroutine takes any free P, where a locked
// one waits to be handed one by another thread (20% more CPU, locked for
// good, with the clients in the same process).
type threadPin struct {
	locked bool
}

// set locks the calling goroutine to its thread (on) or unlocks it, if
// not so already. Only the loop goroutine calls it.
func (p *threadPin) set(on bool) {
	if on == p.locked {
		return
	}
	p.locked = on
	if on {
		runtime.LockOSThread()
	} else {
		runtime.UnlockOSThread()
	}
}

// moveTimer arms the loop's timer for at (loop clock), earlier or later
// than it is armed, or disarms it for noTimer; now is the loop's time.
// The heartbeat moves on by a few milliseconds at each yield: one
// timerfd_settime then, where leaving the old expiry would cost the loop
// a wake-up for nothing.
func (c *loopCtl) moveTimer(at, now int64) {
	if at == c.armedAt {
		return
	}
	if at < c.armedAt {
		c.setTimer(at, now)
		return
	}
	var its unix.ItimerSpec // zero: disarmed
	if at != noTimer {
		its.Value = unix.NsecToTimespec(max(at-now, 1))
	}
	if unix.TimerfdSettime(c.timer, 0, &its, nil) == nil {
		c.armedAt = at
	}
}

// setTimer makes sure the loop wakes by at (loop clock); now is the loop's
// time, a little behind is fine: the timer then fires a little late. The
// timer is a timerfd in the epoll set, set again only when at comes before
// it, rather than a timeout of epoll_wait, which makes the kernel start and
// cancel a timer on every wait: 1-2% of a relayed UDP exchange
// (bench/RESULTS.md, 2026-12-07).
func (c *loopCtl) setTimer(at, now int64) {
	if at >= c.armedAt {
		return
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(max(at-now, 1))} // zero would disarm it
	if unix.TimerfdSettime(c.timer, 0, &its, nil) == nil {
		c.armedAt = at
	}
}

// timerFired takes the timer's expiry when the loop sees its descriptor
// readable; the next setTimer arms it again.
func (c *loopCtl) timerFired() {
	var b [8]byte
	unix.Read(c.timer, b[:])
	c.armedAt = noTimer
}

// open makes the loop's epoll set with its eventfd and timerfd in it.
// watch adds the loop's listening socket; on error all three are closed
// again (the listening socket is the caller's).
func (c *loopCtl) open(watch func(epfd int) error) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("eventfd: %w", err)
	}
	timer, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return fmt.Errorf("timerfd: %w", err)
	}
	err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)})
	if err == nil {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, timer, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(timer)})
	}
	if err == nil {
		err = watch(epfd)
	}
	if err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		unix.Close(timer)
		return fmt.Errorf("epoll add: %w", err)
	}
	c.epfd, c.wake, c.timer, c.armedAt = epfd, wake, timer, noTimer
	return nil
}

// stop asks the loop to end its connections or sessions now (Shutdown past
// its deadline).
func (c *loopCtl) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.stopping = true
		c.wakeLocked()
	}
}

// begin marks the loop as running and starts its clock; false if it was
// closed first (a drain before it started).
func (c *loopCtl) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t0 = time.Now()
	c.started = !c.closed
	return c.started
}

// drain stops the loop taking clients and returns once it has: a loop not
// running yet is closed at once with closeLocked (called with c.mu held);
// a running one is asked and answers when its listening socket no longer
// takes clients. It ends by itself when its last connection or session
// does.
func (c *loopCtl) drain(closeLocked func()) {
	c.mu.Lock()
	if c.closed || c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	if !c.started {
		closeLocked()
		c.mu.Unlock()
		return
	}
	ack := make(chan struct{})
	c.acks = append(c.acks, ack)
	c.wakeLocked()
	c.mu.Unlock()
	<-ack
}

func (c *loopCtl) wakeLocked() {
	one := [8]byte{1}
	unix.Write(c.wake, one[:]) // a full counter (EAGAIN) is a pending wake too
}

// requests reads a wake-up in the loop and takes what was asked: whether
// to drain, whether to stop now, and the drain calls to answer (appended
// to acks).
func (c *loopCtl) requests(acks []chan struct{}) (draining, stopping bool, _ []chan struct{}) {
	var b [8]byte
	unix.Read(c.wake, b[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	stopping, c.stopping = c.stopping, false
	acks = append(acks, c.acks...)
	c.acks = nil
	return c.draining, stopping, acks
}

// exit ends the loop: closeLocked runs with c.mu held and answers the
// drain calls in acks with those still waiting.
func (c *loopCtl) exit(acks []chan struct{}, closeLocked func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acks = append(c.acks, acks...)
	closeLocked()
}

// answer releases the drain calls a loop took this turn.
func answer(acks []chan struct{}) []chan struct{} {
	for _, a := range acks {
		close(a)
	}
	return acks[:0]
}

// closeCtlLocked closes the epoll set, the eventfd and the timerfd and
// answers the waiting drain calls; c.mu is held, so no wake is written to
// a closed (and maybe reused) descriptor number.
func (c *loopCtl) closeCtlLocked() {
	c.closed = true
	if c.poll != nil {
		c.poll.Close() // through the File: the poller forgets it
	}
	unix.Close(c.wake)
	unix.Close(c.timer)
	unix.Close(c.epfd)
	for _, a := range c.acks {
		close(a)
	}
	c.acks = nil
}

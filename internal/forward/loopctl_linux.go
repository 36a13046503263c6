package forward

import (
	"sync"

	"golang.org/x/sys/unix"
)

// loopCtl is what an event loop (TCP or UDP) shares with the goroutines
// that drain and stop it: its epoll set, the eventfd that wakes it, and,
// under mu, the requests and the drain calls waiting for an answer.
type loopCtl struct {
	epfd int
	wake int // eventfd: drain or shutdown asked

	mu       sync.Mutex
	started  bool // the loop runs (or ran)
	draining bool
	stopping bool            // end everything now
	closed   bool            // epoll set and eventfd closed; wake must not be written
	acks     []chan struct{} // drain calls waiting for the loop
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

// askDrain asks a running loop to drain and waits until it has stopped
// taking clients. c.mu is held on entry and released.
func (c *loopCtl) askDrain() {
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

// closeCtlLocked closes the epoll set and the eventfd and answers the
// waiting drain calls; c.mu is held, so no wake is written to a closed
// (and maybe reused) descriptor number.
func (c *loopCtl) closeCtlLocked() {
	c.closed = true
	unix.Close(c.wake)
	unix.Close(c.epfd)
	for _, a := range c.acks {
		close(a)
	}
	c.acks = nil
}

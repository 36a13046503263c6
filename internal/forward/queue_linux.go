package forward

import (
	"log/slog"
	"sync/atomic"
)

// queueSupported: the event loop holds waiting clients.
const queueSupported = true

// queuedConn is an accepted client waiting in its loop for a slot.
type queuedConn struct {
	waiter
	l        *tcpLoop
	c        *loopConn
	deadline int64       // loop clock
	done     atomic.Bool // the loop reset it (timeout, stop): a late grant is ignored
}

// loopQueue is a loop's waiting clients. All but granted belong to the
// loop goroutine; granted is guarded by the loop's mu.
type loopQueue struct {
	waiting map[*queuedConn]struct{}
	next    int64 // loop clock: the earliest deadline among waiting
	granted []*queuedConn
}

// admit takes a slot for c on a rule with a queue, or queues c; false
// when c does not go on now (queued, or reset and logged).
func (l *tcpLoop) admit(c *loopConn, now int64) bool {
	rs := c.rs
	st := rs.stats
	q := &queuedConn{l: l, c: c, deadline: now + int64(rs.QueueTimeout)}
	q.waiter = waiter{src: c.client.Addr(), rs: rs, grant: q.granted}
	switch st.acquireOrQueue(&q.waiter) {
	case queueAcquired:
		return true
	case queueFull:
		resetFD(c.cfd)
		l.s.logLoopConn(c, slog.LevelWarn, "queue full")
		return false
	case queueLimited:
		st.limited.Add(1)
		resetFD(c.cfd)
		l.s.logLoopConn(c, slog.LevelWarn, "limit")
		return false
	}
	// Counted as a connection from now on: Shutdown waits for it too.
	l.s.wg.Add(1)
	if l.queue.waiting == nil {
		l.queue.waiting = map[*queuedConn]struct{}{}
	}
	if len(l.queue.waiting) == 0 || q.deadline < l.queue.next {
		l.queue.next = q.deadline
	}
	l.queue.waiting[q] = struct{}{}
	return false
}

// granted is called by whoever freed the slot q now holds: the loop
// starts it on its next turn.
func (q *queuedConn) granted() {
	l := q.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return // the loop ended all its clients first (see dropWaiting)
	}
	l.queue.granted = append(l.queue.granted, q)
	l.wakeLocked()
}

// serveGranted connects the clients that were handed a slot.
func (l *tcpLoop) serveGranted(now int64) {
	l.mu.Lock()
	granted := l.queue.granted
	l.queue.granted = nil
	l.mu.Unlock()
	for _, q := range granted {
		if q.done.Load() {
			continue
		}
		q.done.Store(true)
		delete(l.queue.waiting, q)
		l.startConn(q.c, now, true)
	}
}

// expireWaiting resets the clients whose queue time is up.
func (l *tcpLoop) expireWaiting(now int64) {
	next := int64(noTimer)
	for q := range l.queue.waiting {
		if q.deadline > now {
			next = min(next, q.deadline)
			continue
		}
		if !q.c.rs.stats.leave(&q.waiter) {
			continue // handed a slot just now: served on the next turn
		}
		q.c.rs.stats.queue.timedOut.Add(1)
		l.endWaiting(q, "queue timeout")
	}
	l.queue.next = next
}

// dropWaiting resets every waiting client (the server stops now).
func (l *tcpLoop) dropWaiting(reason string) {
	for q := range l.queue.waiting {
		if !q.c.rs.stats.leave(&q.waiter) {
			// It holds a slot already: give it back.
			q.c.rs.stats.release(q.c.client.Addr(), q.c.rs.MaxConnsPerSource > 0)
		}
		l.endWaiting(q, reason)
	}
}

func (l *tcpLoop) endWaiting(q *queuedConn, reason string) {
	q.done.Store(true)
	delete(l.queue.waiting, q)
	resetFD(q.c.cfd)
	l.s.logLoopConn(q.c, slog.LevelWarn, reason)
	l.s.wg.Done()
}

package forward

import (
	qlist "container/list"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Connection queueing over max-conns, as HAProxy's maxconn does: with a
// queue timeout, a client over the limit is accepted but not connected to
// a target; it waits, oldest first, for a connection to end and hand its
// slot over, and gets a reset when the queue is full or its time is up.

// queueLen is the longest queue of a rule: Queue, or MaxConns when zero.
func (r *Rule) queueLen() int {
	if r.Queue > 0 {
		return r.Queue
	}
	return r.MaxConns
}

// validateQueue checks the queue fields; errors name the field.
func (r *Rule) validateQueue() error {
	switch {
	case r.QueueTimeout < 0:
		return errors.New("queue-timeout: must not be negative")
	case r.Queue < 0:
		return errors.New("queue: must not be negative")
	case r.QueueTimeout == 0 && r.Queue > 0:
		return errors.New("queue: needs queue-timeout (how long a client may wait)")
	case r.QueueTimeout == 0:
		return nil
	case r.MaxConns == 0:
		return errors.New("queue-timeout: needs max-conns (clients wait for one of its slots)")
	case r.Proto == UDP:
		return errors.New("queue-timeout: only for tcp rules")
	case len(r.TrustedProxies) > 0:
		return errors.New("queue-timeout: not with accept-proxy")
	case len(r.SNI) > 0:
		return errors.New("queue-timeout: not with SNI routes")
	case !queueSupported:
		return errors.New("queue-timeout: needs the event loop relay (Linux)")
	}
	return nil
}

// waiter is a client waiting in a rule's queue.
type waiter struct {
	src     netip.Addr
	rs      *ruleState
	elem    *qlist.Element
	granted bool   // a slot was handed over (under slotQueue.mu)
	grant   func() // tells the waiter's loop; called without locks held
}

// slotQueue holds a rule's waiting clients, oldest first.
type slotQueue struct {
	mu       sync.Mutex
	waiting  qlist.List
	n        atomic.Int64 // waiting clients: the gauge, and release's fast check
	full     atomic.Uint64
	timedOut atomic.Uint64
}

// queueResult is what became of a client over the limit.
type queueResult uint8

const (
	queueAcquired queueResult = iota // a slot was free after all
	queueWaiting                     // in the queue
	queueFull                        // the queue is full: reset
	queueLimited                     // its source is at max-conns-per-source: reset
)

// acquireOrQueue takes a slot for w, or queues w when the rule is at
// max-conns and its queue has room. A client arriving while others wait
// queues behind them even if a slot just freed: oldest first.
func (s *ruleStats) acquireOrQueue(w *waiter) queueResult {
	r := &w.rs.Rule
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting.Len() == 0 && s.acquire(w.src, r.MaxConns, r.MaxConnsPerSource) {
		return queueAcquired
	}
	if r.MaxConnsPerSource > 0 {
		s.mu.Lock()
		over := s.perSrc[w.src] >= r.MaxConnsPerSource
		s.mu.Unlock()
		if over {
			return queueLimited
		}
	}
	if q.waiting.Len() >= r.queueLen() {
		q.full.Add(1)
		return queueFull
	}
	w.elem = q.waiting.PushBack(w)
	q.n.Add(1)
	// A release that ran before the line above saw no one waiting and
	// freed its slot: take it now (see serve).
	if q.waiting.Front() == w.elem && s.acquire(w.src, r.MaxConns, 0) {
		q.waiting.Remove(w.elem)
		q.n.Add(-1)
		s.countSource(w)
		return queueAcquired
	}
	return queueWaiting
}

// serve hands freed slots to the oldest waiters. release calls it after
// freeing its slot, so that either it sees a waiter that has just queued
// or that waiter's own retry sees the free slot.
func (s *ruleStats) serve() {
	q := &s.queue
	var grants []*waiter
	q.mu.Lock()
	for e := q.waiting.Front(); e != nil; e = q.waiting.Front() {
		w := e.Value.(*waiter)
		// The per-source limit was checked when the client came.
		if !s.acquire(w.src, w.rs.MaxConns, 0) {
			break
		}
		s.countSource(w)
		q.waiting.Remove(e)
		q.n.Add(-1)
		w.granted = true
		grants = append(grants, w)
	}
	q.mu.Unlock()
	for _, w := range grants {
		w.grant()
	}
}

// countSource counts a slot handed to w against its source.
func (s *ruleStats) countSource(w *waiter) {
	if w.rs.MaxConnsPerSource > 0 {
		s.mu.Lock()
		s.perSrc[w.src]++
		s.mu.Unlock()
	}
}

// leave takes w out of the queue (timed out, or the server stops); false
// if a slot was handed to it meanwhile.
func (s *ruleStats) leave(w *waiter) bool {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted {
		return false
	}
	q.waiting.Remove(w.elem)
	q.n.Add(-1)
	return true
}

var descQueue = prometheus.NewDesc("portolan_forward_queue_waiting", "Clients over max-conns waiting for a slot (queue-timeout).", ruleLabels, nil)

// collectQueue sends a TCP rule's queue gauge and its rejections.
func (s *ruleStats) collectQueue(ch chan<- prometheus.Metric, rule, proto string) {
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.queue.n.Load()), rule, proto)
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(s.queue.full.Load()), rule, proto, "queue_full")
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(s.queue.timedOut.Load()), rule, proto, "queue_timeout")
}

package scan

import "sync"

// inbox collects replies from the prober's goroutines for the scheduler,
// which takes them in batches. report never blocks, so a prober may report
// from inside Send.
type inbox struct {
	mu     sync.Mutex
	buf    []Reply
	signal chan struct{} // capacity 1: "something arrived"
}

func (in *inbox) report(r Reply) {
	in.mu.Lock()
	in.buf = append(in.buf, r)
	in.mu.Unlock()
	select {
	case in.signal <- struct{}{}:
	default:
	}
}

// take swaps the pending replies for spare, whose contents it drops.
func (in *inbox) take(spare []Reply) []Reply {
	in.mu.Lock()
	got := in.buf
	in.buf = spare[:0]
	in.mu.Unlock()
	return got
}

// deque is a ring-buffer double-ended queue of probes.
type deque struct {
	buf        []*probe
	head, size int
}

func (q *deque) len() int { return q.size }

func (q *deque) grow() {
	if q.size < len(q.buf) {
		return
	}
	nb := make([]*probe, max(16, 2*len(q.buf)))
	for i := range q.size {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

func (q *deque) pushBack(p *probe) {
	q.grow()
	q.buf[(q.head+q.size)%len(q.buf)] = p
	q.size++
}

func (q *deque) pushFront(p *probe) {
	q.grow()
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = p
	q.size++
}

func (q *deque) popFront() *probe {
	p := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return p
}

// probeHeap orders probes in flight by deadline; each probe knows its index
// so a reply removes it in O(log n).
type probeHeap []*probe

func (h probeHeap) less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }

func (h probeHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx = i
	h[j].hidx = j
}

func (h *probeHeap) push(p *probe) {
	p.hidx = len(*h)
	*h = append(*h, p)
	h.up(p.hidx)
}

func (h *probeHeap) remove(p *probe) {
	i, last := p.hidx, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	if i != last {
		h.fixAt(i)
	}
	p.hidx = -1
}

func (h probeHeap) fix(p *probe) { h.fixAt(p.hidx) }

func (h probeHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h probeHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts i towards the leaves and reports whether it moved.
func (h probeHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

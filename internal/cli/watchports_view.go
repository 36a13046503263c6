package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"portolan/internal/output"
	"portolan/internal/watch"
)

// portsView is the live terminal view of `portolan watch`: totals, the
// top sources and ports, and the latest detections and blocks, redrawn
// in place. Events reach it over a bounded channel (dropped, counted,
// when the view falls behind).
type portsView struct {
	color   bool
	ch      chan watch.Event
	dropped atomic.Uint64

	mu       sync.Mutex
	sources  map[netip.Addr]*viewSource
	ports    map[string]uint64
	recent   []watch.Event // detections and blocks, newest last
	attempts uint64
	start    time.Time
}

type viewSource struct {
	attempts uint64
	ports    map[uint32]struct{} // distinct, capped
	last     time.Time
	blocked  string
}

const viewRecent = 8

func newPortsView(color bool) *portsView {
	return &portsView{color: color, ch: make(chan watch.Event, 65536), sources: map[netip.Addr]*viewSource{}, ports: map[string]uint64{}, start: time.Now()}
}

func (v *portsView) add(e watch.Event) {
	select {
	case v.ch <- e:
	default:
		v.dropped.Add(1)
	}
}

func (v *portsView) take(e watch.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch e.Type {
	case watch.TypeAttempt:
		v.attempts++
		s := v.sources[e.Src]
		if s == nil {
			if len(v.sources) > 100_000 {
				return // the view is a summary; the store has the rest
			}
			s = &viewSource{ports: map[uint32]struct{}{}}
			v.sources[e.Src] = s
		}
		s.attempts++
		s.last = e.Time
		if len(s.ports) < 65536 {
			s.ports[uint32(e.Proto)<<16|uint32(e.Port)] = struct{}{}
		}
		if e.Kind == watch.KindEcho {
			v.ports["echo"]++
		} else {
			v.ports[strconv.Itoa(int(e.Port))+"/"+e.Proto.String()]++
		}
	default:
		v.recent = append(v.recent, e)
		if len(v.recent) > viewRecent {
			v.recent = v.recent[len(v.recent)-viewRecent:]
		}
		if e.Type == watch.TypeBlock {
			for a, s := range v.sources {
				if e.Source.Contains(a) {
					s.blocked = e.Action
				}
			}
		}
	}
}

func (v *portsView) run(ctx context.Context, out io.Writer, every time.Duration, w *watch.Watcher) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-v.ch:
			v.take(e)
		case <-tick.C:
			var b bytes.Buffer
			b.WriteString("\x1b[H\x1b[2J")
			v.draw(&b, w.Stats(), time.Now())
			if _, err := out.Write(b.Bytes()); err != nil {
				return
			}
		}
	}
}

// draw writes one screen.
func (v *portsView) draw(b *bytes.Buffer, st watch.Stats, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(b, "%s  portolan watch, up %s (Ctrl-C ends)\n", now.Format("15:04:05"), now.Sub(v.start).Round(time.Second))
	fmt.Fprintf(b, "attempts %d  detections %d  blocks %d  never-block %d  kernel drops %d (rate limit %d, socket %d)\n\n",
		st.Attempts, st.Detections, st.Blocks, st.Refused, st.RateLimited+st.SocketLost, st.RateLimited, st.SocketLost)

	srcs := make([]netip.Addr, 0, len(v.sources))
	for a := range v.sources {
		srcs = append(srcs, a)
	}
	slices.SortFunc(srcs, func(a, c netip.Addr) int {
		return cmp.Or(cmp.Compare(v.sources[c].attempts, v.sources[a].attempts), a.Compare(c))
	})
	t := output.Table{Header: []string{"SOURCE", "ATTEMPTS", "PORTS", "LAST", "STATUS"}, RightAlign: []int{1, 2}}
	for _, a := range srcs[:min(len(srcs), 10)] {
		s := v.sources[a]
		t.Add(a.String(), strconv.FormatUint(s.attempts, 10), strconv.Itoa(len(s.ports)), s.last.Format("15:04:05"), s.blocked)
	}
	t.Write(b, v.color)
	b.WriteByte('\n')

	ports := make([]string, 0, len(v.ports))
	for p := range v.ports {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, func(a, c string) int { return cmp.Or(cmp.Compare(v.ports[c], v.ports[a]), cmp.Compare(a, c)) })
	pt := output.Table{Header: []string{"PORT", "ATTEMPTS"}, RightAlign: []int{1}}
	for _, p := range ports[:min(len(ports), 10)] {
		pt.Add(p, strconv.FormatUint(v.ports[p], 10))
	}
	pt.Write(b, v.color)
	b.WriteByte('\n')

	if len(v.recent) > 0 {
		b.WriteString("recent detections and blocks:\n")
		var line []byte
		for _, e := range v.recent {
			line = appendEventLine(line[:0], e)
			b.Write(line)
		}
	}
}

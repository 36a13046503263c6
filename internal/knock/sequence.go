package knock

import (
	"net/netip"
	"time"
)

// tracker follows each source's progress through each door's sequence.
// It is not safe for concurrent use.
type tracker struct {
	doors []Door
	state map[trackKey]*progress
	max   int // sources x doors tracked at most; beyond, new ones are ignored
}

type trackKey struct {
	src  netip.Addr
	door int
}

type progress struct {
	stage     int       // knocks matched so far
	deadline  time.Time // the next knock must come before
	last      DoorPort  // the last knock matched, and its source port:
	lastSport uint16    // the same again is a retransmission or duplicate
}

func newTracker(doors []Door, max int) *tracker {
	return &tracker{doors: doors, state: map[trackKey]*progress{}, max: max}
}

// knock takes one knock from src (its source port sport) at now and
// returns the indexes of the doors it completes. A knock that is not the
// next of a door's sequence resets that door's progress, unless it repeats
// the last knock from the same source port (a retransmitted SYN, a
// duplicated datagram) or starts the sequence over.
func (t *tracker) knock(now time.Time, src netip.Addr, sport uint16, k DoorPort) (opened []int, full bool) {
	for i := range t.doors {
		seq := t.doors[i].Sequence
		if len(seq) == 0 {
			continue
		}
		key := trackKey{src, i}
		p := t.state[key]
		if p != nil && !now.Before(p.deadline) {
			delete(t.state, key)
			p = nil
		}
		stage := 0
		if p != nil {
			if k == p.last && sport == p.lastSport {
				continue
			}
			stage = p.stage
		}
		switch {
		case k == seq[stage]:
			stage++
		case k == seq[0]:
			stage = 1
		default:
			delete(t.state, key)
			continue
		}
		if stage == len(seq) {
			delete(t.state, key)
			opened = append(opened, i)
			continue
		}
		if p == nil {
			if len(t.state) >= t.max {
				t.sweep(now)
				if len(t.state) >= t.max {
					full = true
					continue
				}
			}
			p = &progress{}
			t.state[key] = p
		}
		*p = progress{stage: stage, deadline: now.Add(t.doors[i].stageTimeout()), last: k, lastSport: sport}
	}
	return opened, full
}

// forget drops every source's progress through door i, whose sequence
// changed.
func (t *tracker) forget(i int) {
	for k := range t.state {
		if k.door == i {
			delete(t.state, k)
		}
	}
}

// sweep forgets progress that timed out.
func (t *tracker) sweep(now time.Time) {
	for k, p := range t.state {
		if !now.Before(p.deadline) {
			delete(t.state, k)
		}
	}
}

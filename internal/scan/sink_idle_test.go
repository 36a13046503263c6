package scan

import (
	"context"
	"net/netip"
	"testing"

	"portolan/internal/portspec"
)

// idleSink is a recordSink that gathers: it notes each Idle, and what it
// had been given by then.
type idleSink struct {
	recordSink
	idleAt []int
}

func (s *idleSink) Idle(context.Context) error {
	s.idleAt = append(s.idleAt, s.n)
	return nil
}

// TestSinkWriterIdle: a sink that gathers is told when nothing more is
// queued, and last after everything it was given, so nothing gathered
// waits past the scan.
func TestSinkWriterIdle(t *testing.T) {
	sink := &idleSink{}
	w := NewSinkWriter(context.Background(), sink, nil)
	a := netip.MustParseAddr("127.0.0.1")
	n := 3*sinkBatch + 5
	for i := range n {
		w.Add(Result{Addr: a, Port: portspec.Port(i%65535 + 1), Proto: portspec.TCP, State: Closed})
	}
	w.Checkpoint(uint64(n), Totals{Probes: uint64(n)})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(sink.idleAt) == 0 || sink.idleAt[len(sink.idleAt)-1] != n {
		t.Errorf("Idle called with %v results given; want last with all %d", sink.idleAt, n)
	}
}

package scan

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"portolan/internal/portspec"
)

// recordSink keeps what a SinkWriter hands it, in order.
type recordSink struct {
	events []string
	n      int
	fail   error
}

func (s *recordSink) AddResults(_ context.Context, rs []Result) error {
	s.n += len(rs)
	return s.fail
}

func (s *recordSink) Checkpoint(_ context.Context, pos uint64, t Totals) error {
	s.events = append(s.events, "checkpoint")
	if t.Probes != uint64(s.n) {
		s.events = append(s.events, "checkpoint before its results")
	}
	return nil
}

// TestSinkWriter: results reach the sink before the checkpoint that
// covers them, in batches, and the first error stops the scan once.
func TestSinkWriter(t *testing.T) {
	sink := &recordSink{}
	w := NewSinkWriter(context.Background(), sink, nil)
	var tally Tally
	a := netip.MustParseAddr("127.0.0.1")
	for i := range 10000 {
		r := Result{Addr: a, Port: portspec.Port(i%65535 + 1), Proto: portspec.TCP, State: Closed}
		tally.Add(r)
		w.Add(r)
		if i%3000 == 0 {
			w.Checkpoint(uint64(i+1), tally.Totals)
		}
	}
	w.Checkpoint(10000, tally.Totals)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if sink.n != 10000 || len(sink.events) != 5 || tally.HostsUp != 1 || tally.Closed != 10000 {
		t.Errorf("sink got %d results, events %v, tally %+v; want 10000, 5 checkpoints in order, 1 host up", sink.n, sink.events, tally.Totals)
	}

	failed := 0
	bad := &recordSink{fail: errors.New("disk full")}
	w = NewSinkWriter(context.Background(), bad, func() { failed++ })
	for range 3 * sinkBatch {
		w.Add(Result{Addr: a, Port: 1, Proto: portspec.TCP, State: Closed})
	}
	if err := w.Close(); err == nil || failed != 1 {
		t.Errorf("failing sink: Close = %v, failed called %d times; want the error, once", err, failed)
	}
}

// sizeSink records the size of each batch.
type sizeSink struct{ sizes []int }

func (s *sizeSink) AddResults(_ context.Context, rs []Result) error {
	s.sizes = append(s.sizes, len(rs))
	return nil
}

func (s *sizeSink) Checkpoint(context.Context, uint64, Totals) error { return nil }

// TestSinkWriterShortLastBatch: told how many results come, the writer
// hands over the batch before the last early, so that the scan's end
// waits for a short write; a count that is off only changes the split.
func TestSinkWriterShortLastBatch(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		expect, n int
		want      []int
	}{
		{0, 65535, []int{sinkBatch, sinkBatch, sinkBatch, sinkBatch - 1}},
		{65535, 65535, []int{sinkBatch, sinkBatch, sinkBatch, sinkBatch - 1 - tailBatch, tailBatch}},
		{sinkBatch + 100, sinkBatch + 100, []int{sinkBatch + 100 - tailBatch, tailBatch}},
		{tailBatch + 10, tailBatch + 10, []int{tailBatch + 10}}, // not split into 10 and the rest
		{1000, 1000, []int{1000}},
		{65535, 70000, []int{sinkBatch, sinkBatch, sinkBatch, sinkBatch - 1 - tailBatch, 70000 - (4*sinkBatch - 1 - tailBatch)}},
		{65535, 60000, []int{sinkBatch, sinkBatch, sinkBatch, 60000 - 3*sinkBatch}},
	} {
		sink := &sizeSink{}
		w := NewSinkWriter(context.Background(), sink, nil)
		w.Expect(uint64(tt.expect))
		for i := range tt.n {
			w.Add(Result{Addr: a, Port: portspec.Port(i%65535 + 1), Proto: portspec.TCP, State: Closed})
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sink.sizes, tt.want) {
			t.Errorf("expect %d, %d results: batches %v; want %v", tt.expect, tt.n, sink.sizes, tt.want)
		}
	}
}

func TestProberByName(t *testing.T) {
	if p, err := ProberByName("connect", ProberOptions{}); err != nil || p != (ConnectProber{}) {
		t.Errorf("ProberByName(connect) = %v, %v", p, err)
	}
	if p, err := ProberByName("syn", ProberOptions{}); err != nil || p != (SYNProber{}) {
		t.Errorf("ProberByName(syn) = %v, %v", p, err)
	}
	l := Local{Iface: "eth1", Addr: netip.MustParseAddr("198.18.0.2"), Port: 53}
	if p, err := ProberByName("syn", ProberOptions{Local: l, MinRate: 5000}); err != nil || p != (SYNProber{Local: l, MinRate: 5000}) {
		t.Errorf("ProberByName(syn, %v) = %v, %v", l, p, err)
	}
	if p, err := ProberByName("udp", ProberOptions{Local: l}); err != nil || p.(UDPProber).Local != l {
		t.Errorf("ProberByName(udp, %v) = %v, %v", l, p, err)
	}
	if _, err := ProberByName("xmas", ProberOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ProberByName(xmas) = %v; want ErrUnsupported", err)
	}
}

func TestScannerResults(t *testing.T) {
	for _, tt := range []struct {
		shard   Shard
		startAt uint64
		want    uint64
	}{
		{Shard{}, 0, 65535},
		{Shard{}, 60000, 5535},
		{Shard{Index: 1, Count: 2}, 0, 32767},
		{Shard{Index: 2, Count: 2}, 0, 32768},
		{Shard{Index: 2, Count: 2}, 65000, 535},
		{Shard{Index: 2, Count: 2}, 100, 32768}, // outside the shard: the run refuses it
		{Shard{Index: 3, Count: 2}, 0, 0},
	} {
		s := Scanner{Shard: tt.shard, StartAt: tt.startAt}
		if got := s.Results(portsSpace(65535)); got != tt.want {
			t.Errorf("shard %v from %d: %d results; want %d", tt.shard, tt.startAt, got, tt.want)
		}
	}
}

package scanjob

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
	"portolan/internal/target"
	"portolan/internal/testenv"
)

const loopbackHost = "127.0.59.1"

// loopbackJob is a connect scan of 127.0.59.1 over 200 ports, one of them a
// listener, recorded as a running scan in a new SQLite store. The address
// is the test's own and the range lies below the ephemeral one, where no
// other test's listener on a kernel-chosen port (also on the wildcard
// address) can show up open.
func loopbackJob(t *testing.T) (*store.Store, store.ScanInfo, Recipe, *target.Space, portspec.Port) {
	t.Helper()
	ln, err := net.Listen("tcp4", loopbackHost+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testenv.Serve(ln, nil)
	open := portspec.Port(ln.Addr().(*net.TCPAddr).Port)
	r := Recipe{Targets: []string{loopbackHost}, Ports: "32500-32698", Prober: "connect", AssumeUp: true, Seed: 5}
	ports, err := r.PortSet(portspec.Parser{})
	if err != nil {
		t.Fatal(err)
	}
	ports.Add(portspec.TCP, open)
	hosts, err := target.Parse(t.Context(), r.Targets, nil, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := target.NewSpace(hosts, ports)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "scans.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	si := store.ScanInfo{Started: time.Now(), Status: store.Running, Targets: loopbackHost, Ports: r.PortText(), PortSet: ports,
		Prober: r.Prober, Seed: r.Seed, Hosts: 1, Space: sp.Size(), Options: b}
	if si.ID, err = st.CreateScan(t.Context(), si); err != nil {
		t.Fatal(err)
	}
	return st, si, r, sp, open
}

// TestJobIntoStore runs a job into the store: every port is stored, the
// scan is done with its counts, and OnResult saw every result.
func TestJobIntoStore(t *testing.T) {
	st, si, r, sp, open := loopbackJob(t)
	s, err := r.Scanner()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	j := &Job{Scanner: s, Space: sp, Sink: st.Buffered(si), OnResult: func(scan.Result) error { seen++; return nil }}
	o := j.Run(t.Context())
	if o.Err != nil || o.SinkErr != nil || o.OutputErr != nil || o.Status != store.Done {
		t.Fatalf("Run = %+v", o)
	}
	got, err := st.Scan(t.Context(), si.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.Done || got.Checkpoint != sp.Size() || got.Counts.Probes != sp.Size() || got.Counts.Open != 1 {
		t.Errorf("stored scan: status %s, checkpoint %d, counts %+v; want done, %d probes, 1 open", got.Status, got.Checkpoint, got.Counts, sp.Size())
	}
	rs, err := st.Results(t.Context(), si.ID, store.Filter{States: []scan.State{scan.Open}})
	if err != nil || len(rs) != 1 || rs[0].Port != open {
		t.Errorf("stored open ports: %v, %v; want only %d", rs, err, open)
	}
	if seen != int(sp.Size()) {
		t.Errorf("OnResult saw %d results; want %d", seen, sp.Size())
	}
}

// TestJobStopsOnOutputError: an output that fails stops the run, which
// ends failed (not interrupted), with its results so far kept for a resume.
func TestJobStopsOnOutputError(t *testing.T) {
	st, si, r, sp, _ := loopbackJob(t)
	s, err := r.Scanner()
	if err != nil {
		t.Fatal(err)
	}
	full := errors.New("no space left")
	n := 0
	j := &Job{Scanner: s, Space: sp, Sink: st.Buffered(si), OnResult: func(scan.Result) error {
		if n++; n == 20 {
			return full
		}
		return nil
	}}
	o := j.Run(t.Context())
	if o.Status != store.Failed || !errors.Is(o.OutputErr, full) || o.SinkErr != nil {
		t.Fatalf("Run = status %s, output error %v, sink error %v; want failed with %v", o.Status, o.OutputErr, o.SinkErr, full)
	}
	got, err := st.Scan(t.Context(), si.ID)
	if err != nil {
		t.Fatal(err)
	}
	// On loopback the engine may have sent every probe before it saw the
	// stop: the checkpoint is then the end, and the scan failed all the same.
	if got.Status != store.Failed || got.Checkpoint != o.Summary.Checkpoint {
		t.Errorf("stored scan: %s at %d; want failed at the run's checkpoint %d", got.Status, got.Checkpoint, o.Summary.Checkpoint)
	}
}

// TestJobInterrupted: a cancelled job ends interrupted, checkpointed; a
// second job from the checkpoint (as --resume) completes the scan.
func TestJobInterrupted(t *testing.T) {
	st, si, r, sp, _ := loopbackJob(t)
	s, err := r.Scanner()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	j := &Job{Scanner: s, Space: sp, Sink: st.Buffered(si), OnResult: func(scan.Result) error {
		if n++; n == 50 {
			cancel()
		}
		return nil
	}}
	o := j.Run(ctx)
	if o.Status != store.Interrupted || o.SinkErr != nil {
		t.Fatalf("Run after a cancel = %+v; want interrupted", o)
	}
	si, err = st.ResumeScan(t.Context(), si.ID)
	if err != nil {
		t.Fatal(err)
	}
	var tally scan.Tally
	for res, err := range st.ResultsSeq(t.Context(), si.ID, store.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		tally.Add(res)
	}
	s, _ = r.Scanner()
	s.StartAt = si.Checkpoint
	o = (&Job{Scanner: s, Space: sp, Sink: st.Buffered(si), Tally: &tally}).Run(t.Context())
	if o.Status != store.Done {
		t.Fatalf("resumed Run = %+v; want done", o)
	}
	got, err := st.Scan(t.Context(), si.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.Done || got.Counts.Probes != sp.Size() || got.Counts.Open != 1 {
		t.Errorf("resumed scan: %s, counts %+v; want done, %d probes, 1 open", got.Status, got.Counts, sp.Size())
	}
}

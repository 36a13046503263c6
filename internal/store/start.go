package store

import (
	"context"
	"time"
)

// Starting is a scan being recorded while it already runs: the store opens
// and the scan's row is created in the background, so the first probe does
// not wait for the database (a PostgreSQL connection costs a new server
// process and its catalog reads; a SQLite file, its WAL's first syncs).
// Results wait in its sink meanwhile. A store that fails to open fails the
// sink, which stops the scan, as a store that fails later does.
type Starting struct {
	done chan struct{}
	s    *Store
	si   ScanInfo
	err  error
}

// StartScan opens a store with open and records si in it as CreateScan
// does, in the background. It goes on after ctx is cancelled: a scan
// interrupted at once is still recorded, and resumable.
func StartScan(ctx context.Context, open func(context.Context) (*Store, error), si ScanInfo) *Starting {
	st := &Starting{done: make(chan struct{}), si: si}
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(st.done)
		s, err := open(ctx)
		if err != nil {
			st.err = err
			return
		}
		id, err := s.CreateScan(ctx, si)
		if err != nil {
			s.Close()
			st.err = err
			return
		}
		st.s, st.si.ID = s, id
	}()
	return st
}

// Wait returns the open store and the recorded scan, with its ID, or why
// either failed. The caller closes the store.
func (st *Starting) Wait() (*Store, ScanInfo, error) {
	<-st.done
	return st.s, st.si, st.err
}

// ready reports whether Wait would return at once.
func (st *Starting) ready() bool {
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

// Buffered returns the scan's sink (see Store.Buffered). Until the store is
// open it gathers results, up to its MaxBuffered, then waits for it.
func (st *Starting) Buffered() *Buffered {
	return &Buffered{start: st, cpAt: time.Now()}
}

// opened reports whether b's store is open, waiting for it when wait is
// set. A store that failed to open is b's fatal error.
func (b *Buffered) opened(wait bool) bool {
	if b.s != nil {
		return true
	}
	if b.fatal != nil || (!wait && !b.start.ready()) {
		return false
	}
	s, si, err := b.start.Wait()
	if err != nil {
		b.fatal = err
		return false
	}
	b.s, b.si = s, si
	return true
}

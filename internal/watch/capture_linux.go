package watch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"portolan/internal/nflog"
)

// Running is a capture whose NFLOG group is bound and whose rules are
// installed: Serve reads it, Close takes the rules out.
type Running struct {
	c *Capture
	r *nflog.Reader
	w *Watcher
}

// Start binds the NFLOG group, then installs the rules (in that order,
// so no attempt is logged to nobody), for w's attempts. QueueThreshold
// is passed to the NFLOG group: 1 delivers each attempt at once; more
// batches them (less work per attempt at high rates) for at most
// FlushTimeout.
func (c *Capture) Start(ctx context.Context, w *Watcher, queueThreshold uint32, flush time.Duration) (*Running, error) {
	r, err := nflog.Open(ctx, nflog.Config{Group: c.group(), NetNS: c.NetNS, CopyRange: snaplen, QueueThreshold: queueThreshold, FlushTimeout: flush, ReadBuffer: 16 << 20, Batch: 64})
	if err != nil {
		return nil, err
	}
	if err := c.Install(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return &Running{c: c, r: r, w: w}, nil
}

// Sync reads the kernel's counters and the reader's losses into the
// watcher's.
func (rn *Running) Sync(ctx context.Context) error {
	rn.w.socketLost.Store(rn.r.Stats().Lost)
	cs, err := rn.c.Counters(ctx)
	if err != nil {
		return err
	}
	rn.w.rateDrops.Store(cs.RateLimited)
	rn.w.banDrops.Store(cs.BannedPackets)
	return nil
}

// ReaderStats are the NFLOG reader's counts (losses, overruns,
// malformed and truncated messages).
func (rn *Running) ReaderStats() nflog.Stats { return rn.r.Stats() }

// Serve hands every captured attempt to the watcher until ctx ends, and
// syncs the counters once a second. It returns nil when ctx ends.
func (rn *Running) Serve(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := rn.Sync(ctx); err != nil && ctx.Err() == nil {
					rn.w.log().Warn("read watch counters", "err", err)
				}
			}
		}
	}()
	pkts := make([]nflog.Packet, 64)
	for {
		n, err := rn.r.Read(ctx, pkts)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		for i := range pkts[:n] {
			p := &pkts[i]
			a, err := Decode(p.Payload)
			if err != nil {
				rn.w.decodeErrs.Add(1)
				continue
			}
			a.Time = p.Timestamp
			if a.Time.IsZero() {
				a.Time = now
			}
			rn.w.Handle(ctx, a)
		}
		rn.w.socketLost.Store(rn.r.Stats().Lost)
	}
}

// Close syncs the counters a last time, removes the rules (lifting the
// bans) and unbinds the group.
func (rn *Running) Close(ctx context.Context) error {
	serr := rn.Sync(ctx)
	err := rn.c.Remove(ctx)
	if cerr := rn.r.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close nflog: %w", cerr))
	}
	if err == nil && serr != nil {
		rn.w.log().Debug("last counter read", "err", serr)
	}
	return err
}

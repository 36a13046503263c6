package watch

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// Listening knows which ports something listens on, from the socket
// table of a namespace, re-read every Interval, so that --closed-only
// can keep the attempts to ports nobody serves (a scanner's, nearly
// all) and leave out a client reaching a service.
type Listening struct {
	// Netns is the namespace whose sockets count (a name under
	// /run/netns or a path); empty: this process's.
	Netns string
	// Interval between re-reads. 0: 1s.
	Interval time.Duration
	Logger   *slog.Logger

	ports atomic.Pointer[portspec.Set]
}

// Refresh reads the socket table now.
func (l *Listening) Refresh(ctx context.Context) error {
	tab := sockets.Table{Netns: l.Netns}
	socks, err := tab.List(ctx, sockets.Query{States: sockets.States(sockets.Listen, sockets.Close)})
	if err != nil {
		return err
	}
	s := new(portspec.Set)
	for _, so := range socks {
		// An unconnected UDP socket serves its port; a TCP one in state
		// Close (bound, not listening) does not.
		if (so.Proto == portspec.TCP && so.State != sockets.Listen) || (so.Proto != portspec.TCP && so.Proto != portspec.UDP) {
			continue
		}
		s.Add(so.Proto, portspec.Port(so.Local.Port()))
	}
	l.ports.Store(s)
	return nil
}

// Run re-reads the table every Interval until ctx ends.
func (l *Listening) Run(ctx context.Context) {
	iv := l.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Refresh(ctx); err != nil && ctx.Err() == nil && l.Logger != nil {
				l.Logger.Warn("read listening sockets", "err", err)
			}
		}
	}
}

// Closed reports whether nothing listens on a's port (true before the
// first Refresh: nothing is known to listen).
func (l *Listening) Closed(a *Attempt) bool {
	s := l.ports.Load()
	return s == nil || !s.Has(a.Proto, a.Port)
}

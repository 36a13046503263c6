//go:build !linux

package watch

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"time"
)

// ErrNotSupported is returned where nftables and NFLOG do not exist.
var ErrNotSupported = errors.New("watch: capture needs Linux (nftables and NFLOG), not " + runtime.GOOS)

func (c *Capture) Install(context.Context) error { return ErrNotSupported }
func (c *Capture) Ban(context.Context, netip.Prefix, time.Duration) error {
	return ErrNotSupported
}
func (c *Capture) Counters(context.Context) (Counters, error) { return Counters{}, ErrNotSupported }
func (c *Capture) Banned(context.Context) (map[netip.Prefix]time.Duration, error) {
	return nil, ErrNotSupported
}
func (c *Capture) Remove(context.Context) error { return ErrNotSupported }

// Running is Linux-only.
type Running struct{}

// Start fails off Linux.
func (c *Capture) Start(context.Context, *Watcher, uint32, time.Duration) (*Running, error) {
	return nil, ErrNotSupported
}

func (rn *Running) Sync(context.Context) error  { return ErrNotSupported }
func (rn *Running) Serve(context.Context) error { return ErrNotSupported }
func (rn *Running) Close(context.Context) error { return nil }

// GatherNeverBlock fails off Linux.
func GatherNeverBlock(context.Context, NeverBlockSources) (*NeverBlock, error) {
	return nil, ErrNotSupported
}

//go:build !linux

package nflog

import (
	"context"
	"fmt"
	"runtime"
)

// Reader reads an NFLOG group; on this system it cannot be opened.
type Reader struct{}

// Open fails: NFLOG is Linux's.
func Open(ctx context.Context, cfg Config) (*Reader, error) {
	return nil, fmt.Errorf("nflog group %d: not supported on %s", cfg.Group, runtime.GOOS)
}

// Read never returns packets here.
func (r *Reader) Read(ctx context.Context, pkts []Packet) (int, error) {
	return 0, fmt.Errorf("nflog: not supported on %s", runtime.GOOS)
}

// Stats is always zero here.
func (r *Reader) Stats() Stats { return Stats{} }

// Close does nothing here.
func (r *Reader) Close() error { return nil }

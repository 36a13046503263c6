//go:build !linux

package firewall

import "context"

type flushHook = func()

type live struct{}

// ApplyTo is not supported off Linux.
func (f *Firewall) ApplyTo(context.Context, *Table, *Ruleset) error { return ErrNotSupported }

// Read is not supported off Linux.
func (f *Firewall) Read(context.Context) (*Table, error) { return nil, ErrNotSupported }

// Apply is not supported off Linux.
func (f *Firewall) Apply(context.Context, *Ruleset) error { return ErrNotSupported }

// Reset is not supported off Linux.
func (f *Firewall) Reset(context.Context) error { return ErrNotSupported }

// Restore is not supported off Linux.
func (f *Firewall) Restore(context.Context, *Snapshot) error { return ErrNotSupported }

// Published is not supported off Linux.
func (f *Firewall) Published(context.Context) ([]Publication, error) { return nil, ErrNotSupported }

// Blockers is not supported off Linux.
func (f *Firewall) Blockers(context.Context) ([]Blocker, error) { return nil, ErrNotSupported }

//go:build !linux

package sockets

import "context"

// FindOwners returns ErrNotSupported: owners are read from Linux /proc.
func FindOwners(ctx context.Context, socks []Socket, opt OwnerOptions) error {
	return ErrNotSupported
}

//go:build !linux

package firewall

import (
	"context"
	"net/netip"
	"time"
)

// SetDoors is not supported off Linux.
func (f *Firewall) SetDoors(context.Context, *Doors) error { return ErrNotSupported }

// RemoveDoors is not supported off Linux.
func (f *Firewall) RemoveDoors(context.Context) error { return ErrNotSupported }

// OpenDoor is not supported off Linux.
func (f *Firewall) OpenDoor(context.Context, netip.Addr, []DoorPort, time.Duration) error {
	return ErrNotSupported
}

// DoorHolders is not supported off Linux.
func (f *Firewall) DoorHolders(context.Context) ([]DoorHolder, []DoorPort, error) {
	return nil, nil, ErrNotSupported
}

package cli

import (
	"context"
	"time"

	"portolan/internal/firewall"
)

// sshDoors reads the knock doors of the namespace (portolan knockd) once
// and returns what they do to new SSH connections like p, for the SSH
// guard: "" when no door protects p's port or the doors cannot be read.
func (s *fwSession) sshDoors(ctx context.Context) func(p firewall.Packet) string {
	holders, protected, err := s.fw.DoorHolders(ctx)
	if err != nil {
		s.g.Logger().Debug("read the knock doors", "err", err)
	}
	now := time.Now()
	return func(p firewall.Packet) string {
		note, _ := firewall.SSHDoor(p, protected, holders, now)
		return note
	}
}

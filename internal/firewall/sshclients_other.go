//go:build !linux

package firewall

import (
	"context"
	"strings"
)

// FindSSHClients reads SSH_CONNECTION only: finding the sshd process among
// the ancestors needs Linux's /proc.
func FindSSHClients(ctx context.Context, sshConnection string, ns *Netns) (*SSHClients, error) {
	if strings.TrimSpace(sshConnection) != "" {
		return clientsFromEnv(sshConnection)
	}
	return &SSHClients{Source: "no SSH_CONNECTION"}, nil
}

//go:build !linux

package firewall

import "context"

// OpenNetns is not supported off Linux.
func OpenNetns(string) (*Netns, error) { return nil, ErrNotSupported }

func lockFile(context.Context, string) (func(), error) { return nil, ErrNotSupported }

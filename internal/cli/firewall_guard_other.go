//go:build !linux

package cli

import "portolan/internal/firewall"

func startGuard(*fwSession, string) (int, error) { return 0, firewall.ErrNotSupported }

func ignoreHangup() {}

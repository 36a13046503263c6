//go:build !linux

package daemon

// Notify does nothing off Linux: systemd is Linux's.
func Notify(state string) error { return nil }

func reloading() string { return "RELOADING=1" }

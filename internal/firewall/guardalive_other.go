//go:build !linux

package firewall

// guardAlive says yes off Linux, where there is no table to roll back.
func guardAlive(*Pending) bool { return true }

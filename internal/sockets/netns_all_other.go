//go:build !linux

package sockets

// Namespaces returns ErrNotSupported: network namespaces are Linux's.
func Namespaces() ([]Namespace, error) { return nil, ErrNotSupported }

//go:build !linux

package sockets

// Namespaces returns ErrNotSupported: network namespaces are Linux's.
func Namespaces() ([]Namespace, error) { return nil, ErrNotSupported }

// InNetns runs fn; a namespace other than "" is not supported off Linux.
func InNetns(netns string, fn func() error) error {
	if netns != "" {
		return ErrNotSupported
	}
	return fn()
}

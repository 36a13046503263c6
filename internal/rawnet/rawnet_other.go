//go:build !linux

package rawnet

import (
	"net"
	"net/netip"
)

// Sender is not supported off Linux.
type Sender struct{}

// OpenSender returns ErrNotSupported.
func OpenSender(Route, bool, int) (*Sender, error) { return nil, ErrNotSupported }

func (*Sender) Slots() int                 { return 0 }
func (*Sender) Slot(int) []byte            { return nil }
func (*Sender) Ready(int, int, netip.Addr) {}
func (*Sender) Send(int, int) (int, error) { return 0, ErrNotSupported }
func (*Sender) Close() error               { return nil }

// Receiver is not supported off Linux.
type Receiver struct{}

// OpenReceiver returns ErrNotSupported.
func OpenReceiver(uint16, uint16, int, int) (*Receiver, error) { return nil, ErrNotSupported }

func (*Receiver) Recv(func([]byte)) (int, error)    { return 0, ErrNotSupported }
func (*Receiver) TryRecv(func([]byte)) (int, error) { return 0, ErrNotSupported }
func (*Receiver) Stats() (Stats, error)             { return Stats{}, ErrNotSupported }
func (*Receiver) Close() error                      { return nil }

// LookupRoute returns ErrNotSupported.
func LookupRoute(netip.Addr) (Route, error) { return Route{}, ErrNotSupported }

// LookupRouteVia returns ErrNotSupported.
func LookupRouteVia(netip.Addr, string) (Route, error) { return Route{}, ErrNotSupported }

// Neighbors is not supported off Linux.
type Neighbors struct{}

// OpenNeighbors returns ErrNotSupported.
func OpenNeighbors() (*Neighbors, error) { return nil, ErrNotSupported }

func (*Neighbors) Lookup(int, netip.Addr) (net.HardwareAddr, error) { return nil, ErrNotSupported }
func (*Neighbors) Close() error                                     { return nil }

// Solicit returns ErrNotSupported.
func Solicit(netip.Addr) error { return ErrNotSupported }

// SolicitVia returns ErrNotSupported.
func SolicitVia(netip.Addr, string) error { return ErrNotSupported }

// Guard is not supported off Linux.
type Guard struct{}

// GuardPorts returns ErrNotSupported.
func GuardPorts(uint16, uint16) (*Guard, error) { return nil, ErrNotSupported }

func (*Guard) Close() error { return nil }

// IsPermission reports false: nothing here asks for a permission.
func IsPermission(error) bool { return false }

// Allowed reports false: raw sockets are Linux only here.
func Allowed() bool { return false }

//go:build !linux

package netlab

import "net/netip"

type hostSys struct{}

func doIn(int, func() error) error                   { return ErrNotSupported }
func createHost(*Host) error                         { return ErrNotSupported }
func closeHost(*Host) error                          { return nil }
func sweepStale() error                              { return nil }
func self() (int, uint64, error)                     { return 0, 0, ErrNotSupported }
func createLink(*Link, int) error                    { return ErrNotSupported }
func addAddr(*Host, string, netip.Prefix) error      { return ErrNotSupported }
func addRoute(*Host, netip.Prefix, netip.Addr) error { return ErrNotSupported }
func pinNeighbors(*Link) error                       { return ErrNotSupported }

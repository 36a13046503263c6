package firewall

import (
	"errors"
	"log/slog"
	"runtime"
	"time"
)

// ErrNotSupported is returned where nftables does not exist.
var ErrNotSupported = errors.New("firewall: nftables is not supported on " + runtime.GOOS)

// Firewall reads and writes portolan's table (inet portolan) in one
// network namespace over netlink. It never changes another table. The
// zero value works on the process's own namespace.
type Firewall struct {
	// NetNS is an open file descriptor of the network namespace to work
	// in (/run/netns/NAME, /proc/PID/ns/net). Zero means the namespace
	// of the calling thread.
	NetNS int
	// Logger receives debug notes; nil discards them.
	Logger *slog.Logger
	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time
	// Cache is a file in which to keep the table as last written or read,
	// so a command can take it from there instead of reading every rule
	// and set back while the namespace's ruleset generation has not moved
	// (see tablecache_linux.go). Empty means always read the kernel.
	Cache string

	beforeFlush flushHook // tests: adds to a batch just before it is sent
}

// Table is portolan's table as read from the kernel.
type Table struct {
	// Exists is false when the namespace has no table inet portolan
	// (nothing was ever written, or it was reset).
	Exists bool
	// Ruleset holds the policy and the rules in order, expired ones
	// included (see Rule.Expired); the next change drops those.
	Ruleset Ruleset
	// Unmanaged counts kernel rules in the input chain that portolan did
	// not write or that were changed by another tool. The next change
	// removes them.
	Unmanaged int

	live *live // what ApplyTo needs of the kernel's table; nil off Linux
}

func (f *Firewall) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Firewall) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

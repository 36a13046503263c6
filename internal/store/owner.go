package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// owner identifies the process running a scan: its pid and, where the
// system says, when it started, so a pid reused by an unrelated process
// after a crash does not pass for the scan's.
type owner struct {
	pid   int
	start int64 // system-specific start time; 0 when unknown
}

// self is the owner this process records.
func self() owner {
	pid := os.Getpid()
	start, _ := processStart(pid)
	return owner{pid, start}
}

// alive reports whether o is a running process other than this one.
func (o owner) alive() bool {
	if o.pid <= 0 || o == self() {
		return false
	}
	start, err := processStart(o.pid)
	if err != nil {
		return false
	}
	return o.start == 0 || start == 0 || start == o.start
}

// DefaultLeaseTTL is how long a running scan's lease lasts without a
// heartbeat. Checkpoints renew it (every second while a scan moves) and so
// does Heartbeat; a host that stops renewing for this long is taken for
// dead, and --resume on another host may take its scan over.
const DefaultLeaseTTL = 30 * time.Second

// HostID names this host in leases: $PORTOLAN_HOST_ID when set, else the
// host name (a Kubernetes pod's name, a machine's). Two processes with one
// host id compare process ids, which only mean something on one host.
func HostID() string {
	if h := os.Getenv("PORTOLAN_HOST_ID"); h != "" {
		return h
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

func (s *Store) host() string {
	if s.HostID != "" {
		return s.HostID
	}
	return HostID()
}

func (s *Store) leaseTTL() time.Duration {
	if s.LeaseTTL > 0 {
		return s.LeaseTTL
	}
	return DefaultLeaseTTL
}

// lease is who runs a scan: the host holding its lease and until when,
// and the process on that host.
type lease struct {
	host  string
	until time.Time
	owner owner
}

// leaseOf reads the lease of scan id.
func (s *Store) leaseOf(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64) (lease, error) {
	var l lease
	var until int64
	err := q.QueryRowContext(ctx, s.q(`SELECT owner_pid, owner_start, lease_host, lease_until FROM scans WHERE id = ?`), id).
		Scan(&l.owner.pid, &l.owner.start, &l.host, &until)
	l.until = fromNanos(until)
	return l, err
}

// alive reports whether another process runs the scan l is the lease of.
// On this host the process table says, at once; a lease from another host
// holds until it expires. Scans from before leases (no host) have only
// their process id.
func (s *Store) alive(l lease) bool {
	if l.host == "" || l.host == s.host() {
		return l.owner.alive()
	}
	return s.now().Before(l.until)
}

// mine reports whether l is this process's lease.
func (s *Store) mine(l lease) bool {
	return (l.host == "" || l.host == s.host()) && l.owner == self()
}

// runningErr says who runs a scan and how to take it over.
func (s *Store) runningErr(l lease) error {
	if l.host == "" || l.host == s.host() {
		return fmt.Errorf("%w: process %d is scanning it (stop it with Ctrl-C or kill %d, then resume)", ErrRunning, l.owner.pid, l.owner.pid)
	}
	return fmt.Errorf("%w on host %s, whose lease holds until %s (its heartbeats renew it; once it lapses, --resume here takes over)",
		ErrRunning, l.host, l.until.UTC().Format(time.RFC3339))
}

// Heartbeat renews this process's lease of scan id, as checkpoints do, for
// scans that wait without moving (a slow host, a long banner).
// When another host has taken the scan over, the error wraps ErrLeaseLost:
// this process should stop.
func (s *Store) Heartbeat(ctx context.Context, id int64) error {
	return s.updateOwned(ctx, "heartbeat", id, `UPDATE scans SET lease_until = ? WHERE id = ?`,
		s.now().Add(s.leaseTTL()).UnixNano(), id)
}

// ErrLeaseLost is returned (wrapped) by Checkpoint, FinishScan and
// Heartbeat to a process whose scan another process has taken over, after
// its lease lapsed.
var ErrLeaseLost = errors.New("lease lost")

package freeport

// Reservations: a registry file, guarded by flock on a lock file beside it,
// that lists the ports handed out to portolan callers with an expiry and
// the holder's pid. Parallel test runners on one machine thereby never get
// the same port. A holder that died has its ports reclaimed (after Hold).
// The registry is per user: another user's ports are found busy by the
// bind check once bound, which is all a registry shared with them could add.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"portolan/internal/atomicfile"
	"portolan/internal/portspec"
)

// Reservation is a set of ports that no other portolan caller using the
// same registry gets until it expires, is released, or its holder exits.
type Reservation struct {
	Ports   []portspec.Port
	Expires time.Time // zero: until Release or the holder exits
	ID      string    // identifies the reservation in the registry
	Dir     string    // the registry directory

	opts     Options
	mu       sync.Mutex
	released bool
}

// Reserve finds n free ports (as FreePorts does, passing over ports others
// reserved) and records them in the registry for ttl. A ttl of zero means
// until Release or until the holder (opts.Holder) exits; a reservation held
// by NoHolder needs a ttl.
func Reserve(ctx context.Context, n int, ttl time.Duration, opts Options) (*Reservation, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("reserve ports: negative ttl %v", ttl)
	}
	pid := opts.Holder
	switch {
	case pid == 0:
		pid = os.Getpid()
	case pid == NoHolder:
		if ttl == 0 {
			return nil, errors.New("reserve ports: a reservation with no holder process needs a ttl")
		}
		pid = 0
	case pid < 0:
		return nil, fmt.Errorf("reserve ports: holder pid %d invalid", pid)
	}
	var start uint64
	if pid != 0 {
		if !holderAlive(pid, 0) {
			return nil, fmt.Errorf("reserve ports: holder pid %d: no such process", pid)
		}
		start = holderStart(pid)
	}
	dir := registryDir(opts.Dir)
	now := opts.clock()
	reg, unlock, err := openRegistry(ctx, dir, true, now)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ports, err := searchIn(ctx, &opts, n, reg.taken)
	if err != nil {
		return nil, err
	}
	r := &Reservation{Ports: ports, ID: newReservationID(), Dir: dir, opts: opts}
	if ttl > 0 {
		r.Expires = now.Add(ttl)
	}
	for _, p := range ports {
		reg.Entries = append(reg.Entries, regEntry{
			Port: p, ID: r.ID, PID: pid, PIDStart: start, Expires: r.Expires, Hold: opts.Hold,
		})
	}
	if err := reg.save(dir); err != nil {
		return nil, err
	}
	return r, nil
}

// Release hands the ports back (after opts.Hold, if set). Releasing twice
// is harmless.
func (r *Reservation) Release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released {
		return nil
	}
	now := r.opts.clock()
	reg, unlock, err := openRegistry(context.Background(), r.Dir, true, now)
	if err != nil {
		return err
	}
	defer unlock()
	kept := reg.Entries[:0]
	for _, e := range reg.Entries {
		if e.ID == r.ID {
			if r.opts.Hold <= 0 {
				continue
			}
			e.PID, e.PIDStart, e.Expires, e.Hold = 0, 0, now.Add(r.opts.Hold), 0
		}
		kept = append(kept, e)
	}
	reg.Entries = kept
	if err := reg.save(r.Dir); err != nil {
		return err
	}
	r.released = true
	return nil
}

// registry is the content of the registry file.
type registry struct {
	Entries []regEntry `json:"reservations"`
}

// regEntry is one reserved port.
type regEntry struct {
	Port     portspec.Port `json:"port"`
	ID       string        `json:"id"`
	PID      int           `json:"pid,omitempty"`       // holder; 0: none
	PIDStart uint64        `json:"pid_start,omitempty"` // holder's start time, against pid reuse
	Expires  time.Time     `json:"expires,omitzero"`
	Hold     time.Duration `json:"hold,omitempty"` // kept this long after the holder dies
}

const (
	registryFile = "free.json"
	registryLock = "free.lock"
)

// registryDir returns the registry directory: dir, or the default.
func registryDir(dir string) string {
	if dir != "" {
		return dir
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "portolan")
	}
	return filepath.Join(os.TempDir(), "portolan-"+strconv.Itoa(os.Getuid()))
}

// loadRegistry reads the registry. A missing file is empty; a damaged one
// is replaced rather than fatal, since every entry in it expires anyway.
func loadRegistry(dir string) (*registry, error) {
	b, err := os.ReadFile(filepath.Join(dir, registryFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &registry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read reservations: %w", err)
	}
	reg := &registry{}
	if err := json.Unmarshal(b, reg); err != nil {
		return &registry{}, nil
	}
	return reg, nil
}

// save writes the registry atomically; the caller holds the lock.
func (reg *registry) save(dir string) error {
	b, err := json.MarshalIndent(reg, "", " ")
	if err != nil {
		return fmt.Errorf("write reservations: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, registryFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write reservations: %w", err)
	}
	return nil
}

// prune drops expired entries and turns those of dead holders into holds
// (or drops them when they have no hold). It reports whether anything
// changed: a hold starts when the death is first seen, so the caller must
// save that, or the next read would start it again.
func (reg *registry) prune(now time.Time) (changed bool) {
	kept := reg.Entries[:0]
	for _, e := range reg.Entries {
		if !e.Expires.IsZero() && !now.Before(e.Expires) {
			changed = true
			continue
		}
		if e.PID != 0 && !holderAlive(e.PID, e.PIDStart) {
			changed = true
			if e.Hold <= 0 {
				continue
			}
			until := now.Add(e.Hold)
			if e.Expires.IsZero() || until.Before(e.Expires) {
				e.Expires = until
			}
			e.PID, e.PIDStart, e.Hold = 0, 0, 0
		}
		kept = append(kept, e)
	}
	reg.Entries = kept
	return changed
}

// taken reports whether p is reserved by a live entry.
func (reg *registry) taken(p portspec.Port) bool {
	for _, e := range reg.Entries {
		if e.Port == p {
			return true
		}
	}
	return false
}

// readRegistry returns the live reservations without changing the file, or
// an empty registry when there is none yet.
func readRegistry(ctx context.Context, opts *Options) (*registry, error) {
	dir := registryDir(opts.Dir)
	if _, err := os.Stat(filepath.Join(dir, registryFile)); errors.Is(err, fs.ErrNotExist) {
		return &registry{}, nil
	}
	// Exclusive: a holder's death seen here starts its hold, which is saved.
	reg, unlock, err := openRegistry(ctx, dir, true, opts.clock())
	if err != nil {
		return nil, err
	}
	unlock()
	return reg, nil
}

// openRegistry locks the registry in dir and reads it, pruned at now; with
// an exclusive lock what pruning changed is saved at once, whatever the
// caller does next. The caller calls unlock when done.
func openRegistry(ctx context.Context, dir string, exclusive bool, now time.Time) (reg *registry, unlock func(), err error) {
	unlock, err = lockRegistry(ctx, dir, exclusive)
	if err != nil {
		return nil, nil, err
	}
	reg, err = loadRegistry(dir)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if reg.prune(now) && exclusive {
		if err := reg.save(dir); err != nil {
			unlock()
			return nil, nil, err
		}
	}
	return reg, unlock, nil
}

func newReservationID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

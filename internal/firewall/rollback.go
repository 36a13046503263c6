package firewall

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
	"time"

	"portolan/internal/atomicfile"
)

// Netns is an open network namespace, named for the files of its pending
// rollback.
type Netns struct {
	File *os.File
	Spec string // as given to OpenNetns; empty for the process's own
	ID   string // "netns-DEV-INO": the same for every path to one namespace
}

// FD returns the descriptor for Firewall.NetNS.
func (n *Netns) FD() int { return int(n.File.Fd()) }

// Close closes the namespace file.
func (n *Netns) Close() error { return n.File.Close() }

// State is where portolan keeps what outlives one command for a
// namespace: its lock, the pending rollback and the record of the last
// rollback. Dir is usually /run/portolan (gone at reboot, as are the
// rules).
type State struct {
	Dir string
	ID  string // Netns.ID
}

func (s State) path(suffix string) string { return filepath.Join(s.Dir, "firewall-"+s.ID+suffix) }

// PendingPath is the file of the pending rollback.
func (s State) PendingPath() string { return s.path(".pending.json") }

// LogPath is where a rollback guard writes what it did.
func (s State) LogPath() string { return s.path(".guard.log") }

// CachePath is the file of the table cache (Firewall.Cache).
func (s State) CachePath() string { return s.path(".table.gob") }

func (s State) rolledBackPath() string { return s.path(".rolledback.json") }

// Lock takes the namespace's lock, which every change holds so that two
// commands never interleave their reads and writes; it waits until ctx
// ends. Call the returned function to release it.
func (s State) Lock(ctx context.Context) (unlock func(), err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock firewall state: %w", err)
	}
	unlock, err = lockFile(ctx, s.path(".lock"))
	if err != nil {
		return nil, fmt.Errorf("lock firewall state: %w", err)
	}
	return unlock, nil
}

// Pending is an apply that rolls back at Deadline unless confirmed.
type Pending struct {
	Token    string    `json:"token"` // names this apply to its guard
	Netns    string    `json:"netns,omitempty"`
	Applied  time.Time `json:"applied"`
	Deadline time.Time `json:"deadline"`
	GuardPID int       `json:"guard_pid,omitempty"`
	Snapshot *Snapshot `json:"snapshot"`
}

// RolledBack is the record a guard leaves after restoring a snapshot.
type RolledBack struct {
	Token string    `json:"token"`
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
	// GuardGone: the guard had died, and a later command (Recover) rolled
	// back in its place.
	GuardGone bool `json:"guard_gone,omitempty"`
}

// ErrNothingPending is Confirm's answer when no apply awaits confirmation.
var ErrNothingPending = errors.New("no apply is waiting for confirmation")

// RolledBackError is Confirm's answer when the guard already restored the
// snapshot.
type RolledBackError struct{ RolledBack }

func (e *RolledBackError) Error() string {
	msg := "too late: the apply was rolled back at " + e.At.Format(time.RFC3339)
	if e.GuardGone {
		msg += " (its rollback process had died; a later command rolled back in its place)"
	}
	if e.RolledBack.Error != "" {
		msg += " (with an error: " + e.RolledBack.Error + ")"
	}
	return msg
}

// NewToken returns a random token for a Pending.
func NewToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ReadPending returns the pending rollback, or an error wrapping
// fs.ErrNotExist when there is none.
func (s State) ReadPending() (*Pending, error) {
	b, err := os.ReadFile(s.PendingPath())
	if err != nil {
		return nil, err
	}
	var p Pending
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.PendingPath(), err)
	}
	if p.Snapshot == nil || p.Token == "" {
		return nil, fmt.Errorf("read %s: no token or snapshot", s.PendingPath())
	}
	return &p, nil
}

// WritePending writes p atomically (hold the lock).
func (s State) WritePending(p *Pending) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	return writeJSONFile(s.PendingPath(), p)
}

// RemovePending drops the pending rollback: its guard exits at its next
// look without restoring anything (hold the lock).
func (s State) RemovePending() error {
	err := os.Remove(s.PendingPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// Confirm keeps the pending apply: it removes the pending rollback so the
// guard exits without restoring. It returns what was confirmed, a
// *RolledBackError if the guard was faster, or ErrNothingPending.
func (s State) Confirm(ctx context.Context) (*Pending, error) {
	unlock, err := s.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := s.ReadPending()
	if errors.Is(err, fs.ErrNotExist) {
		if b, rerr := os.ReadFile(s.rolledBackPath()); rerr == nil {
			var rb RolledBack
			if json.Unmarshal(b, &rb) == nil {
				return nil, &RolledBackError{rb}
			}
		}
		return nil, ErrNothingPending
	}
	if err != nil {
		return nil, err
	}
	if now := time.Now(); !now.Before(p.Deadline) {
		return nil, &LateError{Deadline: p.Deadline}
	}
	if err := s.RemovePending(); err != nil {
		return nil, fmt.Errorf("confirm: %w", err)
	}
	return p, nil
}

// LateError is Confirm's answer after the deadline, while the guard is
// about to restore the snapshot: the rollback goes ahead.
type LateError struct{ Deadline time.Time }

func (e *LateError) Error() string {
	return "too late: the deadline was " + e.Deadline.Format(time.RFC3339) + "; the rollback goes ahead"
}

// Recover rolls back a pending apply whose guard died (kill -9, the OOM
// killer, logind's KillUserProcesses): nothing else would, and every later
// apply would wait for it. Every command but the guard calls it first;
// confirming (a confirm command) keeps a pending apply whose deadline has
// not passed, guard or not. It returns the apply it rolled back, or nil.
func (s State) Recover(ctx context.Context, fw *Firewall, confirming bool) (*Pending, error) {
	dead := func(p *Pending) bool {
		return !guardAlive(p) && !(confirming && time.Now().Before(p.Deadline))
	}
	p, err := s.ReadPending()
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || (err == nil && !dead(p)) {
		return nil, nil // a state this user cannot read holds nothing it could roll back
	}
	if err != nil {
		return nil, err
	}
	bg := context.WithoutCancel(ctx)
	unlock, err := s.Lock(bg)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Again under the lock: an apply writes the guard's pid while holding it.
	p, err = s.ReadPending()
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !dead(p)) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.rollBack(bg, fw, p, true); err != nil {
		return p, fmt.Errorf("roll back the apply of %s, whose rollback process (pid %d) is gone: %w", p.Applied.Format(time.RFC3339), p.GuardPID, err)
	}
	return p, nil
}

// rollBack restores p's snapshot, records it and drops p (hold the lock).
func (s State) rollBack(ctx context.Context, fw *Firewall, p *Pending, guardGone bool) error {
	rerr := fw.Restore(ctx, p.Snapshot)
	rb := RolledBack{Token: p.Token, At: time.Now(), GuardGone: guardGone}
	if rerr != nil {
		rb.Error = rerr.Error()
	}
	if err := writeJSONFile(s.rolledBackPath(), rb); err != nil && rerr == nil {
		rerr = err
	}
	if err := s.RemovePending(); err != nil && rerr == nil {
		rerr = err
	}
	return rerr
}

// Guard waits for the deadline of the pending apply named token and then,
// unless it was confirmed meanwhile (the pending file is gone or names
// another apply), restores its snapshot with fw. When ctx ends first (the
// guard was told to stop) it restores at once: an unconfirmed change never
// outlives its guard. poll is how often it looks for a confirmation
// (zero: 200ms). It reports whether it rolled back.
func (s State) Guard(ctx context.Context, fw *Firewall, token string, poll time.Duration) (bool, error) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	for {
		p, err := s.ReadPending()
		if errors.Is(err, fs.ErrNotExist) || (err == nil && p.Token != token) {
			return false, nil // confirmed, or superseded
		}
		if err != nil {
			return false, err
		}
		left := time.Until(p.Deadline)
		if left <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			left = 0
		case <-time.After(min(left, poll)):
		}
		if left == 0 {
			break
		}
	}
	// Restoring must finish even though ctx may be done.
	bg := context.WithoutCancel(ctx)
	unlock, err := s.Lock(bg)
	if err != nil {
		return false, err
	}
	defer unlock()
	p, err := s.ReadPending()
	if errors.Is(err, fs.ErrNotExist) || (err == nil && p.Token != token) {
		return false, nil // confirmed just in time
	}
	if err != nil {
		return false, err
	}
	rerr := s.rollBack(bg, fw, p, false)
	return rerr == nil, rerr
}

// ClearRolledBack forgets the record of the last rollback, when a new
// apply starts (hold the lock).
func (s State) ClearRolledBack() {
	os.Remove(s.rolledBackPath())
}

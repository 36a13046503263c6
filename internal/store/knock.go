package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// knockNonceAdds counts AddKnockNonce calls, so that expired nonces are
// purged on every 64th instead of costing each request a second statement.
var knockNonceAdds atomic.Uint64

// AddKnockNonce records an accepted SPA request's nonce until expires and
// reports whether it was new. A nonce past its time counts as new (its
// request's timestamp is stale by then anyway); expired rows are purged
// now and then on the way.
func (s *Store) AddKnockNonce(ctx context.Context, nonce []byte, expires time.Time) (bool, error) {
	now := s.now().UnixNano()
	if knockNonceAdds.Add(1)%64 == 1 {
		if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM knock_nonces WHERE expires < ?`), now); err != nil {
			return false, fmt.Errorf("store knock nonce: %w", err)
		}
	}
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO knock_nonces (nonce, expires) VALUES (?, ?)
		ON CONFLICT (nonce) DO UPDATE SET expires = excluded.expires WHERE knock_nonces.expires < ?`), nonce, nanos(expires), now)
	if err != nil {
		return false, fmt.Errorf("store knock nonce: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store knock nonce: %w", err)
	}
	return n == 1, nil
}

// KnockEvent is a stored door event (see knock.Event).
type KnockEvent struct {
	Time   time.Time
	Type   string
	Via    string
	Door   string
	Src    string
	Allow  string
	Key    string
	Ports  string
	Until  time.Time
	Reason string
}

// AddKnockEvents stores door events in one transaction.
func (s *Store) AddKnockEvents(ctx context.Context, evs []KnockEvent) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store knock events: %w", err)
	}
	defer tx.Rollback()
	for _, e := range evs {
		var until int64
		if !e.Until.IsZero() {
			until = e.Until.UnixNano()
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO knock_events (time, type, via, door, src, allow, key, ports, until, reason) VALUES (?,?,?,?,?,?,?,?,?,?)`),
			nanos(e.Time), e.Type, e.Via, e.Door, e.Src, e.Allow, e.Key, e.Ports, until, e.Reason); err != nil {
			return fmt.Errorf("store knock events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store knock events: %w", err)
	}
	return nil
}

// KnockEvents returns the latest limit door events (0: all), oldest first.
func (s *Store) KnockEvents(ctx context.Context, limit int) ([]KnockEvent, error) {
	if limit <= 0 {
		limit = 1 << 62 // both engines take a number; "all" differs
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT time, type, via, door, src, allow, key, ports, until, reason FROM
		(SELECT * FROM knock_events ORDER BY time DESC, id DESC LIMIT ?) AS latest ORDER BY time, id`), limit)
	if err != nil {
		return nil, fmt.Errorf("read knock events: %w", err)
	}
	defer rows.Close()
	var out []KnockEvent
	for rows.Next() {
		var e KnockEvent
		var t, until int64
		if err := rows.Scan(&t, &e.Type, &e.Via, &e.Door, &e.Src, &e.Allow, &e.Key, &e.Ports, &until, &e.Reason); err != nil {
			return nil, fmt.Errorf("read knock events: %w", err)
		}
		e.Time = time.Unix(0, t)
		if until != 0 {
			e.Until = time.Unix(0, until)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read knock events: %w", err)
	}
	return out, nil
}

package cli

// The live view of ls --watch and who PORT --watch: the table redrawn in
// place on a terminal, and when piped one JSON line per socket that
// appears or disappears.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"portolan/internal/output"
)

// watchItem is one socket of a snapshot: key identifies it across
// snapshots (its kernel cookie or inode, and its state), doc is its JSON
// form.
type watchItem struct {
	key string
	doc any
}

// watchEvent is a JSON line of a piped watch.
type watchEvent struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"` // "appear" or "disappear"
	Socket any       `json:"socket"`
}

// watchOptions are the flags every --watch shares.
type watchOptions struct {
	Watch    bool
	Interval time.Duration
}

func (o watchOptions) check() error {
	if o.Watch && o.Interval < 50*time.Millisecond {
		return fmt.Errorf("--interval %v: want 50ms or more", o.Interval)
	}
	return nil
}

// runWatch takes a snapshot every interval until ctx ends (Ctrl-C, exit
// 0). On a terminal draw writes each snapshot's table over the last; when
// stdout is not a terminal, each change is a JSON line: the first
// snapshot's sockets all "appear", later ones appear and disappear as the
// kernel's table changes.
func runWatch(ctx context.Context, g *Globals, interval time.Duration,
	snapshot func(context.Context) ([]watchItem, error), draw func(io.Writer) error) error {
	live := output.IsTerminal(g.io.Out)
	prev := map[string]any{}
	enc := json.NewEncoder(g.io.Out)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		items, err := snapshot(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		now := time.Now()
		if live {
			var b bytes.Buffer
			fmt.Fprintf(&b, "\x1b[H\x1b[2J%s, every %v (Ctrl-C ends)\n\n", now.Format("15:04:05"), interval)
			if err := draw(&b); err != nil {
				return err
			}
			if _, err := g.io.Out.Write(b.Bytes()); err != nil {
				return err
			}
		} else {
			cur := make(map[string]any, len(items))
			for _, it := range items {
				cur[it.key] = it.doc
				if _, ok := prev[it.key]; !ok {
					if err := enc.Encode(watchEvent{now, "appear", it.doc}); err != nil {
						return err
					}
				}
			}
			for _, k := range slices.Sorted(maps.Keys(prev)) {
				if _, ok := cur[k]; !ok {
					if err := enc.Encode(watchEvent{now, "disappear", prev[k]}); err != nil {
						return err
					}
				}
			}
			prev = cur
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

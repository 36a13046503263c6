package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/store"
	"portolan/internal/watch"
)

func init() { register(newEventsCmd) }

// EventsOptions are the inputs of `portolan events`.
type EventsOptions struct {
	Since  string // a duration back or an RFC 3339 time; empty: all
	Until  string
	Source string // an address or prefix
	Types  []string
	Limit  int
	DB     DBFlags
}

func newEventsCmd(g *Globals) *cobra.Command {
	opts := EventsOptions{}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Query what portolan watch stored: attempts, detections, blocks",
		Long: `List the events portolan watch stored, oldest first: connection attempts,
scan detections and block decisions. --since and --until take a duration back
from now (90s, 1h, 7d) or an RFC 3339 time; --source an address or a prefix
(an IPv6 scanner's /64 holds all of its addresses).

Exit codes: 0 events listed, 3 none matched, 2 bad arguments.`,
		Example: `  portolan events --since 1h
  portolan events --since 1h --source 198.18.0.9
  portolan events --source fd00:1::/64 --type detection,block
  portolan events --since 24h --type block --json | jq -r '.[].source'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEvents(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Since, "since", "", "events from this long ago (1h, 7d) or this time on")
	f.StringVar(&opts.Until, "until", "", "events before this long ago or this time")
	f.StringVar(&opts.Source, "source", "", "events from this address or prefix")
	f.StringSliceVar(&opts.Types, "type", nil, "attempt, detection or block (comma-separated)")
	f.IntVarP(&opts.Limit, "limit", "n", 0, "only the `N` latest (0: all)")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

// eventQuery builds the store query from the options.
func (o EventsOptions) eventQuery(now time.Time) (store.EventQuery, error) {
	var q store.EventQuery
	var err error
	if o.Since != "" {
		if q.Since, err = watch.ParseSince(o.Since, now); err != nil {
			return q, fmt.Errorf("--since: %w", err)
		}
	}
	if o.Until != "" {
		if q.Until, err = watch.ParseSince(o.Until, now); err != nil {
			return q, fmt.Errorf("--until: %w", err)
		}
	}
	if o.Source != "" {
		if q.Source, err = netip.ParsePrefix(o.Source); err != nil {
			a, aerr := netip.ParseAddr(o.Source)
			if aerr != nil {
				return q, fmt.Errorf("--source %q: want an address or a prefix", o.Source)
			}
			q.Source = netip.PrefixFrom(a.WithZone(""), a.BitLen())
		}
	}
	for _, t := range o.Types {
		switch t {
		case watch.TypeAttempt, watch.TypeDetection, watch.TypeBlock:
			q.Types = append(q.Types, t)
		default:
			return q, fmt.Errorf("--type %q: want attempt, detection or block", t)
		}
	}
	if o.Limit < 0 {
		return q, fmt.Errorf("--limit %d: want 0 (all) or more", o.Limit)
	}
	q.Limit = o.Limit
	return q, nil
}

func runEvents(ctx context.Context, g *Globals, opts EventsOptions) error {
	q, err := opts.eventQuery(time.Now())
	if err != nil {
		return usageErr(err)
	}
	var evs []watch.Event
	db, err := opts.DB.open(ctx, false)
	switch {
	case errors.Is(err, errNoStore):
	case err != nil:
		return err
	default:
		defer db.Close()
		if evs, err = db.Events(ctx, q); err != nil {
			return err
		}
	}
	if g.JSON {
		if evs == nil {
			evs = []watch.Event{}
		}
		if err := writeJSON(g, evs); err != nil {
			return err
		}
	} else if len(evs) > 0 {
		t := &output.Table{Header: []string{"TIME", "TYPE", "SOURCE", "DESTINATION", "KIND", "DETAIL"}}
		for _, e := range evs {
			src := netip.AddrPortFrom(e.Src, e.SrcPort).String()
			var detail string
			switch e.Type {
			case watch.TypeDetection:
				src = e.Source.String()
				detail = fmt.Sprintf("%s scan, score %.2f, offence %d", e.Scan, e.Score, e.Offence)
			case watch.TypeBlock:
				src = e.Source.String()
				detail = e.Action
				if e.Ban > 0 {
					detail += " for " + e.Ban.String()
				}
			}
			dst := netip.AddrPortFrom(e.Dst, uint16(e.Port)).String() + "/" + e.Proto.String()
			if e.Kind == watch.KindEcho {
				dst = e.Dst.String()
				if e.Type == watch.TypeAttempt {
					src = e.Src.String()
				}
			}
			t.Add(e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Type, src, dst, e.Kind.String(), detail)
		}
		if err := t.Write(g.io.Out, output.ColorEnabled(g.io.Out, g.NoColor)); err != nil {
			return err
		}
	}
	if len(evs) == 0 {
		if !g.JSON {
			fmt.Fprintln(g.io.ErrOut, "no events matched")
		}
		return silentExit(ExitNotFound)
	}
	return nil
}

package scandiff

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
)

// Seen is one scan that saw a port in a state.
type Seen struct {
	Scan int64     `json:"scan"`
	Time time.Time `json:"time"` // the result's time, else the scan's start
}

// Span is a port of an address in one state across stored scans: the
// first and last scan that saw it so, and how many did.
type Span struct {
	Addr    netip.Addr     `json:"addr"`
	Port    portspec.Port  `json:"port"`
	Proto   portspec.Proto `json:"proto"`
	State   scan.State     `json:"state"`
	First   Seen           `json:"first"`
	Last    Seen           `json:"last"`
	Scans   int            `json:"scans"`
	Service string         `json:"service,omitempty"` // as the last scan saw it
	Version scan.Version   `json:"version,omitzero"`
	Banner  string         `json:"banner,omitempty"`
	// Current is whether the newest scan that has the port saw it in this
	// state.
	Current bool `json:"current"`
}

// Timeline turns sightings (oldest scan first, as store.Sightings returns
// them) into spans: one per port and state, ordered by protocol, port, and
// when the state was first seen.
func Timeline(ss []store.Sighting) []Span {
	type key struct {
		addr  netip.Addr
		proto portspec.Proto
		port  portspec.Port
		state scan.State
	}
	type portKey struct {
		addr  netip.Addr
		proto portspec.Proto
		port  portspec.Port
	}
	idx := map[key]int{}
	latest := map[portKey]scan.State{}
	var out []Span
	for _, s := range ss {
		r := s.Result
		k := key{r.Addr, r.Proto, r.Port, r.State}
		seen := Seen{Scan: s.Scan, Time: cmp.Or(r.Time, s.Started)}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Span{Addr: r.Addr, Port: r.Port, Proto: r.Proto, State: r.State, First: seen})
		}
		sp := &out[i]
		sp.Last = seen
		sp.Scans++
		sp.Service, sp.Version, sp.Banner = r.Service, s.Version, r.Banner
		latest[portKey{r.Addr, r.Proto, r.Port}] = r.State
	}
	for i := range out {
		sp := &out[i]
		sp.Current = latest[portKey{sp.Addr, sp.Proto, sp.Port}] == sp.State
	}
	slices.SortStableFunc(out, func(a, b Span) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if c := strings.Compare(a.Proto.String(), b.Proto.String()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Port, b.Port); c != 0 {
			return c
		}
		return a.First.Time.Compare(b.First.Time)
	})
	return out
}

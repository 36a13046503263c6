package scandiff

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"portolan/internal/store"
	"portolan/internal/target"
)

// literalTargets parses target expressions without resolving names: a
// stored scan's targets are compared as written, and looking names up again
// would compare against today's DNS.
func literalTargets(ctx context.Context, expr string) (*target.Set, error) {
	noDNS := func(context.Context, string, string) ([]netip.Addr, error) {
		return nil, errors.New("names are not looked up here")
	}
	return target.Parse(ctx, []string{expr}, nil, target.Options{IncludeReserved: true, Force: true, Resolver: noDNS})
}

// covers reports whether every address of want is in have.
func covers(have, want *target.Set) bool {
	for _, r := range want.Ranges() {
		i, ok := have.Index(r.First)
		j, ok2 := have.Index(r.Last)
		if !ok || !ok2 || j < i || j-i != r.Len()-1 {
			return false
		}
	}
	return true
}

// LatestCovering returns the two newest finished scans among scans (newest
// first, as store.Scans lists them) whose targets include every address of
// targets, the older first. Scans whose targets name hosts are matched only
// by the same text. It returns an error wrapping store.ErrNotFound when
// fewer than two match.
func LatestCovering(ctx context.Context, scans []store.ScanInfo, targets string) (older, newer store.ScanInfo, err error) {
	want, err := literalTargets(ctx, targets)
	if err != nil {
		return older, newer, fmt.Errorf("targets %q: %w", targets, err)
	}
	var found []store.ScanInfo
	for _, si := range scans {
		if si.Status != store.Done {
			continue
		}
		match := si.Targets == targets
		if !match {
			if have, err := literalTargets(ctx, si.Targets); err == nil {
				match = covers(have, want)
			}
		}
		if match {
			found = append(found, si)
			if len(found) == 2 {
				return found[1], found[0], nil
			}
		}
	}
	return older, newer, fmt.Errorf("%w: %d finished scan(s) cover %s, need 2", store.ErrNotFound, len(found), targets)
}

// Previous returns the newest finished scan among scans (newest first)
// started before si whose targets include all of si's: the scan a report
// on si compares against. ok is false when there is none.
func Previous(ctx context.Context, scans []store.ScanInfo, si store.ScanInfo) (prev store.ScanInfo, ok bool) {
	want, err := literalTargets(ctx, si.Targets)
	for _, s := range scans {
		if s.ID == si.ID || s.Status != store.Done || !s.Started.Before(si.Started) {
			continue
		}
		if s.Targets == si.Targets {
			return s, true
		}
		if err != nil {
			continue // names: only the same text matches
		}
		if have, err := literalTargets(ctx, s.Targets); err == nil && covers(have, want) {
			return s, true
		}
	}
	return prev, false
}

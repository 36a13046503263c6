package scandiff

import (
	"context"

	"portolan/internal/store"
)

// Ref describes a stored scan as a side of a diff.
func Ref(si store.ScanInfo) ScanRef {
	return ScanRef{ID: si.ID, Started: si.Started, Targets: si.Targets, Ports: si.Ports}
}

// Stored returns scan si of st as a side of a diff: its results as the
// store streams them, and the service versions an import recorded.
func Stored(ctx context.Context, st *store.Store, si store.ScanInfo) (Side, error) {
	version, err := si.ServiceVersion()
	if err != nil {
		return Side{}, err
	}
	return Side{Ref: Ref(si), Hosts: st.ScanHosts(ctx, si.ID), Version: version}, nil
}

// CompareStored compares two stored scans.
func CompareStored(ctx context.Context, st *store.Store, a, b store.ScanInfo) (*Diff, error) {
	sa, err := Stored(ctx, st, a)
	if err != nil {
		return nil, err
	}
	sb, err := Stored(ctx, st, b)
	if err != nil {
		return nil, err
	}
	return Compare(ctx, sa, sb)
}

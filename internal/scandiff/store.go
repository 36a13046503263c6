package scandiff

import (
	"context"
	"fmt"

	"portolan/internal/store"
)

// Ref describes a stored scan as a side of a diff.
func Ref(si store.ScanInfo) ScanRef {
	r := ScanRef{ID: si.ID, Started: si.Started, Targets: si.Targets, Ports: si.Ports}
	if len(si.Shards) > 0 {
		r.Name = fmt.Sprintf("%s@%d", si.Name, si.Run)
	}
	return r
}

// Stored returns scan si of st as a side of a diff: its results as the
// store streams them, and the service versions an import recorded.
func Stored(ctx context.Context, st *store.Store, si store.ScanInfo) (Side, error) {
	version, err := si.ServiceVersion()
	if err != nil {
		return Side{}, err
	}
	return Side{Ref: Ref(si), Hosts: st.ScanInfoHosts(ctx, si), Version: version}, nil
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

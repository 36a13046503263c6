package firewall

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestApplyReadRoundTrip(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	cases := roundTripCases(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range cases {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		rs := cases[name]
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if err := l.fw.Apply(ctx, &rs); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			got, err := l.fw.Read(ctx)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !got.Exists || got.Unmanaged != 0 {
				t.Errorf("Read: exists %v, unmanaged %d; want true, 0", got.Exists, got.Unmanaged)
			}
			if diff := cmp.Diff(rs, got.Ruleset, ruleCmp); diff != "" {
				t.Errorf("Read after Apply (-want +got):\n%s", diff)
			}
			// nft, reading the same table, prints what we render.
			want, err := got.Ruleset.NFT()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, chainLines(t, l.srv)); diff != "" {
				t.Errorf("nft list chain differs from Ruleset.NFT (-ours +nft):\n%s", diff)
			}
		})
	}
}

package firewall

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/netlab"
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
			sameAsNFT(t, l.srv, &got.Ruleset)
		})
	}
}

// sameAsNFT checks that nft, reading h's table, prints what rs renders
// to (what plan and list --nft show), chain by chain, and that the table
// has no other chains.
func sameAsNFT(t *testing.T, h *netlab.Host, rs *Ruleset) {
	t.Helper()
	chains, err := rs.NFTChains()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		if diff := cmp.Diff(c.Lines, namedChainLines(t, h, c.Name)); diff != "" {
			t.Errorf("nft list chain %s differs from Ruleset.NFTChains (-ours +nft):\n%s", c.Name, diff)
		}
	}
	if n := strings.Count(nft(t, h, "list", "table", "inet", TableName), "\tchain "); n != len(chains) {
		t.Errorf("the table has %d chains; want %d", n, len(chains))
	}
}

// TestLargeRuleset applies a ruleset whose batch and whose echoed replies
// overflow default socket buffers (ENOBUFS, EMSGSIZE before they were
// sized), and reads it back.
func TestLargeRuleset(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	const n = 400
	rs := Ruleset{Policy: PolicyDrop}
	for i := range n {
		rs.Rules = append(rs.Rules, mustRule(t, RuleSpec{Action: "allow", Ports: "T:" + strconv.Itoa(1000+i) + "," + strconv.Itoa(30000+i), From: "198.18.0.1,198.18.0.3,fd00::1,fd00::3"}))
	}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatalf("Apply %d rules: %v", n, err)
	}
	rs.Rules = append(rs.Rules[1:], mustRule(t, RuleSpec{Action: "deny", Ports: "1/tcp"}))
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	tab, err := l.fw.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Ruleset.Rules) != n || tab.Unmanaged != 0 {
		t.Errorf("Read: %d rules, %d unmanaged; want %d, 0", len(tab.Ruleset.Rules), tab.Unmanaged, n)
	}
}

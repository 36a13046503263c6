package firewall

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// lcsLen is the length of a longest common subsequence, by the table of
// all pairs.
func lcsLen(a, b []int) int {
	t := make([][]int, len(a)+1)
	for i := range t {
		t[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	return t[0][0]
}

func checkPairs(t *testing.T, a, b []int) {
	t.Helper()
	pairs, err := commonPairs(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	for k, p := range pairs {
		if a[p[0]] != b[p[1]] || (k > 0 && (p[0] <= pairs[k-1][0] || p[1] <= pairs[k-1][1])) {
			t.Fatalf("commonPairs(%v, %v) = %v: pair %d %v is not a common subsequence", a, b, pairs, k, p)
		}
	}
	if want := lcsLen(a, b); len(pairs) != want {
		t.Fatalf("commonPairs(%v, %v) = %v: %d pairs; want %d", a, b, pairs, len(pairs), want)
	}
}

func TestCommonPairs(t *testing.T) {
	for _, tt := range [][2][]int{
		{nil, nil}, {{1}, nil}, {nil, {1}}, {{1, 2, 3}, {1, 2, 3}}, {{1, 2, 3}, {3, 2, 1}},
		{{1, 2, 3, 4}, {1, 3, 4, 5}}, {{1, 2}, {3, 4}}, {{1, 1, 1}, {1, 1}}, {{1, 2, 1, 2}, {2, 1, 2, 1}},
	} {
		checkPairs(t, tt[0], tt[1])
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		a, b := make([]int, r.IntN(30)), make([]int, r.IntN(30))
		alpha := 1 + r.IntN(6)
		for i := range a {
			a[i] = r.IntN(alpha)
		}
		for i := range b {
			b[i] = r.IntN(alpha)
		}
		checkPairs(t, a, b)
	}
}

func TestCommonPairsCancelled(t *testing.T) {
	a, b := make([]int, 20000), make([]int, 20000)
	for i := range a {
		a[i], b[i] = i, 20000+i // nothing in common: D = 40000
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := commonPairs(ctx, a, b); err != context.Canceled {
		t.Errorf("commonPairs with a cancelled context: %v; want context.Canceled", err)
	}
}

func BenchmarkCommonPairs(b *testing.B) {
	x := make([]int, 10000)
	for i := range x {
		x[i] = i
	}
	y := append([]int(nil), x...)
	y[5000] = -1
	for b.Loop() {
		commonPairs(context.Background(), x, y)
	}
}

// TestDiffCancelled: a plan stops when its context ends.
func TestDiffCancelled(t *testing.T) {
	have := &Table{Exists: true}
	want := &Ruleset{}
	for i := range 2000 {
		have.Ruleset.Rules = append(have.Ruleset.Rules, mustRuleNoT(RuleSpec{Action: "allow", Ports: strconv.Itoa(1000+i) + "/tcp"}))
		want.Rules = append(want.Rules, mustRuleNoT(RuleSpec{Action: "deny", Ports: strconv.Itoa(1000+i) + "/tcp"}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Diff(ctx, have, want, time.Now()); !errors.Is(err, context.Canceled) {
		t.Errorf("Diff with a cancelled context: %v; want context.Canceled", err)
	}
	if p, err := Diff(context.Background(), have, want, time.Now()); err != nil || len(p.Changes) != 4000 {
		t.Errorf("Diff: %v, %d changes; want 4000", err, len(p.Changes))
	}
}

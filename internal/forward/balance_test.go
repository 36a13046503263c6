package forward

import (
	"io"
	"testing"
	"time"
)

// TestRoundRobinSpreadsOverLiveTargets: with targets dead, a, b, nine
// connections gave a six and b three, also once a health check had
// marked the dead one down. Round-robin must spread over the live ones.
func TestRoundRobinSpreadsOverLiveTargets(t *testing.T) {
	a, b := backend(t, named("a")), backend(t, named("b"))
	for _, tc := range []struct {
		name string
		rule Rule
	}{
		// Dial failures take the dead target out (max-fails 1).
		{"passive", Rule{Name: "rr", Listen: "127.0.0.1:0", Targets: []string{closedPort(t), a, b}}},
		// A health check marks it down; no passive ejection.
		{"health", Rule{Name: "rr", Listen: "127.0.0.1:0", Targets: []string{closedPort(t), a, b}, HealthInterval: 20 * time.Millisecond, MaxFails: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := start(t, tc.rule)
			if tc.rule.HealthInterval > 0 {
				waitFor(t, "the dead target marked down", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					for _, l := range s.listeners {
						return l.state().pool.targets[0].down.Load()
					}
					return false
				})
			}
			count := map[string]int{}
			for range 10 {
				got, err := io.ReadAll(dial(t, s, "rr"))
				if err != nil {
					t.Fatal(err)
				}
				count[string(got)]++
			}
			if count["a"] != 5 || count["b"] != 5 {
				t.Errorf("10 connections went %v; want 5 to a and 5 to b", count)
			}
		})
	}
}

// TestPassiveEjectionSkipsADeadTarget: after a failed dial the dead
// target is left out of the rotation for the fail timeout (each of its
// turns cost a client a connect attempt), and tried again after it.
func TestPassiveEjectionSkipsADeadTarget(t *testing.T) {
	a := backend(t, named("a"))
	dead := closedPort(t)
	s, _ := start(t, Rule{Name: "rr", Listen: "127.0.0.1:0", Targets: []string{dead, a}, FailTimeout: time.Hour})
	for range 6 {
		if got, _ := io.ReadAll(dial(t, s, "rr")); string(got) != "a" {
			t.Fatalf("answer %q; want a", got)
		}
	}
	st := s.stats["rr"].target(dead)
	if n := st.dialErrs.Load(); n != 1 {
		t.Errorf("%d connect attempts to the dead target; want 1 (then left out)", n)
	}
}

package scan

import (
	"testing"
	"time"
)

// The bucket is checked with a clock of our own, so the test is exact and
// never depends on how busy the machine is.
func TestBucketRate(t *testing.T) {
	for _, rate := range []float64{1, 100, 5000, 1e6} {
		t0 := time.Unix(1000, 0)
		b := newBucket(rate, t0)
		burst := max(1, rate/100)
		// Ask every 100µs for 10 simulated seconds, as fast as allowed.
		granted := 0
		now := t0
		for now.Before(t0.Add(10 * time.Second)) {
			for b.take(now) {
				granted++
			}
			now = now.Add(100 * time.Microsecond)
		}
		want := rate * 10
		if float64(granted) > want+burst+1 || float64(granted) < want-1 {
			t.Errorf("rate %v: %d probes in 10 s; want %v (+ a burst of %v at most)", rate, granted, want, burst)
		}
	}
}

func TestBucketNext(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(10, t0) // one token per 100 ms, burst 1
	if !b.take(t0) {
		t.Fatal("a new bucket has no token")
	}
	if b.take(t0) {
		t.Fatal("took two tokens at once with a burst of 1")
	}
	if got, want := b.next(t0), t0.Add(100*time.Millisecond); !got.Equal(want) {
		t.Fatalf("next(t0) = %v; want %v", got.Sub(t0), want.Sub(t0))
	}
	if b.take(t0.Add(99 * time.Millisecond)) {
		t.Fatal("token available after 99 ms at 10/s")
	}
	if !b.take(t0.Add(100 * time.Millisecond)) {
		t.Fatal("no token after 100 ms at 10/s")
	}
	// Idle time does not pile up beyond the burst.
	later := t0.Add(time.Hour)
	if !b.take(later) || b.take(later) {
		t.Fatal("an hour idle gave more than the burst")
	}
	b.giveBack()
	if !b.take(later) {
		t.Fatal("giveBack did not return the token")
	}
}

func TestBucketUnlimited(t *testing.T) {
	b := newBucket(0, time.Unix(0, 0))
	for range 1000 {
		if !b.take(time.Unix(0, 0)) {
			t.Fatal("rate 0 refused a token")
		}
	}
}

// TestRTTEstimate follows RFC 6298 section 2 by hand.
func TestRTTEstimate(t *testing.T) {
	var e rttEst
	e.sample(100 * time.Millisecond)
	if e.srtt != 100*time.Millisecond || e.rttvar != 50*time.Millisecond {
		t.Fatalf("first sample: srtt %v rttvar %v; want 100ms 50ms", e.srtt, e.rttvar)
	}
	if got := e.rto(); got != 300*time.Millisecond {
		t.Fatalf("rto after one sample = %v; want 300ms", got)
	}
	e.sample(200 * time.Millisecond)
	// rttvar = 3/4*50 + 1/4*|100-200| = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
	if e.srtt != 112500*time.Microsecond || e.rttvar != 62500*time.Microsecond {
		t.Fatalf("second sample: srtt %v rttvar %v; want 112.5ms 62.5ms", e.srtt, e.rttvar)
	}
	if got := e.rto(); got != 362500*time.Microsecond {
		t.Fatalf("rto = %v; want 362.5ms", got)
	}
	var z rttEst
	z.sample(0)
	if got := z.rto(); got != clockGranularity {
		t.Fatalf("rto of a 0 RTT = %v; want the clock granularity %v", got, clockGranularity)
	}
}

package scan

import (
	"math"
	"time"
)

// bucket is the token bucket behind --rate: probes spend tokens that refill
// at rate per second, up to burst. A burst of 10 ms worth of tokens lets the
// scheduler send in small batches instead of sleeping before every probe,
// while over any interval T at most burst + rate*T probes go out.
type bucket struct {
	rate   float64 // tokens per second; <= 0 means no cap
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, now time.Time) bucket {
	burst := math.Max(1, rate/100)
	return bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// take spends one token if one is available at now.
func (b *bucket) take(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// giveBack returns a token spent on a probe that was not sent after all.
func (b *bucket) giveBack() {
	if b.rate > 0 {
		b.tokens = math.Min(b.burst, b.tokens+1)
	}
}

// next returns when the next token will be available.
func (b *bucket) next(now time.Time) time.Time {
	if b.rate <= 0 {
		return now
	}
	b.refill(now)
	if b.tokens >= 1 {
		return now
	}
	return now.Add(time.Duration(math.Ceil((1 - b.tokens) / b.rate * float64(time.Second))))
}

// A bucket also keeps the floor of --min-rate: tokens refill at the
// minimum rate and every probe sent spends one (down to -burst, so sending
// faster for a while banks no more than 10 ms of credit). A whole token
// left means the scan has fallen behind the floor: the scheduler then sends
// past its soft limits (the in-flight window, a new host's slow start)
// until it has caught up.

// behind reports whether a floor bucket holds a whole token.
func (b *bucket) behind(now time.Time) bool {
	if b.rate <= 0 {
		return false
	}
	b.refill(now)
	return b.tokens >= 1
}

// spend counts a probe sent against a floor bucket.
func (b *bucket) spend(now time.Time) {
	if b.rate > 0 {
		b.refill(now)
		b.tokens = math.Max(-b.burst, b.tokens-1)
	}
}

// rttEst is the smoothed round-trip time and its variation, kept as RFC 6298
// says TCP keeps them; the retransmission timeout it gives is how long a
// probe waits before it counts as unanswered.
type rttEst struct {
	srtt, rttvar time.Duration
	ok           bool // at least one sample
}

// clockGranularity is G in RFC 6298: the floor of the variance term.
const clockGranularity = time.Millisecond

func (e *rttEst) sample(r time.Duration) {
	if !e.ok {
		e.srtt, e.rttvar, e.ok = r, r/2, true
		return
	}
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + r) / 8
}

// rto is SRTT + max(G, 4*RTTVAR).
func (e *rttEst) rto() time.Duration {
	return e.srtt + max(clockGranularity, 4*e.rttvar)
}

package watch

import (
	"strings"
	"time"
)

// ParseSince reads a point in time as `portolan events --since` takes
// it: a duration back from now ("90s", "1h", "2h30m", and "7d" for days)
// or an RFC 3339 time ("2026-12-07T16:00:00Z").
func ParseSince(s string, now time.Time) (time.Time, error) {
	bad := func(msg string) error { return &ParseError{What: "time", Input: s, Msg: msg} }
	if s == "" {
		return time.Time{}, bad("empty")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok && !strings.ContainsAny(days, "hmsuµn") {
		n := 0
		for i, c := range days {
			if c < '0' || c > '9' || i > 5 {
				return time.Time{}, bad("want a duration (1h, 7d) or an RFC 3339 time")
			}
			n = n*10 + int(c-'0')
		}
		if days == "" {
			return time.Time{}, bad("want a number of days before d")
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, bad("want a duration (1h, 7d) or an RFC 3339 time")
	}
	return now.Add(-d), nil
}

package watch

import (
	"errors"
	"testing"
	"time"
)

var sinceCases = []struct {
	in   string
	want time.Duration // back from now; -1: an absolute time
	err  bool
}{
	{"1h", time.Hour, false},
	{"90s", 90 * time.Second, false},
	{"2h30m", 150 * time.Minute, false},
	{"7d", 7 * 24 * time.Hour, false},
	{"2026-12-07T15:00:00Z", -1, false},
	{"", 0, true},
	{"d", 0, true},
	{"-1h", 0, true},
	{"1x", 0, true},
	{"yesterday", 0, true},
}

func TestParseSince(t *testing.T) {
	for _, c := range sinceCases {
		got, err := ParseSince(c.in, t0)
		switch {
		case c.err:
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("ParseSince(%q) = %v, %v; want a *ParseError", c.in, got, err)
			}
		case err != nil:
			t.Errorf("ParseSince(%q) error %v", c.in, err)
		case c.want == -1:
			if !got.Equal(time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)) {
				t.Errorf("ParseSince(%q) = %v", c.in, got)
			}
		case t0.Sub(got) != c.want:
			t.Errorf("ParseSince(%q) = now - %v; want now - %v", c.in, t0.Sub(got), c.want)
		}
	}
}

func FuzzParseSince(f *testing.F) {
	for _, c := range sinceCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSince(s, t0)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseSince(%q) error %v is not a *ParseError", s, err)
			}
			return
		}
		if got.IsZero() {
			t.Fatalf("ParseSince(%q) = zero time without error", s)
		}
	})
}

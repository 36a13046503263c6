package sockets

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{"listen": Listen, "LISTENING": Listen, "estab": Established, "time-wait": TimeWait,
		"TIME_WAIT": TimeWait, "unconn": Close, "close-wait": CloseWait, "fin-wait-1": FinWait1, "syn_recv": SynRecv, "bound": BoundInactive,
		// ss writes fin-wait-2; people also type fin-wait2 and finwait2.
		"fin-wait2": FinWait2, "fin_wait-2": FinWait2, "FINWAIT2": FinWait2, "fin-wait-2": FinWait2,
		"time_wait": TimeWait, "bound-inactive": BoundInactive, "syn-sent": SynSent, "last-ack": LastAck} {
		if got, err := ParseState(in); got != want || err != nil {
			t.Errorf("ParseState(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"open", "", "-", "fin-wait-3"} {
		if _, err := ParseState(bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseState(%q) err = %v; want one naming the input", bad, err)
		}
	}
}

func FuzzParseState(f *testing.F) {
	for _, s := range []string{"listen", "estab", "time-wait", "", "x", "fin-wait2", "FINWAIT2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if st, err := ParseState(s); err == nil {
			if again, err := ParseState(st.String()); err != nil || again != st {
				t.Fatalf("ParseState(%q) = %v, which does not read back: %v", s, st, err)
			}
		}
	})
}

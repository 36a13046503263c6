package scan

import "testing"

func TestICMPVerdict(t *testing.T) {
	for _, c := range []struct {
		v6         bool
		typ, code  uint8
		st         State
		reason     string
		meaningful bool
	}{
		{false, 3, 3, Closed, ReasonPortUnreach, true},
		{false, 3, 13, Filtered, ReasonAdminProhibited, true},
		{false, 3, 1, Filtered, ReasonHostUnreach, true},
		{false, 3, 0, Filtered, ReasonNetUnreach, true},
		{false, 3, 2, Filtered, ReasonProtoUnreach, true},
		{false, 3, 9, Filtered, ReasonNetProhibited, true},
		{false, 3, 10, Filtered, ReasonHostProhibited, true},
		{false, 11, 0, Filtered, ReasonTimeExceeded, true},
		{false, 3, 4, Unknown, "", false}, // fragmentation needed: about the datagram, not the port
		{false, 5, 0, Unknown, "", false}, // a redirect
		{true, 1, 4, Closed, ReasonPortUnreach, true},
		{true, 1, 1, Filtered, ReasonAdminProhibited, true},
		{true, 1, 3, Filtered, ReasonHostUnreach, true},
		{true, 1, 0, Filtered, ReasonNetUnreach, true},
		{true, 3, 0, Filtered, ReasonTimeExceeded, true},
		{true, 2, 0, Unknown, "", false}, // packet too big
	} {
		st, reason, ok := icmpVerdict(c.v6, c.typ, c.code)
		if st != c.st || reason != c.reason || ok != c.meaningful {
			t.Errorf("icmpVerdict(v6 %v, type %d, code %d) = %v, %q, %v; want %v, %q, %v",
				c.v6, c.typ, c.code, st, reason, ok, c.st, c.reason, c.meaningful)
		}
	}
}

package scan

import (
	"testing"
)

func TestEchoRequestChecksum(t *testing.T) {
	b := echoRequest(nil, false, 7, 0x0102030405060708)
	if got := icmpChecksum(b); got != 0 {
		t.Errorf("checksum over a request with its checksum = %#x; want 0", got)
	}
	if len(b) != 8+echoPayloadLength || b[0] != icmpEchoRequest || b[7] != 7 {
		t.Errorf("echoRequest = % x; want type 8, seq 7, %d bytes", b, 8+echoPayloadLength)
	}
}

// reply turns a request into the reply a host sends back.
func reply(req []byte, v6 bool) []byte {
	b := append([]byte(nil), req...)
	b[0] = icmpEchoReply
	if v6 {
		b[0] = icmp6EchoReply
	}
	return b
}

func withIPv4Header(b []byte) []byte {
	h := make([]byte, 20, 20+len(b))
	h[0] = 0x45
	return append(h, b...)
}

var echoCases = []struct {
	name     string
	b        []byte
	v6, ipHd bool
	id       uint64
	ok       bool
}{
	{"v4 ping socket", reply(echoRequest(nil, false, 1, 42), false), false, false, 42, true},
	{"v4 raw", withIPv4Header(reply(echoRequest(nil, false, 1, 43), false)), false, true, 43, true},
	{"v6", reply(echoRequest(nil, true, 1, 44), true), true, false, 44, true},
	{"request, not reply", echoRequest(nil, false, 1, 45), false, false, 0, false},
	{"v6 type on v4", reply(echoRequest(nil, true, 1, 46), true), false, false, 0, false},
	{"short", []byte{0, 0, 0, 0}, false, false, 0, false},
	{"someone else's payload", append(reply(echoRequest(nil, false, 1, 1), false)[:8], "abcdefghijklmnop"...), false, false, 0, false},
	{"bad IP header", []byte{0x41, 0, 0}, false, true, 0, false},
	{"empty", nil, true, false, 0, false},
}

func TestParseEchoReply(t *testing.T) {
	for _, tc := range echoCases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := parseEchoReply(tc.b, tc.v6, tc.ipHd)
			if (err == nil) != tc.ok || id != tc.id {
				t.Errorf("parseEchoReply(% x) = %d, %v; want %d, ok %v", tc.b, id, err, tc.id, tc.ok)
			}
		})
	}
}

// FuzzParseEchoReply: no panic, and whatever parses came from a reply
// carrying that ID.
func FuzzParseEchoReply(f *testing.F) {
	for _, tc := range echoCases {
		f.Add(tc.b, tc.v6, tc.ipHd)
	}
	f.Fuzz(func(t *testing.T, b []byte, v6, ipHd bool) {
		id, err := parseEchoReply(b, v6, ipHd)
		if err != nil {
			return
		}
		req := echoRequest(nil, v6, 0, id)
		if _, err := parseEchoReply(reply(req, v6), v6, false); err != nil {
			t.Errorf("a reply to echoRequest(%d) does not parse: %v", id, err)
		}
	})
}

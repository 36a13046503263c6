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

// tsReply turns a timestamp request into the reply a host sends back.
func tsReply(req []byte) []byte {
	b := append([]byte(nil), req...)
	b[0] = icmpTimestampReply
	copy(b[12:], []byte{0, 1, 2, 3, 0, 1, 2, 4}) // receive and transmit
	return b
}

func TestTimestampRequest(t *testing.T) {
	b := timestampRequest(nil, 0x01020304, 86399999)
	if got := icmpChecksum(b); got != 0 {
		t.Errorf("checksum over a request with its checksum = %#x; want 0", got)
	}
	want := []byte{13, 0, b[2], b[3], 1, 2, 3, 4, 0x05, 0x26, 0x5b, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}
	if string(b) != string(want) {
		t.Errorf("timestampRequest = % x; want % x", b, want)
	}
}

var timestampCases = []struct {
	name      string
	b         []byte
	ipHd      bool
	token, ms uint32
	ok        bool
}{
	{"reply", tsReply(timestampRequest(nil, 7, 1000)), false, 7, 1000, true},
	{"raw, with IP header", withIPv4Header(tsReply(timestampRequest(nil, 0xffffffff, 0))), true, 0xffffffff, 0, true},
	{"request, not reply", timestampRequest(nil, 7, 1000), false, 0, 0, false},
	{"echo reply", reply(echoRequest(nil, false, 1, 42), false), false, 0, 0, false},
	{"code 1", func() []byte { b := tsReply(timestampRequest(nil, 1, 1)); b[1] = 1; return b }(), false, 0, 0, false},
	{"short", tsReply(timestampRequest(nil, 7, 1000))[:19], false, 0, 0, false},
	{"bad IP header", []byte{0x46, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true, 0, 0, false},
	{"empty", nil, false, 0, 0, false},
}

func TestParseTimestampReply(t *testing.T) {
	for _, tc := range timestampCases {
		t.Run(tc.name, func(t *testing.T) {
			token, ms, err := parseTimestampReply(tc.b, tc.ipHd)
			if (err == nil) != tc.ok || token != tc.token || ms != tc.ms {
				t.Errorf("parseTimestampReply(% x) = %d, %d, %v; want %d, %d, ok %v", tc.b, token, ms, err, tc.token, tc.ms, tc.ok)
			}
		})
	}
}

// FuzzParseTimestampReply: no panic, and whatever parses is what a reply
// to a request with that token and time carries.
func FuzzParseTimestampReply(f *testing.F) {
	for _, tc := range timestampCases {
		f.Add(tc.b, tc.ipHd)
	}
	f.Fuzz(func(t *testing.T, b []byte, ipHd bool) {
		token, ms, err := parseTimestampReply(b, ipHd)
		if err != nil {
			return
		}
		if tk, m, err := parseTimestampReply(tsReply(timestampRequest(nil, token, ms)), false); err != nil || tk != token || m != ms {
			t.Errorf("a reply to timestampRequest(%d, %d) parses as %d, %d, %v", token, ms, tk, m, err)
		}
	})
}

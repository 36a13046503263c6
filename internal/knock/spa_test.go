package knock

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

var (
	testSeed = bytes.Repeat([]byte{7}, ed25519.SeedSize)
	testPriv = ed25519.NewKeyFromSeed(testSeed)
	testHMAC = bytes.Repeat([]byte{9}, 32)
)

var spaCases = []struct {
	name string
	req  Request
	hmac bool
}{
	{"v4 ssh", Request{Time: time.UnixMilli(1_800_000_000_123), Nonce: [16]byte{1, 2, 3}, AllowIP: netip.MustParseAddr("198.18.0.2"),
		Duration: 30 * time.Second, Ports: []DoorPort{{Proto: portspec.TCP, Port: 22}}}, false},
	{"v6 two ports hmac", Request{Time: time.UnixMilli(1_800_000_000_000), Nonce: [16]byte{15: 1}, AllowIP: netip.MustParseAddr("fd00::2"),
		Ports: []DoorPort{{Proto: portspec.TCP, Port: 443}, {Proto: portspec.UDP, Port: 51820}}}, true},
}

func sign(t testing.TB, r Request, hmac bool) []byte {
	var b []byte
	var err error
	if hmac {
		b, err = r.SignHMAC(testHMAC)
	} else {
		b, err = r.SignEd25519(testPriv)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSPARoundTrip(t *testing.T) {
	for _, tc := range spaCases {
		r := tc.req
		b := sign(t, r, tc.hmac)
		got, signed, auth, err := ParseSPA(b)
		if err != nil {
			t.Fatalf("%s: ParseSPA: %v", tc.name, err)
		}
		r.Alg, r.KeyID = got.Alg, got.KeyID
		if d := cmp.Diff(r, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("%s: ParseSPA (-want +got):\n%s", tc.name, d)
		}
		k := &Key{Alg: Ed25519, Public: testPriv.Public().(ed25519.PublicKey)}
		if tc.hmac {
			k = &Key{Alg: HMAC, Secret: testHMAC}
		}
		if !k.verify(signed, auth) {
			t.Errorf("%s: signature does not verify", tc.name)
		}
		signed[len(signed)-1] ^= 1
		if k.verify(signed, auth) {
			t.Errorf("%s: a changed datagram verifies", tc.name)
		}
	}
}

func TestParseSPAErrors(t *testing.T) {
	good := sign(t, spaCases[0].req, false)
	mut := func(off int, v byte) []byte {
		b := bytes.Clone(good)
		b[off] = v
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		off  int
	}{
		{"short", good[:20], 0},
		{"magic", mut(0, 'X'), 0},
		{"version", mut(2, 9), 2},
		{"algorithm", mut(3, 7), 3},
		{"family", mut(36, 5), 36},
		{"v4 tail", mut(45, 1), 41},
		{"no ports", mut(57, 0), 57},
		{"length", good[:len(good)-1], 61},
		{"protocol", mut(58, 1), 58},
		{"port 0", append(append(bytes.Clone(good[:59]), 0, 0), good[61:]...), 59},
	} {
		_, _, _, err := ParseSPA(tc.in)
		var se *SPAError
		if !errors.As(err, &se) || se.Offset != tc.off {
			t.Errorf("%s: ParseSPA = %v; want an SPAError at byte %d", tc.name, err, tc.off)
		}
	}
}

func FuzzParseSPA(f *testing.F) {
	for _, tc := range spaCases {
		f.Add(sign(f, tc.req, tc.hmac))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, signed, auth, err := ParseSPA(b)
		if err != nil {
			return
		}
		// What parses encodes back to the same bytes.
		again, err := r.marshal()
		if err != nil {
			t.Fatalf("marshal of a parsed request: %v", err)
		}
		if !bytes.Equal(again, signed) || len(signed)+len(auth) != len(b) {
			t.Fatalf("round trip: %x; want %x", again, signed)
		}
	})
}

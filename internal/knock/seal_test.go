package knock

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func serverKey(t testing.TB, b byte) *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSeal: a sealed request opens with the server's key into the signed
// request, hides it, and fails with any other key or any changed byte.
func TestSeal(t *testing.T) {
	srv, other := serverKey(t, 1), serverKey(t, 2)
	for _, tc := range spaCases {
		inner := sign(t, tc.req, tc.hmac)
		b, err := Seal(inner, srv.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !IsSealed(b) || IsSealed(inner) || len(b) != len(inner)+sealHeader+16 {
			t.Fatalf("%s: sealed %d bytes of %d; want %d, IsSealed only for the sealed one", tc.name, len(b), len(inner), len(inner)+sealHeader+16)
		}
		if bytes.Contains(b, inner[4:12]) || bytes.Contains(b, tc.req.AllowIP.AsSlice()) {
			t.Errorf("%s: the sealed datagram shows the key id or the address", tc.name)
		}
		got, err := Unseal(b, srv)
		if err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%s: Unseal = %x, %v; want the signed request", tc.name, got, err)
		}
		r, _, _, err := ParseSPA(got)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.req, r, cmpopts.IgnoreFields(Request{}, "Alg", "KeyID"), cmp.Comparer(func(a, b interface{ String() string }) bool { return a.String() == b.String() })); d != "" {
			t.Errorf("%s: request after Unseal (-want +got):\n%s", tc.name, d)
		}
		if _, err := Unseal(b, other); err == nil {
			t.Errorf("%s: Unseal with another server's key succeeded", tc.name)
		}
		for _, i := range []int{3, 20, sealHeader, len(b) - 1} {
			bad := bytes.Clone(b)
			bad[i] ^= 1
			if _, err := Unseal(bad, srv); err == nil {
				t.Errorf("%s: Unseal with byte %d changed succeeded", tc.name, i)
			}
		}
		// Each seal uses a new key: the same request seals differently.
		again, _ := Seal(inner, srv.PublicKey())
		if bytes.Equal(again, b) {
			t.Errorf("%s: two seals of one request are equal", tc.name)
		}
	}
}

var unsealCases = []struct {
	name string
	in   []byte
	err  string
}{
	{"empty", nil, "spa datagram at byte 0: 0 bytes, shorter than a sealed request's 35-byte header and 16-byte tag"},
	{"magic", append([]byte("XK\x02"), make([]byte, 60)...), `spa datagram at byte 0: magic "XK"`},
	{"version", append([]byte("PK\x01"), make([]byte, 60)...), "spa datagram at byte 2: version 1; want 2 (sealed)"},
	{"zero key", append([]byte("PK\x02"), make([]byte, 60)...), "spa datagram at byte 3:"},
	{"garbage", append([]byte("PK\x02"), bytes.Repeat([]byte{5}, 60)...), "spa datagram at byte 35: does not decrypt with this server's key"},
}

func TestUnsealErrors(t *testing.T) {
	srv := serverKey(t, 1)
	for _, tc := range unsealCases {
		_, err := Unseal(tc.in, srv)
		var se *SPAError
		if err == nil || !errors.As(err, &se) || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: Unseal = %v; want an *SPAError starting %q", tc.name, err, tc.err)
		}
	}
}

func FuzzUnseal(f *testing.F) {
	srv := serverKey(f, 1)
	for _, tc := range unsealCases {
		f.Add(tc.in)
	}
	for _, tc := range spaCases {
		b, err := Seal(sign(f, tc.req, tc.hmac), srv.PublicKey())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		inner, err := Unseal(b, srv)
		if err != nil {
			var se *SPAError
			if !errors.As(err, &se) {
				t.Fatalf("Unseal error %v is not an *SPAError", err)
			}
			return
		}
		// What opens was sealed to this key: sealing it again opens again.
		b2, err := Seal(inner, srv.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if again, err := Unseal(b2, srv); err != nil || !bytes.Equal(again, inner) {
			t.Fatalf("re-sealed request does not open: %v", err)
		}
	})
}

func TestServerKeyFiles(t *testing.T) {
	key, pub, err := GenerateServerKey("gw")
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParseServerKey("server.key", key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseServerPublicKey("server.key.pub", pub)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(priv.PublicKey()) || !strings.HasSuffix(string(pub), " gw\n") {
		t.Errorf("public line %q does not match the key file", pub)
	}
	for _, tc := range []struct{ in, err string }{
		{"ed25519 AAAA x", `server.key.pub:1:1: want "x25519 BASE64 [NAME]"`},
		{"x25519 !!!", "server.key.pub:1:8: not base64"},
		{"x25519 AAAA", "server.key.pub:1:8: 3 bytes; want a 32-byte x25519 key"},
	} {
		if _, err := ParseServerPublicKey("server.key.pub", []byte(tc.in)); err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("ParseServerPublicKey(%q) = %v; want %q", tc.in, err, tc.err)
		}
	}
	if _, err := ParseServerKey("client.key", []byte("hmac-sha256 AAAA\n")); err == nil {
		t.Error("ParseServerKey of an HMAC line: no error")
	}
}

package knock

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"portolan/internal/portspec"
)

var configCases = []struct {
	name string
	in   string
	want *Config
	err  string // substring of the error; "" for success
}{
	{"door", `
authorized-keys: /etc/portolan/knock.keys
doors:
  - name: ssh
    protect: 22/tcp
    sequence: 7000,8000/udp,9000
    stage-timeout: 3s
    open-for: 1m
`, &Config{AuthorizedKeys: "/etc/portolan/knock.keys", Doors: []Door{{Name: "ssh",
		Protect:      []DoorPort{{Proto: portspec.TCP, Port: 22}},
		Sequence:     []DoorPort{{Proto: portspec.TCP, Port: 7000}, {Proto: portspec.UDP, Port: 8000}, {Proto: portspec.TCP, Port: 9000}},
		StageTimeout: 3 * time.Second, OpenFor: time.Minute}}}, ""},
	{"spa only", "authorized-keys: k\ngroup: 9\nspa-port: 4000\nwindow: 10s\ndoors:\n  - protect: 22,443/tcp\n", &Config{Group: 9, SPAPort: 4000, Window: 10 * time.Second, AuthorizedKeys: "k",
		Doors: []Door{{Name: "door1", Protect: []DoorPort{{Proto: portspec.TCP, Port: 22}, {Proto: portspec.TCP, Port: 443}}}}}, ""},
	{"sealed", "authorized-keys: k\nserver-key: /etc/portolan/knockd.key\nsealed-only: true\ndoors:\n  - protect: 22/tcp\n", &Config{AuthorizedKeys: "k",
		ServerKey: "/etc/portolan/knockd.key", SealedOnly: true, Doors: []Door{{Name: "door1", Protect: []DoorPort{{Proto: portspec.TCP, Port: 22}}}}}, ""},
	{"sealed-only without a key", "authorized-keys: k\nsealed-only: true\ndoors:\n  - protect: 22/tcp\n", nil, "sealed-only needs a server-key"},
	{"sealed-only not a bool", "authorized-keys: k\nsealed-only: maybe\ndoors:\n  - protect: 22/tcp\n", nil, "2:14: sealed-only:"},
	{"one-time", "doors:\n  - protect: 22/tcp\n    one-time-sequences: /etc/portolan/ssh.sequences\n", &Config{
		Doors: []Door{{Name: "door1", Protect: []DoorPort{{Proto: portspec.TCP, Port: 22}}, OneTime: "/etc/portolan/ssh.sequences"}}}, ""},
	{"one-time and sequence", "doors:\n  - protect: 22/tcp\n    sequence: 1\n    one-time-sequences: s\n", nil, "2:5: door 1: sequence and one-time-sequences: choose one"},
	{"no doors", "group: 9\n", nil, "1:1: doors: no doors"},
	{"unknown key", "doors:\n  - protect: 22\n    sequence: 1\n    colour: red\n", nil, `4:5: door 1: unknown key "colour"`},
	{"bad sequence", "doors:\n  - protect: 22\n    sequence: 7000,x\n", nil, "3:15: door 1: sequence: sequence \"7000,x\": column 6"},
	{"bad duration", "doors:\n  - protect: 22\n    sequence: 1\n    open-for: soon\n", nil, "4:15: door 1: open-for:"},
	{"no way in", "doors:\n  - protect: 22\n", nil, "neither a sequence nor SPA"},
	{"knock on protected", "doors:\n  - protect: 22\n    sequence: 22\n", nil, "is a port door door1 protects"},
	{"group range", "group: 70000\ndoors:\n  - protect: 22\n    sequence: 1\n", nil, "1:8: group:"},
	{"twice", "doors: []\ndoors: []\n", nil, "2:1: doors: given twice"},
	{"old key spelling", "doors:\n  - protect: 22\n    open_for: 1s\n", nil, `3:5: door 1: unknown key "open_for" (did you mean "open-for"?)`},
	{"not yaml", "doors: [\n", nil, "yaml"},
}

func TestParseConfig(t *testing.T) {
	for _, tc := range configCases {
		got, err := ParseConfig("knockd.yaml", []byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: ParseConfig error = %v; want one containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ParseConfig: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Config{}, "ServerPrivate"), cmpopts.IgnoreUnexported(Door{})); d != "" {
			t.Errorf("%s: ParseConfig (-want +got):\n%s", tc.name, d)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, tc := range configCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		cfg, err := ParseConfig("f.yaml", []byte(in))
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) && !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		for _, d := range cfg.Doors {
			if len(d.Sequence) > 0 {
				again, err := ParseSequence(FormatSequence(d.Sequence))
				if err != nil || !cmp.Equal(again, d.Sequence) {
					t.Fatalf("sequence %v does not round-trip: %v %v", d.Sequence, again, err)
				}
			}
		}
	})
}

func TestParseAuthorizedKeys(t *testing.T) {
	pub := base64.StdEncoding.EncodeToString(testPriv.Public().(ed25519.PublicKey))
	sec := base64.StdEncoding.EncodeToString(testHMAC)
	keys, err := ParseAuthorizedKeys("keys", []byte("# comment\n\ned25519 "+pub+" laptop nat ports=22/tcp max=1h\nhmac-sha256 "+sec+" phone\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("%d keys; want 2", len(keys))
	}
	k := keys[keyIDOf(Ed25519, testPriv.Public().(ed25519.PublicKey))]
	if k == nil || k.Name != "laptop" || !k.NAT || k.Max != time.Hour || !k.Ports.Has(portspec.TCP, 22) || k.Ports.Has(portspec.TCP, 23) {
		t.Errorf("laptop key = %+v", k)
	}
	for _, tc := range []struct{ in, err string }{
		{"ed25519 AAAA x", "keys:1:9: ed25519 public key of 3 bytes"},
		{"rsa " + pub + " x", "keys:1:1: key type \"rsa\""},
		{"ed25519 " + pub, "keys:1:1: want TYPE KEY NAME"},
		{"ed25519 " + pub + " a colour=red", "unknown option \"colour=red\""},
		{"ed25519 " + pub + " a ports=99999", "keys:1:62: ports:"},
		{"hmac-sha256 " + sec + " a\nhmac-sha256 " + sec + " b", "keys:2:13: the same key"},
		{"hmac-sha256 " + sec + " a\ned25519 " + pub + " a", "key name \"a\" already on line 1"},
	} {
		_, err := ParseAuthorizedKeys("keys", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseAuthorizedKeys(%q) = %v; want %q", tc.in, err, tc.err)
		}
	}
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	pub := base64.StdEncoding.EncodeToString(testPriv.Public().(ed25519.PublicKey))
	f.Add("ed25519 " + pub + " laptop nat ports=22/tcp max=1h\n")
	f.Add("hmac-sha256 " + base64.StdEncoding.EncodeToString(testHMAC) + " phone\n# x\n")
	f.Fuzz(func(t *testing.T, in string) {
		keys, err := ParseAuthorizedKeys("keys", []byte(in))
		if err != nil {
			var ke *KeysError
			if !errors.As(err, &ke) || ke.Line < 1 || ke.Col < 1 {
				t.Fatalf("error without a place: %v", err)
			}
			return
		}
		for id, k := range keys {
			if k.ID != id || k.Name == "" {
				t.Fatalf("key %v: id %v name %q", id, k.ID, k.Name)
			}
		}
	})
}

func TestClientKeyFiles(t *testing.T) {
	for _, alg := range []Alg{Ed25519, HMAC} {
		file, line, err := GenerateKey(alg, "laptop")
		if err != nil {
			t.Fatal(err)
		}
		ck, err := ParseClientKey("client.key", file)
		if err != nil {
			t.Fatalf("%s: ParseClientKey: %v", alg, err)
		}
		keys, err := ParseAuthorizedKeys("client.key.pub", line)
		if err != nil {
			t.Fatalf("%s: ParseAuthorizedKeys: %v", alg, err)
		}
		if string(ck.PublicLine("laptop")) != string(line) {
			t.Errorf("%s: PublicLine = %q; want %q", alg, ck.PublicLine("laptop"), line)
		}
		r := spaCases[0].req
		b, err := ck.Sign(&r)
		if err != nil {
			t.Fatal(err)
		}
		_, signed, auth, err := ParseSPA(b)
		if err != nil || keys[r.KeyID] == nil || !keys[r.KeyID].verify(signed, auth) {
			t.Errorf("%s: a request signed with the key file does not verify with its public line (%v)", alg, err)
		}
	}
	if _, err := ParseClientKey("x", []byte("hello")); err == nil {
		t.Error("ParseClientKey accepted junk")
	}
}

package knock

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"portolan/internal/firewall"
	"portolan/internal/portspec"
)

// DoorPort is a port with its protocol.
type DoorPort = firewall.DoorPort

// Key is one client's key as the server knows it: a line of an
// authorized-keys file.
//
//	ed25519 BASE64-PUBLIC-KEY NAME [nat] [ports=22/tcp,443/tcp] [max=1h]
//	hmac-sha256 BASE64-SECRET NAME [options]
//
// nat lets the request's allow-IP differ from the datagram's source (a
// client behind NAT that names its public address); ports limits what it
// may open (default: any protected port); max caps the duration.
type Key struct {
	Alg    Alg
	ID     KeyID
	Name   string
	Public ed25519.PublicKey // Ed25519
	Secret []byte            // HMAC
	NAT    bool
	Ports  *portspec.Set // nil: any protected port
	Max    time.Duration // 0: the door's
}

// KeysError names the file, line and column of a bad authorized-keys line.
type KeysError struct {
	File      string
	Line, Col int
	What      string
}

func (e *KeysError) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.What) }

// ParseAuthorizedKeys reads an authorized-keys file's text; name is for
// errors.
func ParseAuthorizedKeys(name string, text []byte) (map[KeyID]*Key, error) {
	keys := map[KeyID]*Key{}
	names := map[string]int{}
	for ln, line := range strings.Split(string(text), "\n") {
		bad := func(col int, format string, a ...any) error {
			return &KeysError{File: name, Line: ln + 1, Col: col + 1, What: fmt.Sprintf(format, a...)}
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		fields, cols := splitFields(line)
		if len(fields) < 3 {
			return nil, bad(cols[0], "want TYPE KEY NAME [options], got %d fields", len(fields))
		}
		k := &Key{Name: fields[2]}
		raw, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil {
			return nil, bad(cols[1], "key is not base64: %v", err)
		}
		switch fields[0] {
		case "ed25519":
			if len(raw) != ed25519.PublicKeySize {
				return nil, bad(cols[1], "ed25519 public key of %d bytes; want %d", len(raw), ed25519.PublicKeySize)
			}
			k.Alg, k.Public = Ed25519, ed25519.PublicKey(raw)
		case "hmac-sha256":
			if len(raw) < 16 {
				return nil, bad(cols[1], "hmac secret of %d bytes; want at least 16", len(raw))
			}
			k.Alg, k.Secret = HMAC, raw
		default:
			return nil, bad(cols[0], "key type %q; want ed25519 or hmac-sha256", fields[0])
		}
		if prev, ok := names[k.Name]; ok {
			return nil, bad(cols[2], "key name %q already on line %d", k.Name, prev)
		}
		names[k.Name] = ln + 1
		for i, opt := range fields[3:] {
			col := cols[3+i]
			key, val, hasVal := strings.Cut(opt, "=")
			switch {
			case key == "nat" && !hasVal:
				k.NAT = true
			case key == "ports" && hasVal:
				s, err := portspec.Parse(val)
				if err != nil {
					return nil, bad(col+len("ports="), "ports: %v", err)
				}
				k.Ports = s
			case key == "max" && hasVal:
				d, err := time.ParseDuration(val)
				if err != nil || d <= 0 {
					return nil, bad(col+len("max="), "max: %q is not a positive duration", val)
				}
				k.Max = d
			default:
				return nil, bad(col, "unknown option %q (want nat, ports=SPEC or max=DURATION)", opt)
			}
		}
		if k.Alg == Ed25519 {
			k.ID = keyIDOf(Ed25519, k.Public)
		} else {
			k.ID = keyIDOf(HMAC, k.Secret)
		}
		if _, dup := keys[k.ID]; dup {
			return nil, bad(cols[1], "the same key is already listed")
		}
		keys[k.ID] = k
	}
	return keys, nil
}

// splitFields splits on spaces and tabs and returns each field's column.
func splitFields(s string) (fields []string, cols []int) {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' || s[i] == '\t' || s[i] == '\r' {
			if start >= 0 {
				fields = append(fields, s[start:i])
				cols = append(cols, start)
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if len(cols) == 0 {
		cols = []int{0}
	}
	for len(cols) < 3 {
		cols = append(cols, cols[len(cols)-1])
	}
	return fields, cols
}

// ClientKey is a client's secret: an Ed25519 private key or an HMAC secret.
type ClientKey struct {
	Alg     Alg
	Private ed25519.PrivateKey
	Secret  []byte
}

// Sign encodes r authenticated with the key.
func (k *ClientKey) Sign(r *Request) ([]byte, error) {
	if k.Alg == HMAC {
		return r.SignHMAC(k.Secret)
	}
	return r.SignEd25519(k.Private)
}

// ParseClientKey reads a key file written by GenerateKey: a PKCS #8 PEM
// Ed25519 private key, or a line "hmac-sha256 BASE64".
func ParseClientKey(name string, text []byte) (*ClientKey, error) {
	if blk, _ := pem.Decode(text); blk != nil {
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", name, err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("read key %s: %T is not an ed25519 key", name, k)
		}
		return &ClientKey{Alg: Ed25519, Private: priv}, nil
	}
	f := strings.Fields(string(text))
	if len(f) >= 2 && f[0] == "hmac-sha256" {
		s, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(s) < 16 {
			return nil, fmt.Errorf("read key %s: hmac secret is not base64 of 16 bytes or more", name)
		}
		return &ClientKey{Alg: HMAC, Secret: s}, nil
	}
	return nil, fmt.Errorf("read key %s: neither an ed25519 PEM private key nor an hmac-sha256 line", name)
}

// GenerateKey makes a new client key and returns the key file's text and
// the authorized-keys line for the server, naming the key name.
func GenerateKey(alg Alg, name string) (keyFile, authLine []byte, err error) {
	if err := checkKeyName(name); err != nil {
		return nil, nil, err
	}
	switch alg {
	case Ed25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		if keyFile, err = pemPrivateKey(priv); err != nil {
			return nil, nil, err
		}
		authLine = fmt.Appendf(nil, "ed25519 %s %s\n", base64.StdEncoding.EncodeToString(pub), name)
	case HMAC:
		s := make([]byte, 32)
		rand.Read(s)
		b := base64.StdEncoding.EncodeToString(s)
		keyFile = fmt.Appendf(nil, "hmac-sha256 %s\n", b)
		authLine = fmt.Appendf(nil, "hmac-sha256 %s %s\n", b, name)
	default:
		return nil, nil, fmt.Errorf("key algorithm %s", alg)
	}
	return keyFile, authLine, nil
}

func checkKeyName(name string) error {
	if strings.ContainsAny(name, " \t\n") || name == "" {
		return fmt.Errorf("key name %q: want one word", name)
	}
	return nil
}

// pemPrivateKey encodes a private key as a PKCS #8 PEM block.
func pemPrivateKey(priv any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKeyPair writes GenerateKey's output to path (mode 0600) and
// path.pub (0644, or 0600 for an HMAC secret), refusing to overwrite.
func WriteKeyPair(path string, alg Alg, name string) error {
	key, line, err := GenerateKey(alg, name)
	if err != nil {
		return err
	}
	pubMode := os.FileMode(0o644)
	if alg == HMAC {
		pubMode = 0o600
	}
	return writePair(path, key, line, pubMode)
}

// WriteServerKeyPair writes GenerateServerKey's output to path (mode
// 0600) and path.pub (0644), refusing to overwrite.
func WriteServerKeyPair(path, name string) error {
	key, line, err := GenerateServerKey(name)
	if err != nil {
		return err
	}
	return writePair(path, key, line, 0o644)
}

func writePair(path string, key, line []byte, pubMode os.FileMode) error {
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{path, key, 0o600}, {path + ".pub", line, pubMode}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return fmt.Errorf("write key: %w", err)
		}
		_, err = fh.Write(f.data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write key %s: %w", f.path, err)
		}
	}
	return nil
}

// PublicLine returns the authorized-keys line of a client key.
func (k *ClientKey) PublicLine(name string) []byte {
	if k.Alg == HMAC {
		return fmt.Appendf(nil, "hmac-sha256 %s %s\n", base64.StdEncoding.EncodeToString(k.Secret), name)
	}
	return fmt.Appendf(nil, "ed25519 %s %s\n", base64.StdEncoding.EncodeToString(k.Private.Public().(ed25519.PublicKey)), name)
}

package knock

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// A sealed SPA datagram (version 2) hides a version-1 datagram from
// observers: who asks (the key id), for which address and which ports.
//
//	off  len  field
//	0    2    magic "PK"
//	2    1    version (2)
//	3    32   the client's one-time X25519 public key
//	35   n+16 AES-256-GCM of the version-1 datagram, its tag last
//
// The AES key is HKDF-SHA256 of the X25519 shared secret, with the two
// public keys (the client's, then the server's) as salt and "portolan spa
// v2" as info. A key serves one datagram only, so the GCM nonce is zero;
// bytes 0 to 34 are the additional data.
const (
	SealVersion = 2
	sealHeader  = 3 + 32
	sealInfo    = "portolan spa v2"
)

// Seal encrypts a version-1 datagram to the server's public key.
func Seal(datagram []byte, server *ecdh.PublicKey) ([]byte, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	aead, err := sealAEAD(eph, server, eph.PublicKey(), server)
	if err != nil {
		return nil, fmt.Errorf("seal spa request: %w", err)
	}
	b := make([]byte, sealHeader, sealHeader+len(datagram)+aead.Overhead())
	b[0], b[1], b[2] = spaMagic0, spaMagic1, SealVersion
	copy(b[3:], eph.PublicKey().Bytes())
	return aead.Seal(b, make([]byte, aead.NonceSize()), datagram, b[:sealHeader]), nil
}

// Unseal decrypts a sealed datagram with the server's private key and
// returns the version-1 datagram inside.
func Unseal(b []byte, server *ecdh.PrivateKey) ([]byte, error) {
	if len(b) < sealHeader+16 {
		return nil, &SPAError{Offset: 0, What: fmt.Sprintf("%d bytes, shorter than a sealed request's %d-byte header and 16-byte tag", len(b), sealHeader)}
	}
	if b[0] != spaMagic0 || b[1] != spaMagic1 {
		return nil, &SPAError{Offset: 0, What: fmt.Sprintf("magic %q; want \"PK\"", b[:2])}
	}
	if b[2] != SealVersion {
		return nil, &SPAError{Offset: 2, What: fmt.Sprintf("version %d; want %d (sealed)", b[2], SealVersion)}
	}
	eph, err := ecdh.X25519().NewPublicKey(b[3:sealHeader])
	if err != nil {
		return nil, &SPAError{Offset: 3, What: "not an X25519 public key"}
	}
	aead, err := sealAEAD(server, eph, eph, server.PublicKey())
	if err != nil {
		return nil, &SPAError{Offset: 3, What: err.Error()}
	}
	out, err := aead.Open(nil, make([]byte, aead.NonceSize()), b[sealHeader:], b[:sealHeader])
	if err != nil {
		return nil, &SPAError{Offset: sealHeader, What: "does not decrypt with this server's key"}
	}
	return out, nil
}

// IsSealed reports whether b claims to be a sealed datagram.
func IsSealed(b []byte) bool {
	return len(b) > 2 && b[0] == spaMagic0 && b[1] == spaMagic1 && b[2] == SealVersion
}

// sealAEAD derives the cipher from our private key and their public key;
// the salt is the client's public key, then the server's.
func sealAEAD(priv *ecdh.PrivateKey, pub, client, server *ecdh.PublicKey) (cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	salt := append(client.Bytes(), server.Bytes()...)
	key, err := hkdf.Key(sha256.New, shared, salt, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// GenerateServerKey makes a server's X25519 key pair: the key file (PKCS
// #8 PEM, for knockd's server-key) and the public line for clients
// ("x25519 BASE64 NAME", for portolan knock --server-key).
func GenerateServerKey(name string) (keyFile, pubLine []byte, err error) {
	if err := checkKeyName(name); err != nil {
		return nil, nil, err
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if keyFile, err = pemPrivateKey(priv); err != nil {
		return nil, nil, err
	}
	pubLine = fmt.Appendf(nil, "x25519 %s %s\n", base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes()), name)
	return keyFile, pubLine, nil
}

// ParseServerKey reads a server key file written by GenerateServerKey.
func ParseServerKey(name string, text []byte) (*ecdh.PrivateKey, error) {
	blk, _ := pem.Decode(text)
	if blk == nil {
		return nil, fmt.Errorf("read server key %s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read server key %s: %w", name, err)
	}
	priv, ok := k.(*ecdh.PrivateKey)
	if !ok || priv.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("read server key %s: %T is not an x25519 key", name, k)
	}
	return priv, nil
}

// ReadServerKey reads ParseServerKey's file from path.
func ReadServerKey(path string) (*ecdh.PrivateKey, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read server key: %w", err)
	}
	return ParseServerKey(path, text)
}

// ParseServerPublicKey reads a server's public line, "x25519 BASE64
// [NAME]"; errors name the file, line 1 and the column.
func ParseServerPublicKey(name string, text []byte) (*ecdh.PublicKey, error) {
	line, _, _ := strings.Cut(string(text), "\n")
	f, cols := splitFields(line)
	if len(f) < 2 || f[0] != "x25519" {
		return nil, &KeysError{File: name, Line: 1, Col: cols[0] + 1, What: "want \"x25519 BASE64 [NAME]\" (portolan knock keygen --server's .pub file)"}
	}
	b, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return nil, &KeysError{File: name, Line: 1, Col: cols[1] + 1, What: "not base64"}
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, &KeysError{File: name, Line: 1, Col: cols[1] + 1, What: fmt.Sprintf("%d bytes; want a 32-byte x25519 key", len(b))}
	}
	return pub, nil
}

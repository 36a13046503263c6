package knock

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"portolan/internal/portspec"
)

// The SPA datagram, version 1 (all integers big-endian; docs/knock.md):
//
//	off  len  field
//	0    2    magic "PK"
//	2    1    version (1)
//	3    1    algorithm: 1 Ed25519, 2 HMAC-SHA256
//	4    8    key id: the first 8 bytes of SHA-256 of the public key (Ed25519) or of "hmac:" + secret
//	12   8    timestamp: unix milliseconds
//	20   16   nonce, random
//	36   1    allow-IP family: 4 or 6
//	37   16   allow-IP (IPv4 in the first 4 bytes, the rest zero)
//	53   4    duration in seconds (0: the door's own)
//	57   1    port count n, 1 to MaxPorts
//	58   3n   ports: protocol (6 TCP, 17 UDP), port
//	58+3n     signature (64 bytes) or MAC (32 bytes) over all bytes before it
const (
	spaMagic0, spaMagic1 = 'P', 'K'
	SPAVersion           = 1
	spaFixed             = 58
	// MaxPorts is the most ports one SPA request may name.
	MaxPorts = 16
)

// Alg is how a request is authenticated.
type Alg uint8

// The algorithms.
const (
	Ed25519 Alg = 1
	HMAC    Alg = 2
)

func (a Alg) String() string {
	switch a {
	case Ed25519:
		return "ed25519"
	case HMAC:
		return "hmac-sha256"
	}
	return fmt.Sprintf("alg(%d)", a)
}

func (a Alg) authLen() int {
	if a == Ed25519 {
		return ed25519.SignatureSize
	}
	return sha256.Size
}

// KeyID names a key in a request.
type KeyID [8]byte

func (k KeyID) String() string { return fmt.Sprintf("%x", k[:]) }

// Request is what an SPA datagram asks for.
type Request struct {
	Alg      Alg
	KeyID    KeyID
	Time     time.Time // millisecond precision
	Nonce    [16]byte
	AllowIP  netip.Addr // the address to open for
	Duration time.Duration
	Ports    []DoorPort
}

// SPAError says what is wrong with a datagram and where.
type SPAError struct {
	Offset int
	What   string
}

func (e *SPAError) Error() string {
	return fmt.Sprintf("spa datagram at byte %d: %s", e.Offset, e.What)
}

// marshal encodes r without its signature.
func (r *Request) marshal() ([]byte, error) {
	if len(r.Ports) == 0 || len(r.Ports) > MaxPorts {
		return nil, fmt.Errorf("spa request: %d ports; want 1 to %d", len(r.Ports), MaxPorts)
	}
	if !r.AllowIP.IsValid() {
		return nil, errors.New("spa request: no address to allow")
	}
	if r.Duration < 0 || r.Duration > time.Duration(1<<32-1)*time.Second {
		return nil, fmt.Errorf("spa request: duration %v out of range", r.Duration)
	}
	b := make([]byte, spaFixed, spaFixed+3*len(r.Ports)+ed25519.SignatureSize)
	b[0], b[1], b[2], b[3] = spaMagic0, spaMagic1, SPAVersion, byte(r.Alg)
	copy(b[4:12], r.KeyID[:])
	binary.BigEndian.PutUint64(b[12:], uint64(r.Time.UnixMilli()))
	copy(b[20:36], r.Nonce[:])
	a := r.AllowIP.Unmap()
	if a.Is4() {
		b[36] = 4
	} else {
		b[36] = 6
	}
	copy(b[37:53], a.AsSlice())
	binary.BigEndian.PutUint32(b[53:], uint32((r.Duration+time.Second-1)/time.Second))
	b[57] = byte(len(r.Ports))
	for _, p := range r.Ports {
		n, ok := protoNumbers[p.Proto]
		if !ok {
			return nil, fmt.Errorf("spa request: protocol %s", p.Proto)
		}
		b = append(b, n, byte(p.Port>>8), byte(p.Port))
	}
	return b, nil
}

var protoNumbers = map[portspec.Proto]byte{portspec.TCP: 6, portspec.UDP: 17}

// SignEd25519 returns r as a datagram signed with priv; it sets r's Alg and
// KeyID.
func (r *Request) SignEd25519(priv ed25519.PrivateKey) ([]byte, error) {
	r.Alg = Ed25519
	r.KeyID = keyIDOf(Ed25519, priv.Public().(ed25519.PublicKey))
	b, err := r.marshal()
	if err != nil {
		return nil, err
	}
	return append(b, ed25519.Sign(priv, b)...), nil
}

// SignHMAC returns r as a datagram authenticated with secret; it sets r's
// Alg and KeyID.
func (r *Request) SignHMAC(secret []byte) ([]byte, error) {
	r.Alg = HMAC
	r.KeyID = keyIDOf(HMAC, secret)
	b, err := r.marshal()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, secret)
	m.Write(b)
	return m.Sum(b), nil
}

func keyIDOf(a Alg, key []byte) KeyID {
	h := sha256.New()
	if a == HMAC {
		h.Write([]byte("hmac:"))
	}
	h.Write(key)
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// ParseSPA decodes a datagram without checking its authentication: it
// returns the request, the signed bytes and the signature or MAC.
func ParseSPA(b []byte) (r Request, signed, auth []byte, err error) {
	bad := func(off int, format string, a ...any) (Request, []byte, []byte, error) {
		return Request{}, nil, nil, &SPAError{Offset: off, What: fmt.Sprintf(format, a...)}
	}
	if len(b) < spaFixed {
		return bad(0, "%d bytes, shorter than the %d-byte header", len(b), spaFixed)
	}
	if b[0] != spaMagic0 || b[1] != spaMagic1 {
		return bad(0, "magic %q; want \"PK\"", b[:2])
	}
	if b[2] != SPAVersion {
		return bad(2, "version %d; want %d", b[2], SPAVersion)
	}
	r.Alg = Alg(b[3])
	if r.Alg != Ed25519 && r.Alg != HMAC {
		return bad(3, "algorithm %d", b[3])
	}
	copy(r.KeyID[:], b[4:12])
	ms := binary.BigEndian.Uint64(b[12:])
	if ms > 1<<62 {
		return bad(12, "timestamp %d out of range", ms)
	}
	r.Time = time.UnixMilli(int64(ms))
	copy(r.Nonce[:], b[20:36])
	switch b[36] {
	case 4:
		r.AllowIP = netip.AddrFrom4([4]byte(b[37:41]))
		for _, c := range b[41:53] {
			if c != 0 {
				return bad(41, "bytes after an IPv4 address are not zero")
			}
		}
	case 6:
		r.AllowIP = netip.AddrFrom16([16]byte(b[37:53]))
		if r.AllowIP.Is4In6() {
			return bad(37, "IPv4-mapped address with family 6")
		}
	default:
		return bad(36, "address family %d; want 4 or 6", b[36])
	}
	r.Duration = time.Duration(binary.BigEndian.Uint32(b[53:])) * time.Second
	n := int(b[57])
	if n == 0 || n > MaxPorts {
		return bad(57, "%d ports; want 1 to %d", n, MaxPorts)
	}
	end := spaFixed + 3*n
	if len(b) != end+r.Alg.authLen() {
		return bad(min(len(b), end), "%d bytes; want %d with %d ports and %s", len(b), end+r.Alg.authLen(), n, r.Alg)
	}
	r.Ports = make([]DoorPort, n)
	for i := range n {
		off := spaFixed + 3*i
		var proto portspec.Proto
		switch b[off] {
		case 6:
			proto = portspec.TCP
		case 17:
			proto = portspec.UDP
		default:
			return bad(off, "protocol %d; want 6 or 17", b[off])
		}
		port := binary.BigEndian.Uint16(b[off+1:])
		if port == 0 {
			return bad(off+1, "port 0")
		}
		r.Ports[i] = DoorPort{Proto: proto, Port: portspec.Port(port)}
	}
	return r, b[:end], b[end:], nil
}

// verify checks auth over signed with key k.
func (k *Key) verify(signed, auth []byte) bool {
	switch k.Alg {
	case Ed25519:
		return len(auth) == ed25519.SignatureSize && ed25519.Verify(k.Public, signed, auth)
	case HMAC:
		m := hmac.New(sha256.New, k.Secret)
		m.Write(signed)
		return hmac.Equal(m.Sum(nil), auth)
	}
	return false
}

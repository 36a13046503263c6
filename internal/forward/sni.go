package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// A TLS ClientHello parser for SNI routing: it reads the server name (and
// the ALPN list) from the first bytes of a connection, the way nginx's
// ssl_preread and HAProxy's req.ssl_sni do, without terminating TLS. It
// is pure so that it can be fuzzed and tested anywhere.

// maxHelloBytes bounds what is read to find a ClientHello, record headers
// included: a client whose hello does not fit is refused. Real hellos are
// 200 to 2,000 bytes (with a post-quantum key share).
const maxHelloBytes = 16 << 10

// Record and handshake framing (RFC 8446, sections 5.1 and 4).
const (
	recordHeaderLen   = 5
	recordHandshake   = 0x16
	maxRecordLen      = 1 << 14 // plaintext records are at most 2^14 bytes
	handshakeHello    = 1
	handshakeHeadLen  = 4
	extServerName     = 0
	extALPN           = 16
	serverNameHost    = 0
	maxServerNameLen  = 255
	maxSessionIDLen   = 32
	clientRandomLen   = 32
	sslv2HelloHeadLen = 5 // length (2), message type (1), version (2)
)

// ErrShortHello means the bytes so far are a valid start of a ClientHello:
// read more.
var ErrShortHello = errors.New("tls client hello: incomplete")

// ClientHello is what SNI routing learns from a TLS ClientHello.
type ClientHello struct {
	// ServerName is the server_name extension's host name in lower case
	// without a trailing dot; empty when the client sent none (clients
	// send none for IP addresses).
	ServerName string
	ALPN       []string // protocols offered, in the client's order; nil: no ALPN extension
	// SSLv2 is set for an SSLv2-compatible hello (some old clients start
	// with one). It has no extensions, so no server name.
	SSLv2 bool
}

// ParseClientHello reads the ClientHello at the start of b, which may be
// split over several TLS records. It returns the hello and the number of
// bytes up to its last byte; ErrShortHello if b is a valid but incomplete
// start (never once b holds maxHelloBytes); other errors name the byte
// offset in b and what was wrong there.
func ParseClientHello(b []byte) (ClientHello, int, error) {
	var p helloParser
	return p.next(b)
}

func helloErr(off int, format string, args ...any) error {
	return fmt.Errorf("tls client hello: offset %d: %s", off, fmt.Sprintf(format, args...))
}

// parseSSLv2Hello reads the header of an SSLv2-compatible ClientHello
// (RFC 5246, appendix E.2): enough to know it is one.
func parseSSLv2Hello(b []byte) (ClientHello, int, error) {
	if len(b) > 2 && b[2] != handshakeHello {
		return ClientHello{}, 0, helloErr(2, "SSLv2 message type %d, want 1 (CLIENT-HELLO)", b[2])
	}
	if len(b) > 3 && b[3] != 0 && b[3] != 3 {
		return ClientHello{}, 0, helloErr(3, "SSLv2 hello version major %d, want 0 or 3", b[3])
	}
	if len(b) < sslv2HelloHeadLen {
		return ClientHello{}, 0, ErrShortHello
	}
	return ClientHello{SSLv2: true}, sslv2HelloHeadLen, nil
}

// helloParser reassembles the handshake message from its records and
// reads it; errors map offsets in the message back to offsets in the input.
//
// It resumes where it stopped: next may be called again with the same
// bytes and more after ErrShortHello, and then looks only at what it has
// not taken yet, so a client that sends its hello a byte at a time costs
// linear time, not quadratic.
type helloParser struct {
	in    []byte
	msg   []byte // the handshake message from the complete records so far
	owned bool   // msg is the parser's own buffer, not a part of in
	recs  []recordSpan
	arr   [4]recordSpan
	pos   int // where the next record header starts in in
	need  int // the message's length with its header; 0 while unknown
}

// recordSpan is where a record's payload starts in the message and in the input.
type recordSpan struct{ msg, in int }

// next parses b, which starts with the bytes of earlier calls.
func (p *helloParser) next(b []byte) (ClientHello, int, error) {
	switch {
	case len(b) == 0:
		return ClientHello{}, 0, ErrShortHello
	case b[0]&0x80 != 0:
		return parseSSLv2Hello(b)
	}
	p.in = b
	if p.recs == nil {
		p.recs = p.arr[:0]
	}
	return p.parse()
}

// inputOffset maps an offset in the handshake message to one in the input.
func (p *helloParser) inputOffset(m int) int {
	r := p.recs[0]
	for _, s := range p.recs[1:] {
		if s.msg > m {
			break
		}
		r = s
	}
	return r.in + m - r.msg
}

func (p *helloParser) errAt(m int, format string, args ...any) error {
	return helloErr(p.inputOffset(m), format, args...)
}

// join returns the message so far with payload after it, without
// changing p.msg: what it appends sits in the spare room of an owned
// buffer until the record is taken.
func (p *helloParser) join(payload []byte) []byte {
	if len(p.msg) == 0 {
		return payload // the usual case: one record, no copy
	}
	if !p.owned {
		p.msg = append(make([]byte, 0, 2*len(p.msg)+len(payload)), p.msg...)
		p.owned = true
	}
	return append(p.msg, payload...)
}

func (p *helloParser) parse() (ClientHello, int, error) {
	b := p.in
	for {
		pos := p.pos
		// The record header, checked as far as it has arrived.
		if pos < len(b) && b[pos] != recordHandshake {
			return ClientHello{}, 0, helloErr(pos, "record type %s, want a TLS handshake (0x16)%s", byteName(b[pos]), notTLSHint(b[pos:]))
		}
		if pos+1 < len(b) && b[pos+1] != 3 {
			return ClientHello{}, 0, helloErr(pos+1, "record version major %d, want 3 (TLS)", b[pos+1])
		}
		if len(b) < pos+recordHeaderLen {
			return p.short(pos)
		}
		n := int(binary.BigEndian.Uint16(b[pos+3:]))
		switch {
		case n == 0:
			return ClientHello{}, 0, helloErr(pos+3, "empty handshake record")
		case n > maxRecordLen:
			return ClientHello{}, 0, helloErr(pos+3, "record length %d is over %d", n, maxRecordLen)
		}
		start := pos + recordHeaderLen
		payload := b[start:min(start+n, len(b))]
		p.recs = append(p.recs, recordSpan{msg: len(p.msg), in: start})
		if p.need == 0 {
			// Only the handshake header's bytes: a large record that
			// arrives slowly is not copied again on each read.
			hdr := p.join(payload[:min(len(payload), max(0, handshakeHeadLen-len(p.msg)))])
			var err error
			if p.need, err = p.header(hdr); err != nil {
				return ClientHello{}, 0, err
			}
		}
		if p.need > 0 && len(p.msg)+len(payload) >= p.need {
			msg := p.join(payload)
			h, err := p.body(msg[:p.need])
			if err != nil {
				return ClientHello{}, 0, err
			}
			return h, p.inputOffset(p.need-1) + 1, nil
		}
		if len(payload) < n {
			p.recs = p.recs[:len(p.recs)-1] // taken again when complete
			return p.short(start + len(payload))
		}
		p.msg = p.join(payload)
		p.pos = start + n
	}
}

// short says to read more, unless the bound is reached.
func (p *helloParser) short(at int) (ClientHello, int, error) {
	if len(p.in) >= maxHelloBytes {
		return ClientHello{}, 0, helloErr(at, "no complete ClientHello in the first %d bytes", maxHelloBytes)
	}
	return ClientHello{}, 0, ErrShortHello
}

// header checks the handshake header in m as far as it has arrived and
// returns the message's whole length, or 0 if that is not known yet.
func (p *helloParser) header(m []byte) (int, error) {
	if len(m) > 0 && m[0] != handshakeHello {
		return 0, p.errAt(0, "handshake message type %d, want 1 (ClientHello)", m[0])
	}
	if len(m) < handshakeHeadLen {
		return 0, nil
	}
	n := int(m[1])<<16 | int(m[2])<<8 | int(m[3])
	// The records' headers count against the bound too: at least the first one.
	if max := maxHelloBytes - recordHeaderLen - handshakeHeadLen; n > max {
		return 0, p.errAt(1, "ClientHello length %d is over %d", n, max)
	}
	return handshakeHeadLen + n, nil
}

// helloReader reads the fields of a complete ClientHello message, or of
// one of its extensions (base is where that starts in the message).
type helloReader struct {
	p    *helloParser
	m    []byte
	base int
	off  int
	err  error
}

// take returns the next n bytes, or nil after recording that the message
// ends inside what.
func (r *helloReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.m)-r.off < n {
		r.err = r.p.errAt(r.base+r.off, "ends inside the %s (%d bytes wanted, %d left)", what, n, len(r.m)-r.off)
		return nil
	}
	b := r.m[r.off : r.off+n]
	r.off += n
	return b
}

func (r *helloReader) u8(what string) int {
	if b := r.take(1, what); b != nil {
		return int(b[0])
	}
	return 0
}

func (r *helloReader) u16(what string) int {
	if b := r.take(2, what); b != nil {
		return int(binary.BigEndian.Uint16(b))
	}
	return 0
}

// fail records an error at offset at (of the reader's bytes) unless one is recorded.
func (r *helloReader) fail(at int, format string, args ...any) {
	if r.err == nil {
		r.err = r.p.errAt(r.base+at, format, args...)
	}
}

func (p *helloParser) body(m []byte) (ClientHello, error) {
	r := &helloReader{p: p, m: m, off: handshakeHeadLen}
	if v := r.take(2, "version"); v != nil && v[0] != 3 {
		r.fail(r.off-2, "ClientHello version %d.%d, want 3.x", v[0], v[1])
	}
	r.take(clientRandomLen, "random")
	at := r.off
	n := r.u8("session id length")
	if n > maxSessionIDLen {
		r.fail(at, "session id length %d is over %d", n, maxSessionIDLen)
	}
	r.take(n, "session id")
	at = r.off
	n = r.u16("cipher suites length")
	if r.err == nil && (n < 2 || n%2 != 0) {
		r.fail(at, "cipher suites length %d, want an even number of 2 or more", n)
	}
	r.take(n, "cipher suites")
	at = r.off
	n = r.u8("compression methods length")
	if r.err == nil && n < 1 {
		r.fail(at, "no compression methods")
	}
	r.take(n, "compression methods")
	var h ClientHello
	if r.err != nil || r.off == len(m) {
		return h, r.err // no extensions (TLS 1.0 clients may send none)
	}
	at = r.off
	n = r.u16("extensions length")
	if r.err == nil && n != len(m)-r.off {
		r.fail(at, "extensions length %d, but %d bytes are left in the ClientHello", n, len(m)-r.off)
	}
	var seenArr [32]uint16
	seen := seenArr[:0]
	for r.err == nil && r.off < len(m) {
		at := r.off
		typ := r.u16("extension type")
		data := r.take(r.u16("extension length"), "extension")
		if r.err != nil {
			break
		}
		for _, s := range seen {
			if s == uint16(typ) {
				r.fail(at, "extension %d given twice", typ)
			}
		}
		seen = append(seen, uint16(typ))
		switch {
		case r.err != nil:
		case typ == extServerName:
			h.ServerName, r.err = p.serverName(data, at+4)
		case typ == extALPN:
			h.ALPN, r.err = p.alpn(data, at+4)
		}
	}
	if r.err != nil {
		return ClientHello{}, r.err
	}
	return h, nil
}

// serverName reads the server_name extension (RFC 6066, section 3); at
// is its offset in the message.
func (p *helloParser) serverName(b []byte, at int) (string, error) {
	r := &helloReader{p: p, m: b, base: at}
	if n := r.u16("server name list"); r.err == nil && n != len(b)-2 {
		r.fail(0, "server name list length %d, but the extension holds %d bytes", n, len(b)-2)
	}
	name := ""
	for r.err == nil && r.off < len(b) {
		typAt := r.off
		typ := r.u8("server name type")
		nameAt := r.off + 2
		v := r.take(r.u16("server name length"), "server name")
		switch {
		case r.err != nil:
		case typ != serverNameHost:
			// Unknown name types are skipped, as crypto/tls does.
		case name != "":
			r.fail(typAt, "a second host name")
		default:
			var i int
			var err error
			if name, i, err = hostName(v); err != nil {
				r.fail(nameAt+i, "server name %q: %v", v, err)
			}
		}
	}
	if r.err == nil && name == "" {
		r.fail(0, "server_name extension without a host name")
	}
	return name, r.err
}

// hostName checks a server name and returns it in lower case without a
// trailing dot, or the index of the offending byte and what is wrong.
// Only printable ASCII is accepted (RFC 6066 wants A-labels), so a name
// is safe to log.
func hostName(v []byte) (string, int, error) {
	if len(v) > maxServerNameLen {
		return "", 0, fmt.Errorf("%d bytes long, over %d", len(v), maxServerNameLen)
	}
	for i, c := range v {
		if c <= ' ' || c >= 0x7f {
			return "", i, fmt.Errorf("byte %s is not allowed in a host name", byteName(c))
		}
	}
	s := strings.ToLower(strings.TrimSuffix(string(v), "."))
	if s == "" {
		return "", 0, errors.New("empty")
	}
	return s, 0, nil
}

// alpn reads the application_layer_protocol_negotiation extension
// (RFC 7301, section 3.1); at is its offset in the message.
func (p *helloParser) alpn(b []byte, at int) ([]string, error) {
	r := &helloReader{p: p, m: b, base: at}
	if n := r.u16("ALPN protocol list"); r.err == nil && (n != len(b)-2 || n == 0) {
		r.fail(0, "ALPN protocol list length %d, but the extension holds %d bytes", n, len(b)-2)
	}
	out := []string{}
	for r.err == nil && r.off < len(b) {
		pAt := r.off
		v := r.take(r.u8("ALPN protocol length"), "ALPN protocol")
		if r.err == nil && len(v) == 0 {
			r.fail(pAt, "empty ALPN protocol name")
		}
		out = append(out, string(v))
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// byteName shows a byte in hex, with its character when printable.
func byteName(c byte) string {
	if c > ' ' && c < 0x7f {
		return fmt.Sprintf("%#02x (%q)", c, c)
	}
	return fmt.Sprintf("%#02x", c)
}

// notTLSHint names what a connection that is not TLS looks like, from
// the bytes at hand (so more bytes can give a hint where fewer gave none).
func notTLSHint(b []byte) string {
	for _, p := range []string{"GET ", "POST ", "HEAD ", "PUT ", "OPTIONS ", "CONNECT ", "PRI * HTTP/2"} {
		if len(b) >= 3 && strings.HasPrefix(p, string(b[:min(len(b), len(p))])) {
			return "; looks like plain HTTP"
		}
	}
	if len(b) >= 4 && string(b[:4]) == "SSH-" {
		return "; looks like SSH"
	}
	if string(b[:min(len(b), 5)]) == "PROXY" || (len(b) >= 2 && b[0] == '\r' && b[1] == '\n') {
		return "; looks like a PROXY header (is the peer in accept-proxy?)"
	}
	return ""
}

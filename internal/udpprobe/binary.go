package udpprobe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// be appends big-endian integers.
func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// need reports a reply shorter than n bytes.
func need(proto string, b []byte, n int) error {
	if len(b) < n {
		return perr(proto, len(b), "reply of %d bytes, need %d", len(b), n)
	}
	return nil
}

// NTP (RFC 5905 7.3): a mode 3 (client) packet of version 4 whose
// transmit timestamp the server copies into its reply's origin timestamp.
var ntpTransmit = [8]byte{'p', 'o', 'r', 't', 'o', 'l', 'a', 'n'}

var ntpRequest = func() []byte {
	b := make([]byte, 48)
	b[0] = 0<<6 | 4<<3 | 3 // LI 0, VN 4, mode 3
	copy(b[40:], ntpTransmit[:])
	return b
}()

func parseNTP(b []byte) (string, error) {
	if err := need("ntp", b, 48); err != nil {
		return "", err
	}
	if mode := b[0] & 7; mode != 4 {
		return "", perr("ntp", 0, "mode %d, want 4 (server)", mode)
	}
	if vn := b[0] >> 3 & 7; vn < 1 || vn > 4 {
		return "", perr("ntp", 0, "version %d", vn)
	}
	if !bytes.Equal(b[24:32], ntpTransmit[:]) {
		return "", perr("ntp", 24, "origin timestamp is not our transmit timestamp")
	}
	info := fmt.Sprintf("v%d stratum %d", b[0]>>3&7, b[1])
	if b[1] == 1 { // a primary server: the reference ID is its clock's name
		info += " refid " + printable(b[12:16], 4)
	}
	if b[0]>>6 == 3 {
		info += " (unsynchronized)"
	}
	return info, nil
}

// ISAKMP (RFC 2408, 2409): IKEv1 main mode with one proposal of common
// transforms, and IKEv2 (RFC 7296) IKE_SA_INIT with a MODP-2048 key share.
// Either way the responder answers with its own SA or a notification
// (NO-PROPOSAL-CHOSEN, INVALID_KE_PAYLOAD), both after our SPI.
var ikeSPI = [8]byte{'p', 'o', 'r', 't', 'o', 'l', 'a', 'n'}

var ikev1MainMode = func() []byte {
	tv := func(b []byte, typ, v uint16) []byte { return be16(be16(b, 0x8000|typ), v) }
	transform := func(num byte, last bool, enc, hash, group uint16) []byte {
		var a []byte
		a = tv(a, 1, enc) // encryption
		if enc == 7 {
			a = tv(a, 14, 128) // AES key length
		}
		a = tv(a, 2, hash)   // hash
		a = tv(a, 3, 1)      // authentication: pre-shared key
		a = tv(a, 4, group)  // group
		a = tv(a, 11, 1)     // life type: seconds
		a = tv(a, 12, 28800) // life duration
		next := byte(3)
		if last {
			next = 0
		}
		t := []byte{next, 0}
		t = be16(t, uint16(8+len(a)))
		t = append(t, num, 1, 0, 0) // transform ID KEY_IKE
		return append(t, a...)
	}
	var ts []byte
	ts = append(ts, transform(1, false, 7, 2, 14)...) // AES-128, SHA-1, MODP-2048
	ts = append(ts, transform(2, false, 7, 2, 2)...)  // AES-128, SHA-1, MODP-1024
	ts = append(ts, transform(3, false, 5, 2, 2)...)  // 3DES, SHA-1, MODP-1024
	ts = append(ts, transform(4, true, 5, 1, 2)...)   // 3DES, MD5, MODP-1024
	prop := be16([]byte{0, 0}, uint16(8+len(ts)))
	prop = append(prop, 1, 1, 0, 4) // proposal 1, PROTO_ISAKMP, no SPI, 4 transforms
	prop = append(prop, ts...)
	sa := be16([]byte{0, 0}, uint16(12+len(prop)))
	sa = be32(sa, 1) // DOI IPsec
	sa = be32(sa, 1) // SIT_IDENTITY_ONLY
	sa = append(sa, prop...)
	return ikeHeader(1, 0x10, 2, 0, sa)
}()

var ikev2SAInit = func() []byte {
	transform := func(last bool, typ byte, id uint16, keyLen uint16) []byte {
		var a []byte
		if keyLen != 0 {
			a = be16(be16(a, 0x800e), keyLen)
		}
		next := byte(3)
		if last {
			next = 0
		}
		t := be16([]byte{next, 0}, uint16(8+len(a)))
		t = append(t, typ, 0)
		t = be16(t, id)
		return append(t, a...)
	}
	var ts []byte
	ts = append(ts, transform(false, 1, 12, 128)...) // ENCR_AES_CBC 128
	ts = append(ts, transform(false, 2, 5, 0)...)    // PRF_HMAC_SHA2_256
	ts = append(ts, transform(false, 3, 12, 0)...)   // AUTH_HMAC_SHA2_256_128
	ts = append(ts, transform(true, 4, 14, 0)...)    // DH group 14 (MODP-2048)
	prop := be16([]byte{0, 0}, uint16(8+len(ts)))
	prop = append(prop, 1, 1, 0, 4) // proposal 1, IKE, no SPI, 4 transforms
	prop = append(prop, ts...)
	sa := be16([]byte{34, 0}, uint16(4+len(prop))) // next: KE
	sa = append(sa, prop...)
	ke := be16([]byte{40, 0}, 8+256) // next: Nonce
	ke = be16(ke, 14)
	ke = append(ke, 0, 0)
	ke = append(ke, bytes.Repeat([]byte{0x5a}, 256)...) // any value in (1, p-1)
	nonce := be16([]byte{0, 0}, 4+32)
	nonce = append(nonce, bytes.Repeat([]byte{0xa5}, 32)...)
	body := append(append(sa, ke...), nonce...)
	return ikeHeader(33, 0x20, 34, 0x08, body)
}()

// ikeHeader prepends the ISAKMP header to body.
func ikeHeader(next, version, exchange, flags byte, body []byte) []byte {
	b := append([]byte{}, ikeSPI[:]...)
	b = append(b, make([]byte, 8)...) // responder SPI: 0
	b = append(b, next, version, exchange, flags)
	b = be32(b, 0) // message ID
	b = be32(b, uint32(28+len(body)))
	return append(b, body...)
}

// nonESP prefixes the four zero bytes that mark IKE on the NAT-T port
// (RFC 3948 2.2).
func nonESP(b []byte) []byte { return append([]byte{0, 0, 0, 0}, b...) }

func parseIKE(b []byte) (string, error) {
	if err := need("isakmp", b, 28); err != nil {
		return "", err
	}
	if !bytes.Equal(b[:8], ikeSPI[:]) {
		return "", perr("isakmp", 0, "initiator SPI is not ours")
	}
	major := b[17] >> 4
	if major != 1 && major != 2 {
		return "", perr("isakmp", 17, "major version %d", major)
	}
	if n := binary.BigEndian.Uint32(b[24:]); n < 28 || int(n) > len(b) {
		return "", perr("isakmp", 24, "length %d in a reply of %d bytes", n, len(b))
	}
	info := fmt.Sprintf("IKEv%d", major)
	// A notification first says why the responder refused.
	if (major == 2 && b[16] == 41 || major == 1 && b[16] == 11) && len(b) >= 28+8 {
		off := 28 + 6
		if major == 1 {
			off = 28 + 4 + 4 + 2 // after DOI, protocol, SPI size
		}
		if off+2 <= len(b) {
			info += fmt.Sprintf(" notify %d", binary.BigEndian.Uint16(b[off:]))
		}
	}
	return info, nil
}

func parseIKENATT(b []byte) (string, error) {
	if err := need("ipsec-nat-t", b, 4); err != nil {
		return "", err
	}
	if !bytes.Equal(b[:4], []byte{0, 0, 0, 0}) {
		return "", perr("ipsec-nat-t", 0, "no non-ESP marker")
	}
	return parseIKE(b[4:])
}

// QUIC (RFC 9000 6, 17.2.1): a long-header packet with a reserved version
// (of the form 0x?a?a?a?a) that no server implements, padded to 1200
// bytes: a server answers it with a Version Negotiation packet listing the
// versions it speaks, before any cryptography.
var (
	quicDCID = []byte("portolan")
	quicSCID = []byte("udpprobe")
)

var quicVersionProbe = func() []byte {
	b := []byte{0xc0}
	b = be32(b, 0x1a2a3a4a)
	b = append(b, byte(len(quicDCID)))
	b = append(b, quicDCID...)
	b = append(b, byte(len(quicSCID)))
	b = append(b, quicSCID...)
	return append(b, make([]byte, 1200-len(b))...)
}()

func parseQUIC(b []byte) (string, error) {
	if err := need("quic", b, 7); err != nil {
		return "", err
	}
	if b[0]&0x80 == 0 {
		return "", perr("quic", 0, "not a long header")
	}
	if v := binary.BigEndian.Uint32(b[1:]); v != 0 {
		return "", perr("quic", 1, "version %#08x, want 0 (version negotiation)", v)
	}
	off := 5
	dcid, off, err := quicCID(b, off)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(dcid, quicSCID) {
		return "", perr("quic", 6, "destination connection ID is not our source ID")
	}
	scid, off, err := quicCID(b, off)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(scid, quicDCID) {
		return "", perr("quic", off-len(scid), "source connection ID is not our destination ID")
	}
	if (len(b)-off)%4 != 0 || len(b) == off {
		return "", perr("quic", off, "version list of %d bytes", len(b)-off)
	}
	var vs []string
	for ; off < len(b) && len(vs) < 8; off += 4 {
		switch v := binary.BigEndian.Uint32(b[off:]); {
		case v == 1:
			vs = append(vs, "v1")
		case v == 0x6b3343cf:
			vs = append(vs, "v2")
		case v>>8 == 0xff0000:
			vs = append(vs, fmt.Sprintf("draft-%d", v&0xff))
		case v&0x0f0f0f0f == 0x0a0a0a0a:
			// a greasing version: meaningless
		default:
			vs = append(vs, fmt.Sprintf("%#08x", v))
		}
	}
	return "versions " + strings.Join(vs, " "), nil
}

func quicCID(b []byte, off int) ([]byte, int, error) {
	if off >= len(b) {
		return nil, 0, perr("quic", off, "connection ID length missing")
	}
	n := int(b[off])
	if n > 20 || off+1+n > len(b) {
		return nil, 0, perr("quic", off, "connection ID of %d bytes", n)
	}
	return b[off+1 : off+1+n], off + 1 + n, nil
}

// DTLS (RFC 6347 4.2, RFC 5246 7.4.1.2): a ClientHello for DTLS 1.2 with
// common ECDHE, PSK and RSA suites. Servers answer a HelloVerifyRequest
// (their cookie), a ServerHello or an alert.
var dtlsClientHello = func() []byte {
	var body []byte
	body = be16(body, 0xfefd) // DTLS 1.2
	body = append(body, bytes.Repeat([]byte{0x70}, 32)...)
	body = append(body, 0, 0) // no session ID, no cookie
	suites := []uint16{0xc02b, 0xc02f, 0xc0ae, 0xc0a8, 0xc013, 0x002f}
	body = be16(body, uint16(2*len(suites)))
	for _, s := range suites {
		body = be16(body, s)
	}
	body = append(body, 1, 0) // compression: null
	var ext []byte
	ext = be16(be16(ext, 10), 6) // supported_groups
	ext = be16(be16(be16(ext, 4), 23), 29)
	ext = be16(be16(ext, 11), 2) // ec_point_formats: uncompressed
	ext = append(ext, 1, 0)
	ext = be16(be16(ext, 13), 8) // signature_algorithms
	ext = be16(be16(be16(be16(ext, 6), 0x0403), 0x0804), 0x0401)
	body = be16(body, uint16(len(ext)))
	body = append(body, ext...)
	hs := []byte{1, 0, byte(len(body) >> 8), byte(len(body))} // ClientHello, length
	hs = append(hs, 0, 0, 0, 0, 0)                            // message_seq, fragment_offset
	hs = append(hs, 0, byte(len(body)>>8), byte(len(body)))   // fragment_length
	hs = append(hs, body...)
	rec := []byte{22}                     // handshake
	rec = be16(rec, 0xfeff)               // DTLS 1.0 in the record, as clients do
	rec = append(rec, make([]byte, 8)...) // epoch, sequence number
	rec = be16(rec, uint16(len(hs)))
	return append(rec, hs...)
}()

func parseDTLS(b []byte) (string, error) {
	if err := need("dtls", b, 13); err != nil {
		return "", err
	}
	if b[1] != 0xfe {
		return "", perr("dtls", 1, "record version %#04x is not DTLS", binary.BigEndian.Uint16(b[1:]))
	}
	n := int(binary.BigEndian.Uint16(b[11:]))
	if 13+n > len(b) {
		return "", perr("dtls", 11, "record of %d bytes in a reply of %d", n, len(b))
	}
	frag := b[13 : 13+n]
	switch b[0] {
	case 21: // alert
		if len(frag) < 2 {
			return "", perr("dtls", 13, "alert of %d bytes", len(frag))
		}
		return fmt.Sprintf("alert %d", frag[1]), nil
	case 22: // handshake
		if len(frag) < 12 {
			return "", perr("dtls", 13, "handshake header of %d bytes", len(frag))
		}
		switch frag[0] {
		case 2:
			return "ServerHello", nil
		case 3:
			return "HelloVerifyRequest", nil
		}
		return "", perr("dtls", 13, "handshake type %d", frag[0])
	}
	return "", perr("dtls", 0, "content type %d", b[0])
}

// ONC RPC (RFC 5531 9): a call of procedure 0 (NULL) of the portmapper,
// version 2 (RFC 1833), with no credentials. Any reply with our XID is RPC.
const rpcXID = 0x706f7274

var rpcNullCall = func() []byte {
	var b []byte
	for _, v := range []uint32{rpcXID, 0, 2, 100000, 2, 0, 0, 0, 0, 0} {
		b = be32(b, v) // xid, CALL, rpcvers, prog, vers, proc, cred, verf
	}
	return b
}()

func parseRPC(b []byte) (string, error) {
	if err := need("sunrpc", b, 12); err != nil {
		return "", err
	}
	if binary.BigEndian.Uint32(b) != rpcXID {
		return "", perr("sunrpc", 0, "xid is not ours")
	}
	if binary.BigEndian.Uint32(b[4:]) != 1 {
		return "", perr("sunrpc", 4, "not a reply")
	}
	switch binary.BigEndian.Uint32(b[8:]) {
	case 0: // accepted: verifier, then accept_stat
		if err := need("sunrpc", b, 20); err != nil {
			return "", err
		}
		vlen := binary.BigEndian.Uint32(b[16:])
		off := 20 + int((vlen+3)&^3)
		if vlen > 400 || off+4 > len(b) {
			return "", perr("sunrpc", 16, "verifier of %d bytes", vlen)
		}
		switch st := binary.BigEndian.Uint32(b[off:]); st {
		case 0:
			return "", nil
		case 1:
			return "program unavailable", nil
		case 2:
			return "program version mismatch", nil
		default:
			return fmt.Sprintf("accept status %d", st), nil
		}
	case 1:
		return "call denied", nil
	}
	return "", perr("sunrpc", 8, "reply status %d", binary.BigEndian.Uint32(b[8:]))
}

// TFTP (RFC 1350): a read request for a file no server should have; the
// answer is an ERROR packet (or DATA), sent from a new port of the
// server's (its transfer ID), not from 69.
var tftpRead = append(append([]byte{0, 1}, "portolan-probe.txt\x00"...), "octet\x00"...)

func parseTFTP(b []byte) (string, error) {
	if err := need("tftp", b, 4); err != nil {
		return "", err
	}
	switch op := binary.BigEndian.Uint16(b); op {
	case 3: // DATA
		if binary.BigEndian.Uint16(b[2:]) != 1 {
			return "", perr("tftp", 2, "data block %d, want 1", binary.BigEndian.Uint16(b[2:]))
		}
		return "data", nil
	case 5: // ERROR: code, message, NUL
		i := bytes.IndexByte(b[4:], 0)
		if i < 0 || 4+i+1 != len(b) {
			return "", perr("tftp", 4, "error message not NUL-terminated")
		}
		return fmt.Sprintf("error %d: %s", binary.BigEndian.Uint16(b[2:]), printable(b[4:4+i], 80)), nil
	case 6: // OACK
		return "option ack", nil
	default:
		return "", perr("tftp", 0, "opcode %d", op)
	}
}

// NAT-PMP (RFC 6886 3.2): the external address request.
var natpmpAddr = []byte{0, 0}

func parseNATPMP(b []byte) (string, error) {
	if err := need("nat-pmp", b, 8); err != nil {
		return "", err
	}
	if b[0] != 0 && b[0] != 2 { // 2: a PCP server's version (RFC 6887 9)
		return "", perr("nat-pmp", 0, "version %d", b[0])
	}
	if b[1] != 128 {
		return "", perr("nat-pmp", 1, "opcode %d, want 128", b[1])
	}
	res := binary.BigEndian.Uint16(b[2:])
	if b[0] == 0 && res == 0 && len(b) >= 12 {
		return "external address " + netip.AddrFrom4([4]byte(b[8:12])).String(), nil
	}
	return fmt.Sprintf("result %d", res), nil
}

// MS-SQL browser (MC-SQLR 2.2.2): CLNT_UCAST_EX asks for every instance.
func parseMSSQL(b []byte) (string, error) {
	if err := need("ms-sql-m", b, 3); err != nil {
		return "", err
	}
	if b[0] != 0x05 {
		return "", perr("ms-sql-m", 0, "type %#02x, want 0x05 (SVR_RESP)", b[0])
	}
	n := int(binary.LittleEndian.Uint16(b[1:]))
	if 3+n > len(b) {
		return "", perr("ms-sql-m", 1, "data of %d bytes in a reply of %d", n, len(b))
	}
	text := string(b[3 : 3+n])
	if !strings.Contains(text, "ServerName;") {
		return "", perr("ms-sql-m", 3, "no ServerName field")
	}
	f := strings.Split(text, ";")
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == "Version" {
			return "version " + printable([]byte(f[i+1]), 40), nil
		}
	}
	return "", nil
}

// RMCP (DMTF ASF 2.0, 3.2.4): an ASF Presence Ping; BMCs answer a Pong
// whose supported-entities byte says whether IPMI is there.
var rmcpPing = []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x70, 0x00, 0x00}

func parseRMCP(b []byte) (string, error) {
	if err := need("asf-rmcp", b, 12); err != nil {
		return "", err
	}
	if b[0] != 0x06 || b[3]&0x1f != 0x06 {
		return "", perr("asf-rmcp", 0, "not an RMCP ASF message")
	}
	if binary.BigEndian.Uint32(b[4:]) != 4542 || b[8] != 0x40 {
		return "", perr("asf-rmcp", 8, "not a presence pong")
	}
	if len(b) >= 12+9 && b[12+8]&0x80 != 0 {
		return "IPMI", nil
	}
	return "", nil
}

// XDMCP (X Display Manager Control Protocol 1.1, 10.2): a Query with no
// authentication names; a display manager answers Willing or Unwilling.
var xdmcpQuery = []byte{0, 1, 0, 2, 0, 1, 0}

func parseXDMCP(b []byte) (string, error) {
	if err := need("xdmcp", b, 6); err != nil {
		return "", err
	}
	if binary.BigEndian.Uint16(b) != 1 {
		return "", perr("xdmcp", 0, "version %d", binary.BigEndian.Uint16(b))
	}
	if n := int(binary.BigEndian.Uint16(b[4:])); 6+n != len(b) {
		return "", perr("xdmcp", 4, "length %d in a reply of %d bytes", n, len(b))
	}
	switch op := binary.BigEndian.Uint16(b[2:]); op {
	case 5:
		return "willing", nil
	case 6:
		return "unwilling", nil
	default:
		return "", perr("xdmcp", 2, "opcode %d", op)
	}
}

// STUN (RFC 8489 6): a Binding request; the SOFTWARE attribute of the
// answer names the server.
var stunTxID = []byte("portolanstun")

var stunBinding = func() []byte {
	b := be16(nil, 0x0001)
	b = be16(b, 0)
	b = be32(b, 0x2112a442)
	return append(b, stunTxID...)
}()

func parseSTUN(b []byte) (string, error) {
	if err := need("stun", b, 20); err != nil {
		return "", err
	}
	typ := binary.BigEndian.Uint16(b)
	if typ != 0x0101 && typ != 0x0111 {
		return "", perr("stun", 0, "message type %#04x, want a Binding response", typ)
	}
	if binary.BigEndian.Uint32(b[4:]) != 0x2112a442 || !bytes.Equal(b[8:20], stunTxID) {
		return "", perr("stun", 4, "magic cookie or transaction ID is not ours")
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 20+n > len(b) {
		return "", perr("stun", 2, "length %d in a reply of %d bytes", n, len(b))
	}
	for off := 20; off+4 <= 20+n; {
		at, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+l > 20+n {
			return "", perr("stun", off, "attribute of %d bytes runs past the message", l)
		}
		if at == 0x8022 { // SOFTWARE
			return printable(b[off+4:off+4+l], 80), nil
		}
		off += 4 + (l+3)&^3
	}
	if typ == 0x0111 {
		return "error response", nil
	}
	return "", nil
}

// OpenVPN (its wire protocol, ssl.h): P_CONTROL_HARD_RESET_CLIENT_V2 with
// no tls-auth. A server without tls-auth answers with a reset that
// acknowledges our session ID.
var ovpnSession = []byte("portolan")

var openvpnReset = func() []byte {
	b := []byte{7 << 3} // opcode 7, key ID 0
	b = append(b, ovpnSession...)
	b = append(b, 0)  // no acks
	return be32(b, 0) // packet ID 0
}()

func parseOpenVPN(b []byte) (string, error) {
	if err := need("openvpn", b, 10); err != nil {
		return "", err
	}
	if op := b[0] >> 3; op != 8 && op != 10 { // HARD_RESET_SERVER_V2 / _V3
		return "", perr("openvpn", 0, "opcode %d", op)
	}
	n := int(b[9])
	off := 10 + 4*n
	if n == 0 || off+8 > len(b) {
		return "", perr("openvpn", 9, "%d acknowledgements in a reply of %d bytes", n, len(b))
	}
	if !bytes.Equal(b[off:off+8], ovpnSession) {
		return "", perr("openvpn", off, "acknowledged session is not ours")
	}
	return "", nil
}

// CoAP (RFC 7252 3, RFC 6690 4): a confirmable GET of /.well-known/core.
const coapMsgID = 0x7070

var coapWellKnown = func() []byte {
	b := []byte{0x40, 0x01} // version 1, CON, no token; GET
	b = be16(b, coapMsgID)
	b = append(b, 0xbb) // Uri-Path (11), 11 bytes
	b = append(b, ".well-known"...)
	b = append(b, 0x04) // Uri-Path again, 4 bytes
	return append(b, "core"...)
}()

func parseCoAP(b []byte) (string, error) {
	if err := need("coap", b, 4); err != nil {
		return "", err
	}
	if b[0]>>6 != 1 {
		return "", perr("coap", 0, "version %d", b[0]>>6)
	}
	typ, code := b[0]>>4&3, b[1]
	if typ == 2 || typ == 3 { // ACK and RST repeat the message ID
		if binary.BigEndian.Uint16(b[2:]) != coapMsgID {
			return "", perr("coap", 2, "message ID is not ours")
		}
	}
	if typ == 3 {
		return "reset", nil
	}
	if code>>5 < 2 {
		return "", perr("coap", 1, "code %d.%02d is not a response", code>>5, code&0x1f)
	}
	return fmt.Sprintf("%d.%02d", code>>5, code&0x1f), nil
}

// Echo (RFC 862): what is sent comes back.
var echoPayload = []byte("portolan udp echo probe\n")

func parseEcho(b []byte) (string, error) {
	if !bytes.Equal(b, echoPayload) {
		return "", perr("echo", 0, "reply is not our datagram")
	}
	return "", nil
}

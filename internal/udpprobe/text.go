package udpprobe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// NetBIOS name service (RFC 1002 4.2.17): a node status request for the
// wildcard name "*", which every NetBIOS node answers with its name table.
const nbTransID = 0x7071

var nbstatRequest = func() []byte {
	b := binary.BigEndian.AppendUint16(nil, nbTransID)
	b = append(b, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) // flags 0, QDCOUNT 1
	b = append(b, nbWildcard...)
	return append(b, 0, 0x21, 0, 1) // NBSTAT, IN
}()

// nbWildcard is "*" padded with NULs to 16 bytes, first-level encoded
// (RFC 1001 14.1: each half byte as 'A' plus its value).
var nbWildcard = func() []byte {
	name := make([]byte, 16)
	name[0] = '*'
	b := []byte{32}
	for _, c := range name {
		b = append(b, 'A'+c>>4, 'A'+c&0xf)
	}
	return append(b, 0)
}()

func parseNBSTAT(b []byte) (string, error) {
	if err := need("netbios-ns", b, 12); err != nil {
		return "", err
	}
	if binary.BigEndian.Uint16(b) != nbTransID {
		return "", perr("netbios-ns", 0, "transaction ID is not ours")
	}
	if b[2]&0x80 == 0 {
		return "", perr("netbios-ns", 2, "not a response")
	}
	if binary.BigEndian.Uint16(b[6:]) == 0 {
		return "", perr("netbios-ns", 6, "no answer record")
	}
	_, off, err := readName("netbios-ns", b, 12)
	if err != nil {
		return "", err
	}
	if off+10 > len(b) {
		return "", perr("netbios-ns", off, "record header truncated")
	}
	if typ := binary.BigEndian.Uint16(b[off:]); typ != 0x21 {
		return "", perr("netbios-ns", off, "record type %#04x, want NBSTAT", typ)
	}
	rdlen := int(binary.BigEndian.Uint16(b[off+8:]))
	off += 10
	if off+rdlen > len(b) || rdlen < 1 {
		return "", perr("netbios-ns", off, "node status of %d bytes runs past the end", rdlen)
	}
	n := int(b[off])
	if 1+18*n > rdlen {
		return "", perr("netbios-ns", off, "%d names in %d bytes", n, rdlen)
	}
	var names []string
	for i := range min(n, 4) {
		e := b[off+1+18*i:]
		names = append(names, fmt.Sprintf("%s<%02x>", strings.TrimRight(printable(e[:15], 15), " "), e[15]))
	}
	return strings.Join(names, " "), nil
}

// SSDP (UPnP Device Architecture 2.0, 1.3.2): a unicast M-SEARCH for every
// device and service.
var ssdpSearch = []byte("M-SEARCH * HTTP/1.1\r\n" +
	"HOST: 239.255.255.250:1900\r\n" +
	"MAN: \"ssdp:discover\"\r\n" +
	"MX: 1\r\n" +
	"ST: ssdp:all\r\n" +
	"\r\n")

func parseSSDP(b []byte) (string, error) {
	status, headers, err := httpLike("ssdp", b, "HTTP/1.")
	if err != nil {
		return "", err
	}
	if !strings.Contains(status, " 200") {
		return "", perr("ssdp", 0, "status %q", status)
	}
	return headers["server"], nil
}

// httpLike parses a status line starting with prefix and the header lines
// after it (names lower-cased).
func httpLike(proto string, b []byte, prefix string) (string, map[string]string, error) {
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return "", nil, perr(proto, 0, "reply does not start with %q", prefix)
	}
	end := bytes.Index(b, []byte("\r\n"))
	if end < 0 {
		return "", nil, perr(proto, len(b), "status line without CRLF")
	}
	status := printable(b[:end], 80)
	headers := map[string]string{}
	off := end + 2
	for off < len(b) {
		e := bytes.Index(b[off:], []byte("\r\n"))
		if e <= 0 {
			break // the blank line, or a truncated header
		}
		line := b[off : off+e]
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return "", nil, perr(proto, off, "header line without a colon")
		}
		headers[strings.ToLower(strings.TrimSpace(string(name)))] = strings.TrimSpace(printable(value, 120))
		off += e + 2
	}
	return status, headers, nil
}

// SIP (RFC 3261 11): OPTIONS, which every SIP element answers with its
// capabilities. rport (RFC 3581) sends the answer to our address and port,
// whatever the Via says.
var sipOptions = []byte("OPTIONS sip:nm@portolan.invalid SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP portolan.invalid:5060;branch=z9hG4bK-portolan-1;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:nm@portolan.invalid>\r\n" +
	"From: <sip:portolan@portolan.invalid>;tag=portolan1\r\n" +
	"Call-ID: portolan-udp-probe@portolan.invalid\r\n" +
	"CSeq: 42 OPTIONS\r\n" +
	"Contact: <sip:portolan@portolan.invalid>\r\n" +
	"Accept: application/sdp\r\n" +
	"Content-Length: 0\r\n" +
	"\r\n")

func parseSIP(b []byte) (string, error) {
	status, headers, err := httpLike("sip", b, "SIP/2.0 ")
	if err != nil {
		return "", err
	}
	if len(status) < 11 || status[8] < '1' || status[8] > '6' {
		return "", perr("sip", 8, "status code missing")
	}
	cid := headers["call-id"]
	if cid == "" {
		cid = headers["i"] // the compact form
	}
	if !strings.Contains(cid, "portolan-udp-probe") {
		return "", perr("sip", len(status), "Call-ID is not ours")
	}
	info := status[8:]
	for _, h := range []string{"server", "user-agent"} {
		if v := headers[h]; v != "" {
			return info + ", " + v, nil
		}
	}
	return info, nil
}

// memcached (protocol.txt, "UDP protocol"): the 8-byte frame header (our
// request ID, sequence 0, one datagram) and "stats".
const memcachedReqID = 0x7072

var memcachedStats = append(binary.BigEndian.AppendUint16(nil, memcachedReqID),
	append([]byte{0, 0, 0, 1, 0, 0}, "stats\r\n"...)...)

func parseMemcached(b []byte) (string, error) {
	if err := need("memcache", b, 8); err != nil {
		return "", err
	}
	if binary.BigEndian.Uint16(b) != memcachedReqID {
		return "", perr("memcache", 0, "request ID is not ours")
	}
	body := b[8:]
	if !bytes.HasPrefix(body, []byte("STAT ")) && !bytes.HasPrefix(body, []byte("ERROR")) {
		return "", perr("memcache", 8, "body does not start with STAT")
	}
	if i := bytes.Index(body, []byte("STAT version ")); i >= 0 {
		v := body[i+len("STAT version "):]
		if e := bytes.IndexByte(v, '\r'); e >= 0 {
			v = v[:e]
		}
		return "version " + printable(v, 40), nil
	}
	return "", nil
}

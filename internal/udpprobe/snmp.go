package udpprobe

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

// SNMP (RFC 1157 for v1, RFC 3416 for the v2c PDUs, X.690 BER): a
// GetRequest for sysDescr.0 (1.3.6.1.2.1.1.1.0) with the community
// "public", in version 1 and version 2c. An agent that knows the community
// answers with its description; one that does not stays silent (and the
// port is open|filtered, as for nmap).
const snmpRequestID = 0x706f7274

var sysDescrOID = []byte{0x2b, 6, 1, 2, 1, 1, 1, 0}

// tlv encodes one BER element with a short or long length.
func tlv(tag byte, content ...[]byte) []byte {
	n := 0
	for _, c := range content {
		n += len(c)
	}
	b := []byte{tag}
	switch {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	default:
		b = append(b, 0x82, byte(n>>8), byte(n))
	}
	for _, c := range content {
		b = append(b, c...)
	}
	return b
}

// snmpGet builds the request; version 0 is v1, 1 is v2c.
func snmpGet(version byte) []byte {
	varbind := tlv(0x30, tlv(0x06, sysDescrOID), tlv(0x05))
	pdu := tlv(0xa0, // GetRequest
		tlv(0x02, binary.BigEndian.AppendUint32(nil, snmpRequestID)),
		tlv(0x02, []byte{0}), // error-status
		tlv(0x02, []byte{0}), // error-index
		tlv(0x30, varbind))
	return tlv(0x30, tlv(0x02, []byte{version}), tlv(0x04, []byte("public")), pdu)
}

// berReader reads BER elements from b, remembering the offset for errors.
type berReader struct {
	b   []byte
	off int // of b[0] in the whole reply
}

// next reads one element and returns its tag and content.
func (r *berReader) next(want byte) ([]byte, berReader, error) {
	if len(r.b) < 2 {
		return nil, berReader{}, perr("snmp", r.off, "element truncated")
	}
	if r.b[0] != want {
		return nil, berReader{}, perr("snmp", r.off, "tag %#02x, want %#02x", r.b[0], want)
	}
	n, hdr := int(r.b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 2 || len(r.b) < 2+k {
			return nil, berReader{}, perr("snmp", r.off+1, "length of %d bytes", k)
		}
		n = 0
		for _, c := range r.b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if hdr+n > len(r.b) {
		return nil, berReader{}, perr("snmp", r.off, "element of %d bytes runs past the end", n)
	}
	content := r.b[hdr : hdr+n]
	inner := berReader{b: content, off: r.off + hdr}
	r.b, r.off = r.b[hdr+n:], r.off+hdr+n
	return content, inner, nil
}

func parseSNMP(b []byte) (string, error) {
	top := berReader{b: b}
	_, msg, err := top.next(0x30)
	if err != nil {
		return "", err
	}
	ver, _, err := msg.next(0x02)
	if err != nil {
		return "", err
	}
	if len(ver) != 1 || ver[0] > 1 {
		return "", perr("snmp", msg.off-len(ver), "version %v, want 0 or 1", ver)
	}
	if _, _, err := msg.next(0x04); err != nil { // community
		return "", err
	}
	_, pdu, err := msg.next(0xa2) // GetResponse
	if err != nil {
		return "", err
	}
	id, _, err := pdu.next(0x02)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(id, binary.BigEndian.AppendUint32(nil, snmpRequestID)) {
		return "", perr("snmp", pdu.off-len(id), "request-id is not ours")
	}
	status, _, err := pdu.next(0x02)
	if err != nil {
		return "", err
	}
	if _, _, err := pdu.next(0x02); err != nil { // error-index
		return "", err
	}
	v := "v1"
	if ver[0] == 1 {
		v = "v2c"
	}
	if len(status) == 1 && status[0] != 0 {
		return v + " error-status " + strconv.Itoa(int(status[0])), nil
	}
	_, list, err := pdu.next(0x30)
	if err != nil {
		return "", err
	}
	_, vb, err := list.next(0x30)
	if err != nil {
		return "", err
	}
	if _, _, err := vb.next(0x06); err != nil {
		return "", err
	}
	if len(vb.b) > 0 && vb.b[0] == 0x04 {
		descr, _, err := vb.next(0x04)
		if err != nil {
			return "", err
		}
		return v + " " + strings.TrimSpace(printable(descr, 120)), nil
	}
	return v, nil
}

package udpprobe

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// DNS (RFC 1035 section 4). The transaction IDs are ours: a reply must
// repeat them.
const (
	dnsIDVersion = 0x7062 // "pb"
	dnsIDRoot    = 0x7063
	dnsIDMDNS    = 0x7064

	dnsTypeNS  = 2
	dnsTypePTR = 12
	dnsTypeTXT = 16
	dnsClassIN = 1
	dnsClassCH = 3
	mdnsQU     = 0x8000 // RFC 6762 5.4: ask for a unicast reply
)

var (
	// version.bind CH TXT, no recursion: BIND, Unbound, Knot and dnsmasq
	// answer it with their version (or a refusal, which is an answer).
	dnsVersionBind = dnsQuery(dnsIDVersion, 0, "version.bind", dnsTypeTXT, dnsClassCH)
	// The root's NS records, recursion desired: resolvers answer from
	// their hints, authoritative-only servers refuse; both answer.
	dnsRootNS = dnsQuery(dnsIDRoot, 0x0100, "", dnsTypeNS, dnsClassIN)
	// RFC 6763 9: service type enumeration, asked for a unicast reply
	// from a port other than 5353 (RFC 6762 6.7, a legacy unicast query:
	// the reply comes back to us, with our ID).
	mdnsServices = dnsQuery(dnsIDMDNS, 0, "_services._dns-sd._udp.local", dnsTypePTR, dnsClassIN|mdnsQU)
)

// dnsQuery builds a one-question query.
func dnsQuery(id, flags uint16, name string, qtype, qclass uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0) // QDCOUNT 1
	b = appendName(b, name)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, qclass)
}

// appendName appends name in wire form.
func appendName(b []byte, name string) []byte {
	for l := range strings.SplitSeq(name, ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// dnsRR is one resource record of a reply.
type dnsRR struct {
	name         string
	typ, class   uint16
	rdata        []byte
	rdataOff     int
	targetOfName string // NS and PTR: the name in rdata
}

// dnsMsg is a parsed reply.
type dnsMsg struct {
	id, flags uint16
	answers   []dnsRR
}

// parseDNSMsg parses a DNS reply with the given ID (any ID when anyID).
func parseDNSMsg(proto string, b []byte, id uint16, anyID bool) (dnsMsg, error) {
	if len(b) < 12 {
		return dnsMsg{}, perr(proto, len(b), "header needs 12 bytes")
	}
	m := dnsMsg{id: binary.BigEndian.Uint16(b), flags: binary.BigEndian.Uint16(b[2:])}
	if !anyID && m.id != id {
		return dnsMsg{}, perr(proto, 0, "transaction ID %#04x, want %#04x", m.id, id)
	}
	if m.flags&0x8000 == 0 {
		return dnsMsg{}, perr(proto, 2, "not a response (QR bit clear)")
	}
	if op := m.flags >> 11 & 0xf; op != 0 {
		return dnsMsg{}, perr(proto, 2, "opcode %d, want 0 (query)", op)
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	an := int(binary.BigEndian.Uint16(b[6:]))
	off := 12
	for range qd {
		_, n, err := readName(proto, b, off)
		if err != nil {
			return dnsMsg{}, err
		}
		off = n + 4
		if off > len(b) {
			return dnsMsg{}, perr(proto, len(b), "question truncated")
		}
	}
	for range an {
		name, n, err := readName(proto, b, off)
		if err != nil {
			return dnsMsg{}, err
		}
		if n+10 > len(b) {
			return dnsMsg{}, perr(proto, n, "record header truncated")
		}
		rr := dnsRR{name: name, typ: binary.BigEndian.Uint16(b[n:]), class: binary.BigEndian.Uint16(b[n+2:])}
		rdlen := int(binary.BigEndian.Uint16(b[n+8:]))
		rr.rdataOff = n + 10
		if rr.rdataOff+rdlen > len(b) {
			return dnsMsg{}, perr(proto, rr.rdataOff, "rdata of %d bytes runs past the end", rdlen)
		}
		rr.rdata = b[rr.rdataOff : rr.rdataOff+rdlen]
		if rr.typ == dnsTypeNS || rr.typ == dnsTypePTR {
			t, _, err := readName(proto, b, rr.rdataOff)
			if err != nil {
				return dnsMsg{}, err
			}
			rr.targetOfName = t
		}
		m.answers = append(m.answers, rr)
		off = rr.rdataOff + rdlen
	}
	return m, nil
}

// readName reads a possibly compressed name at off; it returns the name
// and the offset after it (after the first pointer, if any).
func readName(proto string, b []byte, off int) (string, int, error) {
	var sb strings.Builder
	end := -1
	for hops := 0; ; hops++ {
		if hops > 64 {
			return "", 0, perr(proto, off, "name has too many labels or pointers")
		}
		if off >= len(b) {
			return "", 0, perr(proto, off, "name runs past the end")
		}
		l := int(b[off])
		switch {
		case l == 0:
			if end < 0 {
				end = off + 1
			}
			if sb.Len() == 0 {
				return ".", end, nil
			}
			return sb.String(), end, nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(b) {
				return "", 0, perr(proto, off, "compression pointer truncated")
			}
			ptr := int(binary.BigEndian.Uint16(b[off:]) & 0x3fff)
			if ptr >= off {
				return "", 0, perr(proto, off, "compression pointer %d points forward", ptr)
			}
			if end < 0 {
				end = off + 2
			}
			off = ptr
		case l&0xc0 != 0:
			return "", 0, perr(proto, off, "label type %#x", l&0xc0)
		default:
			if off+1+l > len(b) {
				return "", 0, perr(proto, off, "label of %d bytes runs past the end", l)
			}
			sb.WriteString(printable(b[off+1:off+1+l], 63))
			sb.WriteByte('.')
			off += 1 + l
		}
	}
}

// rcodeText names the response codes worth showing.
func rcodeText(flags uint16) string {
	switch flags & 0xf {
	case 0:
		return ""
	case 1:
		return "formerr"
	case 2:
		return "servfail"
	case 3:
		return "nxdomain"
	case 4:
		return "notimp"
	case 5:
		return "refused"
	}
	return "rcode " + strconv.Itoa(int(flags&0xf))
}

func parseDNSVersion(b []byte) (string, error) {
	m, err := parseDNSMsg("dns", b, dnsIDVersion, false)
	if err != nil {
		return "", err
	}
	for _, rr := range m.answers {
		if rr.typ == dnsTypeTXT && len(rr.rdata) > 0 {
			n := int(rr.rdata[0])
			if 1+n > len(rr.rdata) {
				return "", perr("dns", rr.rdataOff, "TXT string of %d bytes runs past its record", n)
			}
			return "version: " + printable(rr.rdata[1:1+n], 80), nil
		}
	}
	return rcodeText(m.flags), nil
}

func parseDNSRoot(b []byte) (string, error) {
	m, err := parseDNSMsg("dns", b, dnsIDRoot, false)
	if err != nil {
		return "", err
	}
	if t := rcodeText(m.flags); t != "" {
		return t, nil
	}
	if m.flags&0x0080 != 0 {
		return "recursion available", nil
	}
	return "", nil
}

func parseMDNS(b []byte) (string, error) {
	// A legacy unicast reply repeats the ID; some responders send 0.
	m, err := parseDNSMsg("mdns", b, 0, true)
	if err != nil {
		return "", err
	}
	if m.id != dnsIDMDNS && m.id != 0 {
		return "", perr("mdns", 0, "transaction ID %#04x, want %#04x or 0", m.id, dnsIDMDNS)
	}
	var names []string
	for _, rr := range m.answers {
		if rr.typ == dnsTypePTR && len(names) < 4 {
			names = append(names, rr.targetOfName)
		}
	}
	return strings.Join(names, " "), nil
}

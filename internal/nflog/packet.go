package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Message and attribute numbers from linux/netfilter/nfnetlink_log.h.
const (
	subsysULOG   = 4 // NFNL_SUBSYS_ULOG
	msgPacket    = 0 // NFULNL_MSG_PACKET
	msgConfig    = 1 // NFULNL_MSG_CONFIG
	nlmsgHdrLen  = 16
	nfgenHdrLen  = 4
	nlaHdrLen    = 4
	nlaTypeMask  = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nlmsgError   = 2      // NLMSG_ERROR
	nlmsgDone    = 3      // NLMSG_DONE
	nlmsgOverrun = 4      // NLMSG_OVERRUN

	attrPacketHdr = 1  // NFULA_PACKET_HDR
	attrMark      = 2  // NFULA_MARK
	attrTimestamp = 3  // NFULA_TIMESTAMP
	attrInDev     = 4  // NFULA_IFINDEX_INDEV
	attrOutDev    = 5  // NFULA_IFINDEX_OUTDEV
	attrHWAddr    = 8  // NFULA_HWADDR
	attrPayload   = 9  // NFULA_PAYLOAD
	attrPrefix    = 10 // NFULA_PREFIX
	attrUID       = 11 // NFULA_UID
	attrSeq       = 12 // NFULA_SEQ
	attrGID       = 14 // NFULA_GID
	attrHWType    = 15 // NFULA_HWTYPE
	attrHWHeader  = 16 // NFULA_HWHEADER
)

// Packet is one logged packet. Its byte slices point into the buffer it was
// parsed from (the Reader's, until the next Read).
type Packet struct {
	Group  uint16 // the NFLOG group
	Family uint8  // the rule's family as the kernel reports it: 2 (inet), 10 (inet6), 7 (bridge)...
	Hook   uint8  // the netfilter hook: 0 prerouting, 1 input, 2 forward, 3 output, 4 postrouting

	Prefix    string    // the log rule's prefix, without its NUL
	HWProto   uint16    // the link-layer protocol (EtherType), 0 when absent
	Mark      uint32    // the packet mark
	Timestamp time.Time // the kernel's receive time; zero when the kernel gave none
	InDev     uint32    // input interface index; 0 when none (output hooks)
	OutDev    uint32    // output interface index; 0 when none (input hooks)
	UID, GID  uint32    // owner of a local socket, when the rule asked for it and HasUID
	HasUID    bool
	Seq       uint32 // the group's message number; valid when HasSeq
	HasSeq    bool
	HWType    uint16           // ARPHRD_* of the input device; 0 when absent
	HWAddr    net.HardwareAddr // the sender's link-layer address; nil when absent
	HWHeader  []byte           // the link-layer header; nil when absent
	Payload   []byte           // the packet from its network header, up to the copy range
}

// ParseError says where a message failed to parse.
type ParseError struct {
	Offset int    // byte offset in the input
	What   string // what was wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("nflog message at byte %d: %s", e.Offset, e.What)
}

func perr(off int, format string, a ...any) error {
	return &ParseError{Offset: off, What: fmt.Sprintf(format, a...)}
}

// interner turns a prefix's bytes into a string. The Reader's keeps the few
// prefixes a ruleset has, so parsing a packet does not allocate.
type interner map[string]string

func (in interner) str(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < 256 { // a flood of odd prefixes must not grow it without bound
		in[s] = s
	}
	return s
}

// ParsePacket parses one NFULNL_MSG_PACKET message body: the nfgenmsg
// header and the attributes after it (not the netlink header).
func ParsePacket(b []byte) (Packet, error) {
	var p Packet
	err := parsePacket(b, &p, nil)
	return p, err
}

func parsePacket(b []byte, p *Packet, in interner) error {
	*p = Packet{}
	if len(b) < nfgenHdrLen {
		return perr(0, "%d bytes, shorter than the nfgenmsg header", len(b))
	}
	p.Family = b[0]
	p.Group = binary.BigEndian.Uint16(b[2:4])
	for off := nfgenHdrLen; off < len(b); {
		if len(b)-off < nlaHdrLen {
			return perr(off, "%d bytes left, shorter than an attribute header", len(b)-off)
		}
		l := int(binary.NativeEndian.Uint16(b[off:]))
		typ := binary.NativeEndian.Uint16(b[off+2:]) & nlaTypeMask
		if l < nlaHdrLen || l > len(b)-off {
			return perr(off, "attribute %d has length %d (%d bytes left)", typ, l, len(b)-off)
		}
		v := b[off+nlaHdrLen : off+l]
		if err := p.setAttr(typ, v, in); err != nil {
			return perr(off, "attribute %d: %v", typ, err)
		}
		off += (l + 3) &^ 3
	}
	return nil
}

var errShort = errors.New("too short")

func (p *Packet) setAttr(typ uint16, v []byte, in interner) error {
	u32 := func(dst *uint32) error {
		if len(v) < 4 {
			return errShort
		}
		*dst = binary.BigEndian.Uint32(v)
		return nil
	}
	switch typ {
	case attrPacketHdr:
		if len(v) < 3 {
			return errShort
		}
		p.HWProto = binary.BigEndian.Uint16(v)
		p.Hook = v[2]
	case attrMark:
		return u32(&p.Mark)
	case attrTimestamp:
		if len(v) < 16 {
			return errShort
		}
		sec, usec := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		if sec > 1<<40 || usec >= 1e6 {
			return fmt.Errorf("timestamp %d s %d us out of range", sec, usec)
		}
		p.Timestamp = time.Unix(int64(sec), int64(usec)*1000)
	case attrInDev:
		return u32(&p.InDev)
	case attrOutDev:
		return u32(&p.OutDev)
	case attrHWAddr:
		if len(v) < 4 {
			return errShort
		}
		n := int(binary.BigEndian.Uint16(v))
		if n > len(v)-4 || n > 8 {
			return fmt.Errorf("hardware address length %d in %d bytes", n, len(v))
		}
		p.HWAddr = net.HardwareAddr(v[4 : 4+n : 4+n])
	case attrPayload:
		p.Payload = v[:len(v):len(v)]
	case attrPrefix:
		s := v
		for i, c := range s {
			if c == 0 {
				s = s[:i]
				break
			}
		}
		if in != nil {
			p.Prefix = in.str(s)
		} else {
			p.Prefix = string(s)
		}
	case attrUID:
		p.HasUID = true
		return u32(&p.UID)
	case attrGID:
		return u32(&p.GID)
	case attrSeq:
		p.HasSeq = true
		return u32(&p.Seq)
	case attrHWType:
		if len(v) < 2 {
			return errShort
		}
		p.HWType = binary.BigEndian.Uint16(v)
	case attrHWHeader:
		p.HWHeader = v[:len(v):len(v)]
	}
	// Others (conntrack, VLAN, physdev, global sequence, L2 header) are
	// not asked for; a newer kernel's additions are skipped alike.
	return nil
}

// IP protocol numbers Flow decodes.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP flags in Flow.TCPFlags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Flow is what a packet says about its connection.
type Flow struct {
	Proto    uint8          // IP protocol (ProtoTCP, ProtoUDP...) of the transport header
	Src, Dst netip.AddrPort // ports are 0 for protocols without them
	TCPFlags uint8          // TCP only
	ICMPType uint8          // ICMP and ICMPv6 only
	ICMPCode uint8
	Fragment bool   // a non-first fragment: no transport header
	Data     []byte // the transport payload (within the copy range)
}

// Flow decodes the IP header of the payload and the transport header after
// it. For a non-first fragment and for protocols other than TCP, UDP and
// ICMP it returns the addresses with zero ports and no data.
func (p *Packet) Flow() (Flow, error) { return DecodeFlow(p.Payload) }

// DecodeFlow decodes an IPv4 or IPv6 packet from its network header.
func DecodeFlow(b []byte) (Flow, error) {
	var f Flow
	if len(b) < 1 {
		return f, perr(0, "empty packet")
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return f, perr(0, "ipv4 header in %d bytes", len(b))
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || ihl > len(b) {
			return f, perr(0, "ipv4 header length %d in %d bytes", ihl, len(b))
		}
		f.Proto = b[9]
		f.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[12:16])), 0)
		f.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), 0)
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			f.Fragment = true
			return f, nil
		}
		end := len(b)
		if tl := int(binary.BigEndian.Uint16(b[2:])); tl >= ihl && tl < end {
			end = tl // an Ethernet pad after the packet is not data
		}
		l4 = b[ihl:end]
	case 6:
		if len(b) < 40 {
			return f, perr(0, "ipv6 header in %d bytes", len(b))
		}
		f.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), 0)
		f.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])), 0)
		end := len(b)
		if pl := int(binary.BigEndian.Uint16(b[4:])); pl != 0 && 40+pl < end {
			end = 40 + pl
		}
		next, off := b[6], 40
		for more := true; more; {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if end-off < 8 {
					return f, perr(off, "ipv6 extension header %d in %d bytes", next, end-off)
				}
				n := 8 + int(b[off+1])*8
				if n > end-off {
					return f, perr(off, "ipv6 extension header %d of %d bytes in %d", next, n, end-off)
				}
				next, off = b[off], off+n
			case 44: // fragment
				if end-off < 8 {
					return f, perr(off, "ipv6 fragment header in %d bytes", end-off)
				}
				if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
					f.Proto, f.Fragment = b[off], true
					return f, nil
				}
				next, off = b[off], off+8
			default:
				more = false
			}
		}
		f.Proto = next
		l4 = b[off:end]
	default:
		return f, perr(0, "ip version %d", b[0]>>4)
	}
	hdr := len(b) - len(l4)
	switch f.Proto {
	case ProtoTCP:
		if len(l4) < 20 {
			return f, perr(hdr, "tcp header in %d bytes", len(l4))
		}
		doff := int(l4[12]>>4) * 4
		if doff < 20 || doff > len(l4) {
			return f, perr(hdr, "tcp data offset %d in %d bytes", doff, len(l4))
		}
		f.Src = netip.AddrPortFrom(f.Src.Addr(), binary.BigEndian.Uint16(l4))
		f.Dst = netip.AddrPortFrom(f.Dst.Addr(), binary.BigEndian.Uint16(l4[2:]))
		f.TCPFlags = l4[13]
		f.Data = l4[doff:]
	case ProtoUDP:
		if len(l4) < 8 {
			return f, perr(hdr, "udp header in %d bytes", len(l4))
		}
		f.Src = netip.AddrPortFrom(f.Src.Addr(), binary.BigEndian.Uint16(l4))
		f.Dst = netip.AddrPortFrom(f.Dst.Addr(), binary.BigEndian.Uint16(l4[2:]))
		end := len(l4)
		if ul := int(binary.BigEndian.Uint16(l4[4:])); ul >= 8 && ul < end {
			end = ul
		}
		f.Data = l4[8:end]
	case ProtoICMP, ProtoICMPv6:
		if len(l4) < 4 {
			return f, perr(hdr, "icmp header in %d bytes", len(l4))
		}
		f.ICMPType, f.ICMPCode = l4[0], l4[1]
		f.Data = l4[4:]
	}
	return f, nil
}

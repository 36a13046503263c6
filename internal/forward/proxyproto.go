package forward

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// ProxyHeader is a PROXY protocol header (HAProxy's spec, versions 1 and 2):
// the client and the address it connected to, as seen by a proxy in front.
type ProxyHeader struct {
	Version int   // 1 or 2 when parsed
	Local   bool  // v1 UNKNOWN or v2 LOCAL: no addresses, use the connection's own
	Proto   Proto // TCP or UDP (v2 only; v1 is always TCP)
	Src     netip.AddrPort
	Dst     netip.AddrPort
}

// proxyV2Sig starts every v2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	proxyV1Max = 107       // the spec's longest v1 line, CRLF included
	proxyV2Max = 16 + 4096 // header plus addresses and TLVs we are willing to read
)

// ErrShortProxyHeader means the bytes so far are a valid start of a header.
var ErrShortProxyHeader = errors.New("proxy header: incomplete")

// AppendV1 appends the text form. Addresses of mixed families or a Local
// header give "PROXY UNKNOWN".
func (h ProxyHeader) AppendV1(b []byte) []byte {
	src, dst := h.Src.Addr().Unmap(), h.Dst.Addr().Unmap()
	if h.Local || !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	fam := "TCP6 "
	if src.Is4() {
		fam = "TCP4 "
	}
	b = append(b, "PROXY "...)
	b = append(b, fam...)
	b = src.AppendTo(b)
	b = append(b, ' ')
	b = dst.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Dst.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends the binary form without TLVs.
func (h ProxyHeader) AppendV2(b []byte) []byte {
	b = append(b, proxyV2Sig...)
	src, dst := h.Src.Addr().Unmap(), h.Dst.Addr().Unmap()
	if h.Local || !src.IsValid() || !dst.IsValid() {
		return append(b, 0x20, 0x00, 0, 0)
	}
	if src.Is4() != dst.Is4() { // mixed families: widen both to IPv6
		src, dst = netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst.As16())
	}
	proto := byte(0x1)
	if h.Proto == UDP {
		proto = 0x2
	}
	b = append(b, 0x21)
	if src.Is4() {
		b = append(b, 0x10|proto, 0, 12)
	} else {
		b = append(b, 0x20|proto, 0, 36)
	}
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, h.Src.Port())
	return binary.BigEndian.AppendUint16(b, h.Dst.Port())
}

// ParseProxyHeader reads a v1 or v2 header at the start of b and returns it
// with its length. If b is a valid but incomplete start it returns
// ErrShortProxyHeader; other errors name the byte offset.
func ParseProxyHeader(b []byte) (ProxyHeader, int, error) {
	switch {
	case len(b) == 0:
		return ProxyHeader{}, 0, ErrShortProxyHeader
	case b[0] == 'P':
		return parseV1(b)
	case b[0] == '\r':
		return parseV2(b)
	}
	return ProxyHeader{}, 0, fmt.Errorf("proxy header: offset 0: byte %#02x starts neither v1 nor v2", b[0])
}

func parseV1(b []byte) (ProxyHeader, int, error) {
	const prefix = "PROXY "
	n := min(len(b), len(prefix))
	if string(b[:n]) != prefix[:n] {
		return ProxyHeader{}, 0, errors.New("proxy header v1: offset 0: want \"PROXY \"")
	}
	end := bytes.IndexByte(b[:min(len(b), proxyV1Max)], '\n')
	if end < 0 {
		if len(b) >= proxyV1Max {
			return ProxyHeader{}, 0, fmt.Errorf("proxy header v1: no line end in the first %d bytes", proxyV1Max)
		}
		return ProxyHeader{}, 0, ErrShortProxyHeader
	}
	if end == 0 || b[end-1] != '\r' {
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v1: offset %d: line ends without CR", end)
	}
	line := string(b[len(prefix) : end-1])
	h := ProxyHeader{Version: 1, Proto: TCP}
	fields := splitSpaces(line)
	if len(fields) >= 1 && fields[0] == "UNKNOWN" {
		h.Local = true
		return h, end + 1, nil
	}
	if len(fields) != 5 {
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v1: offset %d: want 5 fields after PROXY, got %d", len(prefix), len(fields))
	}
	var want4 bool
	switch fields[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v1: offset %d: family %q: want TCP4, TCP6 or UNKNOWN", len(prefix), fields[0])
	}
	var addrs [2]netip.Addr
	var ports [2]uint16
	for i := range 2 {
		a, err := netip.ParseAddr(fields[1+i])
		if err != nil || a.Is4() != want4 || a.Zone() != "" {
			return ProxyHeader{}, 0, fmt.Errorf("proxy header v1: address %q is not %s", fields[1+i], fields[0])
		}
		p, err := strconv.ParseUint(fields[3+i], 10, 16)
		if err != nil || (len(fields[3+i]) > 1 && fields[3+i][0] == '0') {
			return ProxyHeader{}, 0, fmt.Errorf("proxy header v1: port %q is not a number from 0 to 65535", fields[3+i])
		}
		addrs[i], ports[i] = a, uint16(p)
	}
	h.Src = netip.AddrPortFrom(addrs[0], ports[0])
	h.Dst = netip.AddrPortFrom(addrs[1], ports[1])
	return h, end + 1, nil
}

// splitSpaces splits on single spaces, as the spec requires; empty fields
// (double spaces) are kept so that they fail the field count.
func splitSpaces(s string) []string {
	var out []string
	for {
		i := bytes.IndexByte([]byte(s), ' ')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
}

func parseV2(b []byte) (ProxyHeader, int, error) {
	n := min(len(b), len(proxyV2Sig))
	if !bytes.Equal(b[:n], proxyV2Sig[:n]) {
		return ProxyHeader{}, 0, errors.New("proxy header v2: offset 0: bad signature")
	}
	if len(b) < 16 {
		return ProxyHeader{}, 0, ErrShortProxyHeader
	}
	if v := b[12] >> 4; v != 2 {
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v2: offset 12: version %d, want 2", v)
	}
	cmd := b[12] & 0xf
	if cmd > 1 {
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v2: offset 12: command %d, want 0 (LOCAL) or 1 (PROXY)", cmd)
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if 16+length > proxyV2Max {
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v2: offset 14: length %d is over %d", length, proxyV2Max-16)
	}
	if len(b) < 16+length {
		return ProxyHeader{}, 0, ErrShortProxyHeader
	}
	h := ProxyHeader{Version: 2, Proto: TCP}
	total := 16 + length
	if cmd == 0 {
		h.Local = true
		return h, total, nil
	}
	fam, proto := b[13]>>4, b[13]&0xf
	switch proto {
	case 1:
	case 2:
		h.Proto = UDP
	default:
		// UNSPEC or unix sockets: keep the connection's own addresses.
		h.Local = true
		return h, total, nil
	}
	body := b[16:total]
	var alen int
	switch fam {
	case 1:
		alen = 4
	case 2:
		alen = 16
	default:
		h.Local = true
		return h, total, nil
	}
	if len(body) < 2*alen+4 {
		return ProxyHeader{}, 0, fmt.Errorf("proxy header v2: offset 14: length %d is too short for the addresses (%d)", length, 2*alen+4)
	}
	src, _ := netip.AddrFromSlice(body[:alen])
	dst, _ := netip.AddrFromSlice(body[alen : 2*alen])
	h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[2*alen:]))
	h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[2*alen+2:]))
	return h, total, nil
}

// ReadProxyHeader reads exactly one header from r and nothing after it, so
// the rest of the stream can still be spliced. The caller sets a deadline.
func ReadProxyHeader(r io.Reader) (ProxyHeader, error) {
	var buf [proxyV2Max]byte
	// 8 bytes tell the version apart; "PROXY UNKNOWN\r\n" is 15 long, so
	// reading 16 at once could wait for bytes that never come.
	n, err := io.ReadFull(r, buf[:8])
	for {
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return ProxyHeader{}, fmt.Errorf("proxy header: connection closed after %d bytes", n)
			}
			return ProxyHeader{}, fmt.Errorf("proxy header: %w", err)
		}
		h, _, perr := ParseProxyHeader(buf[:n])
		if perr == nil {
			return h, nil
		}
		if !errors.Is(perr, ErrShortProxyHeader) {
			return ProxyHeader{}, perr
		}
		want := n + 1 // v1: byte by byte up to the newline
		if buf[0] == '\r' {
			want = 16
			if n >= 16 {
				want = 16 + int(binary.BigEndian.Uint16(buf[14:16]))
			}
		}
		var m int
		m, err = io.ReadFull(r, buf[n:want])
		n += m
	}
}

package target

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ParseError reports an expression that could not be read.
type ParseError struct {
	Source string // "path:line" when the expression came from a file, else empty
	Expr   string // the command-line argument holding Token; empty for files
	Kind   string // what the text should have been: "address", "prefix", "range", ...
	Token  string // the offending text
	Column int    // 1-based byte column of Token in its argument or line
	Reason string // optional detail
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source + ": ")
	}
	fmt.Fprintf(&b, "bad %s %q at column %d", e.Kind, e.Token, e.Column)
	if e.Expr != "" && e.Expr != e.Token {
		// A column alone is no help with several arguments.
		fmt.Fprintf(&b, " in %q", e.Expr)
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

// token is one expression of a list, with its 1-based column.
type token struct {
	text string
	col  int
}

// split cuts a list at commas and white space.
func split(expr string) []token {
	var toks []token
	start := -1
	for i, r := range expr {
		if r == ',' || unicode.IsSpace(r) {
			if start >= 0 {
				toks = append(toks, token{expr[start:i], start + 1})
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		toks = append(toks, token{expr[start:], start + 1})
	}
	return toks
}

// item is a parsed expression: literal ranges, or a hostname to resolve.
type item struct {
	tok    token
	ranges []Range
	host   string
}

// maxOctetRanges bounds how many ranges one nmap octet expression may
// expand to ("1-255.1-255.1-255.1" would be 16 million).
const maxOctetRanges = 1 << 16

// parseToken reads one expression without resolving anything.
func parseToken(t token) (item, error) {
	s := t.text
	bad := func(kind, text string, col int, reason string) (item, error) {
		return item{}, &ParseError{Kind: kind, Token: text, Column: col, Reason: reason}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return bad("address", s, t.col, "zones are not supported")
		}
		a = a.Unmap()
		return item{tok: t, ranges: []Range{{a, a}}}, nil
	}
	if strings.ContainsRune(s, '%') {
		return bad("address", s, t.col, "zones are not supported")
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return parsePrefix(t, i)
	}
	if i := strings.IndexByte(s, '-'); i > 0 {
		if first, err := netip.ParseAddr(s[:i]); err == nil {
			return parseRange(t, first, i)
		}
	}
	if isOctetForm(s) {
		return parseOctets(t)
	}
	if looksNumeric(s) {
		return bad("address", s, t.col, "")
	}
	if reason, off := checkHostname(s); reason != "" {
		return bad("hostname", s, t.col, fmt.Sprintf("%s at column %d", reason, t.col+off))
	}
	return item{tok: t, host: s}, nil
}

func parsePrefix(t token, slash int) (item, error) {
	s := t.text
	addr, bitsText := s[:slash], s[slash+1:]
	a, err := netip.ParseAddr(addr)
	if err != nil {
		reason := fmt.Sprintf("%q is not an address", addr)
		if r, _ := checkHostname(addr); r == "" && !looksNumeric(addr) {
			reason = "hostname/length is not supported; give the address"
		}
		return item{}, &ParseError{Kind: "prefix", Token: s, Column: t.col, Reason: reason}
	}
	if a.Zone() != "" {
		return item{}, &ParseError{Kind: "prefix", Token: s, Column: t.col, Reason: "zones are not supported"}
	}
	max := a.BitLen()
	n, err := strconv.Atoi(bitsText)
	if err != nil || n > max || strings.Trim(bitsText, "0123456789") != "" {
		return item{}, &ParseError{Kind: "prefix length", Token: bitsText, Column: t.col + slash + 1, Reason: fmt.Sprintf("want 0-%d", max)}
	}
	if a.Is4In6() {
		// ::ffff:198.18.0.0/120 is an IPv4 prefix in disguise; shorter
		// lengths reach outside the mapped block.
		if n < 96 {
			return item{}, &ParseError{Kind: "prefix", Token: s, Column: t.col, Reason: "an IPv4-mapped prefix needs a length of 96 or more"}
		}
		a, n = a.Unmap(), n-96
	}
	return item{tok: t, ranges: []Range{RangeOf(netip.PrefixFrom(a, n))}}, nil
}

func parseRange(t token, first netip.Addr, dash int) (item, error) {
	s := t.text
	end := s[dash+1:]
	endCol := t.col + dash + 1
	if first.Zone() != "" || strings.ContainsRune(end, '%') {
		return item{}, &ParseError{Kind: "range", Token: s, Column: t.col, Reason: "zones are not supported"}
	}
	first = first.Unmap()
	var last netip.Addr
	if a, err := netip.ParseAddr(end); err == nil {
		last = a.Unmap()
		if last.Is4() != first.Is4() {
			return item{}, &ParseError{Kind: "range", Token: s, Column: t.col, Reason: "it mixes IPv4 and IPv6"}
		}
	} else {
		// Short form: the end replaces the last octet (decimal) or the
		// last group (hex); "198.18.0.250-" runs to the octet's end, as
		// in nmap's octet ranges.
		base, size, what := 10, 8, "an address or the last octet 0-255"
		if !first.Is4() {
			base, size, what = 16, 16, "an address or the last group 0-ffff (hex)"
		}
		n, err := uint64(1<<size-1), error(nil)
		if end != "" {
			n, err = strconv.ParseUint(end, base, size)
		}
		if err != nil {
			return item{}, &ParseError{Kind: "range end", Token: end, Column: endCol, Reason: "want " + what}
		}
		u := toU128(first)
		u.lo = u.lo&^(1<<size-1) | n
		last = u.addr(first.Is4())
	}
	if last.Less(first) {
		return item{}, &ParseError{Kind: "range", Token: s, Column: t.col, Reason: "it ends before it starts"}
	}
	return item{tok: t, ranges: []Range{{first, last}}}, nil
}

// isOctetForm reports whether s looks like an nmap octet range such as
// 198.18.0-1.* (four parts of digits, '-' and '*').
func isOctetForm(s string) bool {
	if strings.Count(s, ".") != 3 || !strings.ContainsAny(s, "-*") {
		return false
	}
	for _, c := range s {
		if c != '.' && c != '-' && c != '*' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

type span struct{ lo, hi uint32 }

func parseOctets(t token) (item, error) {
	parts := strings.Split(t.text, ".")
	var spans [4]span
	off := 0
	for i, p := range parts {
		sp, ok := parseOctet(p)
		if !ok {
			return item{}, &ParseError{Kind: "octet range", Token: t.text, Column: t.col,
				Reason: fmt.Sprintf("octet %d %q at column %d: want n, n-m, -m, n- or * within 0-255", i+1, p, t.col+off)}
		}
		spans[i] = sp
		off += len(p) + 1
	}
	// Octets after the last partial one are full, so each combination of
	// the octets before it gives one contiguous range.
	k := 3
	for k >= 0 && spans[k] == (span{0, 255}) {
		k--
	}
	if k < 0 {
		return item{tok: t, ranges: []Range{RangeOf(netip.MustParsePrefix("0.0.0.0/0"))}}, nil
	}
	count := 1
	for i := 0; i < k; i++ {
		count *= int(spans[i].hi - spans[i].lo + 1)
	}
	if count > maxOctetRanges {
		return item{}, &ParseError{Kind: "octet range", Token: t.text, Column: t.col,
			Reason: fmt.Sprintf("it makes %d separate ranges, more than %d; use prefixes or ranges", count, maxOctetRanges)}
	}
	ranges := make([]Range, 0, count)
	var cur [4]uint32
	for i := 0; i < k; i++ {
		cur[i] = spans[i].lo
	}
	for {
		lo, hi := uint32(0), uint32(0)
		for i := 0; i < 4; i++ {
			switch {
			case i < k:
				lo, hi = lo<<8|cur[i], hi<<8|cur[i]
			case i == k:
				lo, hi = lo<<8|spans[i].lo, hi<<8|spans[i].hi
			default:
				lo, hi = lo<<8, hi<<8|255
			}
		}
		ranges = append(ranges, Range{u128{lo: uint64(lo)}.addr(true), u128{lo: uint64(hi)}.addr(true)})
		// Advance the odometer over octets 0..k-1.
		i := k - 1
		for ; i >= 0; i-- {
			if cur[i] < spans[i].hi {
				cur[i]++
				break
			}
			cur[i] = spans[i].lo
		}
		if i < 0 {
			break
		}
	}
	return item{tok: t, ranges: ranges}, nil
}

func parseOctet(p string) (span, bool) {
	num := func(s string, def uint32) (uint32, bool) {
		if s == "" {
			return def, true
		}
		n, err := strconv.ParseUint(s, 10, 8)
		return uint32(n), err == nil
	}
	if p == "*" {
		return span{0, 255}, true
	}
	if p == "" || strings.ContainsRune(p, '*') {
		return span{}, false
	}
	lo, hi, isRange := strings.Cut(p, "-")
	a, ok1 := num(lo, 0)
	if !isRange {
		return span{a, a}, ok1 && lo != ""
	}
	b, ok2 := num(hi, 255)
	return span{a, b}, ok1 && ok2 && a <= b && !strings.ContainsRune(hi, '-')
}

// looksNumeric reports whether s is made of what addresses are made of and
// so was meant as one: digits and dots, or anything with a colon.
func looksNumeric(s string) bool {
	if strings.ContainsRune(s, ':') {
		return true
	}
	for _, c := range s {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// checkHostname returns why s is not a DNS name, and the offset of the
// problem, or "" when it is one.
func checkHostname(s string) (string, int) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "empty name", 0
	}
	if len(name) > 253 {
		return "longer than 253 characters", 0
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if c >= utf8.RuneSelf {
				return "non-ASCII character (use the xn-- form)", i
			}
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("character %q", c), i
			}
			continue
		}
		label := name[start:i]
		switch {
		case label == "":
			return "empty label", start
		case len(label) > 63:
			return "label longer than 63 characters", start
		case label[0] == '-' || label[len(label)-1] == '-':
			return "label starts or ends with '-'", start
		}
		start = i + 1
	}
	return "", 0
}

package portspec

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Resolver turns a service name or a wildcard pattern ("http", "http*")
// into the ports registered for it under proto. The registry implements it;
// portspec does not import the registry so the registry can use portspec.
type Resolver interface {
	PortsByName(pattern string, proto Proto) ([]Port, error)
}

// Parser reads port specs. The zero value reads numeric specs with TCP as
// the default protocol.
type Parser struct {
	// Names resolves service names and wildcards. Nil: a name in a spec is
	// an error saying names need the registry.
	Names Resolver
	// Default is the protocol of ports without a prefix or suffix. Zero
	// means TCP.
	Default Proto
}

// SyntaxError is a spec that could not be read. Col is the 1-based column
// (in characters) of Token in Spec; Msg says what is wrong and names the
// token.
type SyntaxError struct {
	Spec  string
	Col   int
	Token string
	Msg   string
	Err   error // the Resolver's error for a name it could not resolve, if any
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at column %d in %q", e.Msg, e.Col, e.Spec)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// Parse reads spec with the zero Parser: numbers only, TCP by default.
func Parse(spec string) (*Set, error) { return Parser{}.Parse(spec) }

// Parse reads an nmap-style port spec into a set. The spec is a comma
// separated list (spaces around commas are fine) of entries:
//
//	22            a port; 0 only when written like this (or as 0-N)
//	8000-8100     a range; 90-80 is an error
//	-1024         1-1024 (open ranges and "-" never include port 0)
//	60000-        60000-65535
//	-             1-65535
//	T:22 U:53     a protocol prefix (T:, U:, S: or tcp:, udp:, sctp:, any
//	              case) that applies to this entry and all after it, until
//	              the next prefix
//	443/tcp       a protocol suffix, or tcp/443; applies to this entry only
//	ssh  http*    a service name or wildcard ('*' any run, '?' one
//	              character), resolved through p.Names for the entry's
//	              protocol
//	!80  ^80      an exclusion: removed from the result however early it
//	              appears ("1-1024,!80" equals "!80,1-1024"); it takes all
//	              the forms above, "!U:53" and "U:!53" alike
//
// Unprefixed entries use p.Default. A spec that selects no port at all
// (empty, or everything excluded) is an error. Every error is a
// *SyntaxError naming the token and its column.
func (p Parser) Parse(spec string) (*Set, error) {
	cur := p.Default
	if cur == 0 {
		cur = TCP
	}
	if slot(cur) < 0 {
		return nil, &SyntaxError{Spec: spec, Col: 1, Token: cur.String(),
			Msg: fmt.Sprintf("default protocol %v has no port sets (want tcp, udp or sctp)", cur)}
	}
	if strings.Trim(spec, " \t") == "" {
		return nil, &SyntaxError{Spec: spec, Col: 1, Msg: "empty port spec"}
	}
	st := parseState{p: p, spec: spec, cur: cur}
	for off := 0; off <= len(spec); {
		end := strings.IndexByte(spec[off:], ',')
		if end < 0 {
			end = len(spec)
		} else {
			end += off
		}
		if err := st.entry(off, end); err != nil {
			return nil, err
		}
		off = end + 1
	}
	if st.inc.Len() == 0 {
		return nil, &SyntaxError{Spec: spec, Col: 1, Token: spec, Msg: "only exclusions, no ports to exclude from"}
	}
	st.inc.RemoveSet(&st.exc)
	if st.inc.Len() == 0 {
		return nil, &SyntaxError{Spec: spec, Col: 1, Token: spec, Msg: "no ports left after exclusions"}
	}
	return &st.inc, nil
}

// parseState is one run of Parse.
type parseState struct {
	p        Parser
	spec     string
	cur      Proto // the protocol set by the last prefix
	inc, exc Set
}

// errAt builds the error for token found at byte offset off of the spec.
func (st *parseState) errAt(off int, token, format string, args ...any) *SyntaxError {
	return &SyntaxError{
		Spec:  st.spec,
		Col:   utf8.RuneCountInString(st.spec[:off]) + 1,
		Token: token,
		Msg:   fmt.Sprintf(format, args...),
	}
}

// entry reads the comma-separated entry spec[start:end].
func (st *parseState) entry(start, end int) error {
	for start < end && isSpace(st.spec[start]) {
		start++
	}
	for end > start && isSpace(st.spec[end-1]) {
		end--
	}
	tok := st.spec[start:end]
	if tok == "" {
		return st.errAt(start, "", "empty entry")
	}
	if i := strings.IndexAny(tok, " \t"); i >= 0 {
		return st.errAt(start+i, tok, "unexpected space in %q (spaces go only around commas)", tok)
	}

	off, rest := start, tok
	exclude := false
	bang := func() {
		if !exclude && rest != "" && (rest[0] == '!' || rest[0] == '^') {
			exclude = true
			off, rest = off+1, rest[1:]
		}
	}
	bang()
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		proto, ok := prefixProto(rest[:i])
		if !ok {
			return st.errAt(off, rest[:i+1], "unknown protocol prefix %q (want T:, U: or S:)", rest[:i+1])
		}
		st.cur = proto
		off, rest = off+i+1, rest[i+1:]
		bang()
	}
	if rest == "" {
		return st.errAt(start, tok, "missing port after %q", tok)
	}

	proto := st.cur
	item, itemOff := rest, off
	if strings.IndexByte(rest, '/') >= 0 {
		var err error
		item, itemOff, proto, err = st.splitProto(rest, off)
		if err != nil {
			return err
		}
	}
	set := &st.inc
	if exclude {
		set = &st.exc
	}
	if isName(item) {
		return st.name(set, item, itemOff, proto)
	}
	return st.numbers(set, item, itemOff, proto)
}

// splitProto reads the protocol of "443/tcp" or "tcp/443" (s at offset off)
// and returns the rest. A slash with no protocol on either side is part of
// a service name ("914c/g" is one in the IANA registry), unless a side is
// numeric, in which case the other side is a misspelt protocol.
func (st *parseState) splitProto(s string, off int) (string, int, Proto, error) {
	i := strings.LastIndexByte(s, '/')
	if proto, ok, err := st.protoName(s[i+1:], off+i+1); err != nil || ok {
		if ok && i == 0 {
			return "", 0, 0, st.errAt(off, s, "missing port before %q", s)
		}
		return s[:i], off, proto, err
	}
	j := strings.IndexByte(s, '/')
	if proto, ok, err := st.protoName(s[:j], off); err != nil || ok {
		if ok && j == len(s)-1 {
			return "", 0, 0, st.errAt(off, s, "missing port after %q", s)
		}
		return s[j+1:], off + j + 1, proto, err
	}
	switch {
	case i == len(s)-1:
		return "", 0, 0, st.errAt(off, s, "missing protocol after %q (want tcp, udp or sctp)", s)
	case j == 0:
		return "", 0, 0, st.errAt(off, s, "missing protocol before %q (want tcp, udp or sctp)", s)
	case isNumeric(s[:j]):
		return "", 0, 0, st.errAt(off+i+1, s[i+1:], "unknown protocol %q in %q (want tcp, udp or sctp)", s[i+1:], s)
	case isNumeric(s[i+1:]):
		return "", 0, 0, st.errAt(off, s[:j], "unknown protocol %q in %q (want tcp, udp or sctp)", s[:j], s)
	}
	return s, off, st.cur, nil
}

// protoName reads a protocol name that is part of the entry at offset off.
// DCCP is a protocol but has no port sets, so naming it is an error.
func (st *parseState) protoName(s string, off int) (Proto, bool, error) {
	proto, err := ParseProto(s)
	if err != nil {
		return 0, false, nil
	}
	if slot(proto) < 0 {
		return 0, false, st.errAt(off, s, "protocol %v has no port sets (want tcp, udp or sctp)", proto)
	}
	return proto, true, nil
}

// numbers reads a port or range at offset off and adds it to set.
func (st *parseState) numbers(set *Set, s string, off int, proto Proto) error {
	if !isNumeric(s) {
		return st.errAt(off, s, "invalid port %q", s)
	}
	dash := strings.IndexByte(s, '-')
	if dash < 0 {
		p, err := st.port(s, off)
		if err != nil {
			return err
		}
		set.Add(proto, p)
		return nil
	}
	if strings.IndexByte(s[dash+1:], '-') >= 0 {
		return st.errAt(off, s, "invalid range %q", s)
	}
	lo, hi := Port(1), Port(65535) // open ends never reach port 0
	var err error
	if l := s[:dash]; l != "" {
		if lo, err = st.port(l, off); err != nil {
			return err
		}
	}
	if h := s[dash+1:]; h != "" {
		if hi, err = st.port(h, off+dash+1); err != nil {
			return err
		}
	}
	if lo > hi {
		if dash == 0 {
			return st.errAt(off, s, "open range %q is empty (it starts at 1)", s)
		}
		return st.errAt(off, s, "range %q is reversed (did you mean %d-%d?)", s, hi, lo)
	}
	set.AddRange(proto, lo, hi)
	return nil
}

// port reads the decimal port s at offset off.
func (st *parseState) port(s string, off int) (Port, error) {
	digits := strings.TrimLeft(s, "0")
	if len(digits) > 5 {
		return 0, st.errAt(off, s, "port %s out of range 0-65535", s)
	}
	n, err := strconv.ParseUint("0"+digits, 10, 32)
	if err != nil {
		return 0, st.errAt(off, s, "invalid port %q", s)
	}
	if n > 65535 {
		return 0, st.errAt(off, s, "port %s out of range 0-65535", s)
	}
	return Port(n), nil
}

// name resolves a service name or wildcard at offset off into set.
func (st *parseState) name(set *Set, s string, off int, proto Proto) error {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return st.errAt(off+i, s, "invalid character %q in %q", r, s)
		}
	}
	if st.p.Names == nil {
		return st.errAt(off, s, "service name %q needs the registry (use port numbers here)", s)
	}
	ports, err := st.p.Names.PortsByName(s, proto)
	if err != nil {
		e := st.errAt(off, s, "%v", err)
		e.Err = err
		return e
	}
	if len(ports) == 0 {
		return st.errAt(off, s, "no %v service matches %q", proto, s)
	}
	for _, p := range ports {
		set.Add(proto, p)
	}
	return nil
}

// prefixProto reads a protocol prefix without its colon.
func prefixProto(s string) (Proto, bool) {
	switch strings.ToLower(s) {
	case "t", "tcp":
		return TCP, true
	case "u", "udp":
		return UDP, true
	case "s", "sctp":
		return SCTP, true
	}
	return 0, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// isName reports whether s is meant as a service name: it has a letter or a
// wildcard (RFC 6335 names have at least one letter; "3com-tsmux" is one).
func isName(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return r == '*' || r == '?' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
	})
}

// isNameByte reports whether c may appear in a service name or pattern.
// IANA names use letters, digits and '-', with a few old ones also using
// '.', '_', '+' and '/'; '*' (any run) and '?' (one character) are wildcards.
func isNameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._+/*?", c) >= 0
}

// isNumeric reports whether s is made of digits and dashes only.
func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '-' {
			return false
		}
	}
	return true
}

package wait

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"portolan/internal/portspec"
)

// Kind is what a target waits for.
type Kind uint8

// The kinds of targets.
const (
	TCP  Kind = iota + 1 // a TCP connection is accepted
	HTTP                 // an HTTP(S) request gets an expected status
	Unix                 // a unix stream socket accepts
)

func (k Kind) String() string {
	switch k {
	case TCP:
		return "tcp"
	case HTTP:
		return "http"
	case Unix:
		return "unix"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Target is one endpoint to wait for.
type Target struct {
	Raw  string        // as written
	Kind Kind          //
	Host string        // TCP and HTTP: a name or an address (no brackets); "localhost" for ":port"
	Port portspec.Port // TCP and HTTP (80 or 443 when the URL has none)
	Path string        // Unix: the socket's path
	URL  string        // HTTP: the URL requested
}

func (t Target) String() string { return t.Raw }

// MarshalText writes the target as it was written.
func (t Target) MarshalText() ([]byte, error) { return []byte(t.Raw), nil }

// SyntaxError is a target that could not be read. Col is the 1-based
// column (in characters) in Input where the problem is.
type SyntaxError struct {
	Input string
	Col   int
	Msg   string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at column %d in target %q", e.Msg, e.Col, e.Input)
}

func errAt(s string, off int, format string, args ...any) *SyntaxError {
	off = min(max(off, 0), len(s))
	return &SyntaxError{Input: s, Col: utf8.RuneCountInString(s[:off]) + 1, Msg: fmt.Sprintf(format, args...)}
}

// ParseTarget reads a target:
//
//	host:port  [v6]:port  tcp://host:port   TCP; host is a name or an address
//	:port  port                             TCP on localhost (127.0.0.1 and ::1)
//	unix:/path/to.sock                      a unix stream socket
//	http://host:port/path  https://...      an HTTP(S) GET
//
// A host:port followed by a path is an error: write it as an http:// URL.
// Errors are *SyntaxError, naming the input and the column.
func ParseTarget(s string) (Target, error) {
	t := Target{Raw: s}
	if strings.TrimSpace(s) == "" {
		return t, errAt(s, 0, "empty target")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return t, errAt(s, i, "unexpected space or control character")
	}
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if hasScheme {
		switch strings.ToLower(scheme) {
		case "http", "https":
			return parseURL(t, s)
		case "tcp":
			return parseHostPort(t, s, len(scheme)+3, rest)
		case "unix":
			return parseUnix(t, s, len(scheme)+3, rest)
		}
		return t, errAt(s, 0, "unknown scheme %q (want http, https, tcp or unix)", scheme)
	}
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		return parseUnix(t, s, len("unix:"), p)
	}
	return parseHostPort(t, s, 0, s)
}

func parseUnix(t Target, s string, off int, path string) (Target, error) {
	if path == "" {
		return t, errAt(s, off, "missing socket path after %q", s[:off])
	}
	if len(path) > 107 && path[0] != '@' {
		return t, errAt(s, off, "socket path longer than the 107 bytes a unix socket address holds")
	}
	t.Kind, t.Path = Unix, path
	return t, nil
}

// parseHostPort reads "host:port", "[v6]:port", ":port" or "port" in
// s[off:] (rest).
func parseHostPort(t Target, s string, off int, rest string) (Target, error) {
	if isDigits(rest) {
		rest = ":" + rest
		off-- // columns refer to the port, one character right of the virtual ':'
	}
	var host, port string
	portOff := 0
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return t, errAt(s, off, "missing ']' after IPv6 address")
		}
		host = rest[1:end]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Is4In6() {
			return t, errAt(s, off+1, "%q is not an IPv6 address", host)
		}
		after := rest[end+1:]
		if !strings.HasPrefix(after, ":") {
			return t, errAt(s, off+end+1, "missing ':port' after %q", rest[:end+1])
		}
		port, portOff = after[1:], off+end+2
	default:
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				return t, errAt(s, off+j, "missing ':port' before %q", rest[j:])
			}
			return t, errAt(s, off+len(rest), "missing ':port' after %q", rest)
		}
		host, port, portOff = rest[:i], rest[i+1:], off+i+1
		if strings.Contains(host, ":") {
			if j := strings.IndexByte(rest, '/'); j >= 0 && j < i {
				return t, errAt(s, off+j, "path %q needs an http:// or https:// URL", rest[j:])
			}
			return t, errAt(s, off, "IPv6 address needs brackets: [%s]:%s", host, port)
		}
		if host == "" {
			host = "localhost"
		} else if err := checkHost(host); err != "" {
			return t, errAt(s, off+strings.IndexFunc(host, badHostRune), "%s", err)
		}
	}
	if j := strings.IndexByte(port, '/'); j >= 0 {
		return t, errAt(s, portOff+j, "path %q needs an http:// or https:// URL", port[j:])
	}
	p, err := parsePort(port)
	if err != "" {
		return t, errAt(s, portOff, "%s", err)
	}
	t.Kind, t.Host, t.Port = TCP, host, p
	return t, nil
}

// parseURL reads an http:// or https:// URL.
func parseURL(t Target, s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		msg := err.Error()
		if errors.As(err, &ue) {
			msg = ue.Err.Error()
		}
		return t, errAt(s, 0, "bad URL: %s", msg)
	}
	hostOff := strings.Index(s, "://") + 3
	if u.User != nil {
		return t, errAt(s, hostOff, "user info in a wait URL is not supported")
	}
	host := u.Hostname()
	if host == "" {
		return t, errAt(s, hostOff, "missing host")
	}
	if strings.HasPrefix(u.Host, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return t, errAt(s, hostOff+1, "%q is not an IPv6 address", host)
		}
	} else if msg := checkHost(host); msg != "" {
		return t, errAt(s, hostOff+strings.IndexFunc(host, badHostRune), "%s", msg)
	}
	port := portspec.Port(80)
	if strings.EqualFold(u.Scheme, "https") {
		port = 443
	}
	if ps := u.Port(); ps != "" || strings.HasSuffix(u.Host, ":") {
		p, msg := parsePort(ps)
		if msg != "" {
			return t, errAt(s, hostOff+strings.LastIndexByte(u.Host, ':')+1, "%s", msg)
		}
		port = p
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Fragment = ""
	t.Kind, t.Host, t.Port, t.URL = HTTP, host, port, u.String()
	return t, nil
}

// parsePort reads a port number 1-65535; the string says what is wrong.
func parsePort(s string) (portspec.Port, string) {
	if s == "" {
		return 0, "missing port number"
	}
	if !isDigits(s) {
		return 0, fmt.Sprintf("port %q is not a number", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > 65535 {
		return 0, fmt.Sprintf("port %s out of range 1-65535", s)
	}
	if n == 0 {
		return 0, "port 0 cannot be waited for"
	}
	return portspec.Port(n), ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkHost accepts host names (letters, digits, '-', '_', '.') and IPv4
// addresses; the string says what is wrong.
func checkHost(h string) string {
	if strings.IndexFunc(h, badHostRune) >= 0 {
		r, _ := utf8.DecodeRuneInString(h[strings.IndexFunc(h, badHostRune):])
		return fmt.Sprintf("character %q not allowed in host %q", r, h)
	}
	if len(h) > 253 {
		return "host name longer than 253 characters"
	}
	return ""
}

func badHostRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
}

// ParseStatus reads an expected HTTP status: "200" or a range "200-399".
func ParseStatus(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, msg := parseCode(a)
	if msg != "" {
		return 0, 0, fmt.Errorf("status %q: %s at column 1", s, msg)
	}
	hi = lo
	if isRange {
		if hi, msg = parseCode(b); msg != "" {
			return 0, 0, fmt.Errorf("status %q: %s at column %d", s, msg, len(a)+2)
		}
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("status %q: range %d-%d is backwards", s, lo, hi)
	}
	return lo, hi, nil
}

func parseCode(s string) (int, string) {
	if len(s) != 3 || !isDigits(s) {
		return 0, fmt.Sprintf("%q is not a three-digit HTTP status", s)
	}
	n, _ := strconv.Atoi(s)
	if n < 100 || n > 599 {
		return 0, fmt.Sprintf("HTTP status %d out of range 100-599", n)
	}
	return n, ""
}

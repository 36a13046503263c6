package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
)

// Unix stream sockets as listen addresses and targets are written
// "unix:/run/app.sock", or "unix:@name" for a name in the abstract
// namespace (Linux: no file, gone with its last socket).

// unixPrefix starts a unix socket address.
const unixPrefix = "unix:"

// maxUnixPath is the longest path a sockaddr_un holds (108 bytes with
// the terminating NUL); an abstract name has the same room after its @.
const maxUnixPath = 107

// unixPath returns the path (or @name) of a unix socket address.
func unixPath(addr string) (string, bool) {
	if !strings.HasPrefix(addr, unixPrefix) {
		return "", false
	}
	return addr[len(unixPrefix):], true
}

// isAbstract reports whether a unix path names an abstract socket.
func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }

// ParseUnixAddr checks a "unix:PATH" or "unix:@NAME" address and returns
// its path (or @name).
func ParseUnixAddr(s string) (string, error) {
	path, ok := unixPath(s)
	switch {
	case !ok:
		return "", fmt.Errorf("%q: want unix:PATH or unix:@NAME", s)
	case path == "" || path == "@":
		return "", fmt.Errorf("%q: empty path after unix: (at %d)", s, len(s))
	case len(path) > maxUnixPath:
		return "", fmt.Errorf("%q: path of %d bytes: at most %d fit a unix socket address", s, len(path), maxUnixPath)
	}
	if i := strings.IndexByte(path, 0); i >= 0 {
		return "", fmt.Errorf("%q: NUL byte at %d", s, len(unixPrefix)+i)
	}
	if !isAbstract(path) && strings.HasSuffix(path, "/") {
		return "", fmt.Errorf("%q: a directory, want a socket file's path", s)
	}
	return path, nil
}

// unixSockaddrName is path as the kernel's sun_path takes it: an
// abstract name starts with a NUL byte.
func unixSockaddrName(path string) string {
	if isAbstract(path) {
		return "\x00" + path[1:]
	}
	return path
}

// unixAddr is the net.Addr of a unix socket path.
func unixAddr(path string) *net.UnixAddr { return &net.UnixAddr{Name: path, Net: "unix"} }

// ParseUnixMode reads a listening socket file's permission bits in octal
// ("0660", "660").
func ParseUnixMode(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: want octal permission bits like 0660", s)
	}
	if n == 0 || n > 0o777 {
		return 0, fmt.Errorf("%q: want octal permission bits from 0001 to 0777", s)
	}
	return os.FileMode(n), nil
}

// ParseUnixOwner reads USER[:GROUP], each a name or a number, and
// returns the ids; gid is -1 when no group is given (unchanged).
func ParseUnixOwner(s string) (uid, gid int, err error) {
	u, g, hasGroup := strings.Cut(s, ":")
	if u == "" && !hasGroup {
		return 0, 0, fmt.Errorf("%q: want USER[:GROUP]", s)
	}
	uid, gid = -1, -1
	if u != "" {
		if uid, err = lookupID(u, func(n string) (string, error) {
			x, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return x.Uid, nil
		}); err != nil {
			return 0, 0, fmt.Errorf("%q: user %q: %w", s, u, err)
		}
	}
	if hasGroup {
		if g == "" {
			return 0, 0, fmt.Errorf("%q: empty group after : (at %d)", s, len(u)+1)
		}
		if gid, err = lookupID(g, func(n string) (string, error) {
			x, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return x.Gid, nil
		}); err != nil {
			return 0, 0, fmt.Errorf("%q: group %q: %w", s, g, err)
		}
	}
	return uid, gid, nil
}

// lookupID reads a numeric id, or looks a name up.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 31); err == nil {
		return int(n), nil
	}
	id, err := lookup(s)
	if err != nil {
		return 0, errors.New("no such name")
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("id %q is not a number", id)
	}
	return n, nil
}

// validateUnix checks what a rule's unix socket addresses allow. Client
// addresses of a unix listener are not IP addresses: lists and limits by
// address cannot apply, and are refused rather than silently ignored.
func (r *Rule) validateUnix() error {
	listen, unixListen := unixPath(r.Listen)
	if unixListen {
		if _, err := ParseUnixAddr(r.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	var unixTarget string
	for _, t := range r.Targets {
		// Bad targets are Validate's to report.
		if addr, _, err := parseTarget(t); err == nil && strings.HasPrefix(addr, unixPrefix) {
			unixTarget = addr
		}
	}
	for _, sr := range r.SNI {
		for _, t := range sr.Targets {
			if addr, _, err := parseTarget(t); err == nil && strings.HasPrefix(addr, unixPrefix) {
				return fmt.Errorf("sni: %q: unix socket targets are not supported with SNI routes", t)
			}
		}
	}
	if !unixListen && unixTarget == "" {
		if r.UnixMode != 0 || r.UnixOwner != "" {
			return errors.New("unix-mode, unix-owner: only for a unix: listen address")
		}
		return nil
	}
	if !unixSocketsSupported {
		return fmt.Errorf("unix sockets: not supported on %s", runtime.GOOS)
	}
	switch {
	case r.Proto == UDP:
		return errors.New("proto: unix sockets are relayed for tcp rules only")
	case unixTarget != "" && len(r.TrustedProxies) > 0:
		return fmt.Errorf("targets: %q: a unix socket target cannot be used with accept-proxy", unixTarget)
	case unixTarget != "" && len(r.SNI) > 0:
		return fmt.Errorf("targets: %q: a unix socket target cannot be used with SNI routes", unixTarget)
	case !unixListen && (r.UnixMode != 0 || r.UnixOwner != ""):
		return errors.New("unix-mode, unix-owner: only for a unix: listen address")
	case !unixListen:
		return nil
	case len(r.Allow) > 0:
		return errors.New("allow: a unix socket's clients have no address to match: use unix-mode and unix-owner")
	case len(r.Deny) > 0:
		return errors.New("deny: a unix socket's clients have no address to match: use unix-mode and unix-owner")
	case r.MaxConnsPerSource > 0:
		return errors.New("max-conns-per-source: a unix socket's clients have no address: use max-conns")
	case len(r.TrustedProxies) > 0:
		return errors.New("accept-proxy: not on a unix: listen address")
	case len(r.SNI) > 0:
		return errors.New("sni: not on a unix: listen address")
	case r.UnixMode&^0o777 != 0:
		return fmt.Errorf("unix-mode: %#o: want permission bits up to 0777", r.UnixMode)
	case isAbstract(listen) && (r.UnixMode != 0 || r.UnixOwner != ""):
		return errors.New("unix-mode, unix-owner: an abstract socket has no file")
	}
	if r.UnixOwner != "" {
		if _, _, err := ParseUnixOwner(r.UnixOwner); err != nil {
			return fmt.Errorf("unix-owner: %w", err)
		}
	}
	return nil
}

// unixListen is the listen address of a unix socket rule, for the log
// line of a client with no IP address; "" otherwise.
func unixListen(rs *ruleState, client netip.AddrPort) string {
	if client.IsValid() || !strings.HasPrefix(rs.Listen, unixPrefix) {
		return ""
	}
	return rs.Listen
}

// clientString is the client as logged: its address, or the unix
// socket it came through.
func (r *connRecord) clientString() string {
	if r.via != "" {
		return r.via
	}
	return r.client.String()
}

// checkNet is the network and address a health check dials for a target.
func checkNet(addr string) (string, string) {
	if path, ok := unixPath(addr); ok {
		return "unix", unixSockaddrName(path)
	}
	return "tcp", addr
}

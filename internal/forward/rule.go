package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Proto is the transport a rule relays.
type Proto uint8

// Transports.
const (
	TCP Proto = iota
	UDP
)

func (p Proto) String() string {
	if p == UDP {
		return "udp"
	}
	return "tcp"
}

// ParseProto reads "tcp" or "udp".
func ParseProto(s string) (Proto, error) {
	switch s {
	case "tcp", "":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return TCP, fmt.Errorf("protocol %q: want tcp or udp", s)
}

// Balance says how a rule picks among its targets.
type Balance uint8

// Balancing strategies.
const (
	RoundRobin   Balance = iota // rotate over the live targets, in proportion to their weights
	FirstHealthy                // the first live target in the list
	LeastConn                   // the live target with the fewest connections per unit of weight
	SourceHash                  // by the client's address: a client keeps its target, and only the clients of a target that goes or comes move (weighted rendezvous hashing)
)

var balanceNames = [...]string{RoundRobin: "round-robin", FirstHealthy: "first-healthy", LeastConn: "least-conn", SourceHash: "source-hash"}

func (b Balance) String() string {
	if int(b) < len(balanceNames) {
		return balanceNames[b]
	}
	return "round-robin"
}

// ParseBalance reads round-robin, first-healthy, least-conn or
// source-hash (and the short names rr, first, leastconn, source).
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "round-robin", "rr", "":
		return RoundRobin, nil
	case "first-healthy", "first", "failover":
		return FirstHealthy, nil
	case "least-conn", "leastconn", "least-connections":
		return LeastConn, nil
	case "source-hash", "source", "hash":
		return SourceHash, nil
	}
	return RoundRobin, fmt.Errorf("balance %q: want round-robin, first-healthy, least-conn or source-hash", s)
}

// maxWeight bounds a target's weight (HAProxy's bound).
const maxWeight = 256

// parseTarget reads a target: host:port, optionally followed by
// " weight=N" (1 to 256; default 1).
func parseTarget(s string) (addr string, weight int, err error) {
	addr, opts, _ := strings.Cut(strings.TrimSpace(s), " ")
	weight = 1
	for _, o := range strings.Fields(opts) {
		v, ok := strings.CutPrefix(o, "weight=")
		if !ok {
			return "", 0, fmt.Errorf("%q: unknown option %q: want weight=N", s, o)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxWeight {
			return "", 0, fmt.Errorf("%q: weight %q: want 1 to %d", s, v, maxWeight)
		}
		weight = n
	}
	if _, ok := unixPath(addr); ok {
		if _, err := ParseUnixAddr(addr); err != nil {
			return "", 0, err
		}
		return addr, weight, nil
	}
	host, _, err := splitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q has no host", s)
	}
	if err := checkHost(host); err != nil {
		return "", 0, fmt.Errorf("%q: %w", s, err)
	}
	return addr, weight, nil
}

// Defaults used when a Rule field is zero.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultUDPIdle        = 60 * time.Second
	DefaultTCPIdle        = 10 * time.Minute
	DefaultMaxSessions    = 10000
	DefaultHealthRise     = 2
	DefaultHealthFall     = 3
	DefaultMaxFails       = 1
	DefaultFailTimeout    = 10 * time.Second
)

// Rule is one listener and where its traffic goes. The zero value of each
// optional field is documented beside it.
type Rule struct {
	Name    string   // shown in logs and metrics; empty: "proto/listen"
	Proto   Proto    // TCP or UDP
	Listen  string   // host:port; an empty host listens on every IPv4 and IPv6 address
	Targets []string // host:port, at least one

	Balance        Balance       // zero: round-robin
	HealthInterval time.Duration // checks of every target (TCP: connect; UDP: a datagram); zero: none (dial failures fall through to the next target)
	// HealthRise and HealthFall are how many checks in a row bring a
	// target back up or take it down (HAProxy's rise and fall). Zero:
	// DefaultHealthRise, DefaultHealthFall.
	HealthRise, HealthFall int
	// HealthSend is sent to the target by each check (TCP after the
	// connect; UDP as the datagram, empty if unset), and HealthExpect, if
	// set, must be in the first bytes of the answer. A UDP target that
	// answers with ICMP port unreachable is down; one that stays silent is
	// down only when an answer is expected.
	HealthSend, HealthExpect string
	ConnectTimeout           time.Duration // zero: DefaultConnectTimeout
	// IdleTimeout closes a TCP connection with no bytes either way for this
	// long (enforced within twice this), and expires UDP sessions.
	// Zero: DefaultTCPIdle for TCP (as nginx's proxy_timeout), DefaultUDPIdle
	// for UDP; negative (TCP only): never.
	IdleTimeout time.Duration
	// KeepAlive is the TCP keep-alive idle time on both sockets. Zero: on,
	// with the kernel's timers (one setsockopt); negative: off.
	KeepAlive time.Duration

	MaxConns          int // TCP connections (or UDP sessions) at once; zero: no limit (UDP: DefaultMaxSessions)
	MaxConnsPerSource int // per client address; zero: no limit

	// QueueTimeout lets a TCP client over MaxConns wait this long for a
	// slot (accepted, not yet connected to a target), oldest first,
	// instead of a reset, as HAProxy's maxconn queue. Zero: no queue.
	QueueTimeout time.Duration
	Queue        int // clients that may wait at once; zero: MaxConns

	Allow []netip.Prefix // if non-empty, only these clients
	Deny  []netip.Prefix // never these clients (checked first)

	// MaxFails is how many dial failures in a row take a target out of
	// the rotation for FailTimeout (nginx's max_fails and fail_timeout):
	// a dead or black-holed target then stops costing every client a
	// connect attempt. A target is still tried when all are out. Zero:
	// DefaultMaxFails; negative: never.
	MaxFails    int
	FailTimeout time.Duration // zero: DefaultFailTimeout

	ProxyProtocol  int            // send a PROXY header to the target: 0 none, 1 or 2
	TrustedProxies []netip.Prefix // accept a PROXY header (v1 or v2) from these peers and use its client address

	// SNI routes TLS connections by the server name in their ClientHello
	// (TCP only); Targets is then the default route, and may be empty:
	// unmatched connections get a reset. Nil: no SNI routing.
	SNI []SNIRoute

	// UnixMode is the permission bits of a unix: listening socket's
	// file. Zero: as the umask leaves them.
	UnixMode os.FileMode
	// UnixOwner is USER[:GROUP] (names or numbers) of a unix: listening
	// socket's file. Empty: the process's.
	UnixOwner string
}

// DisplayName is Name, or proto/listen when Name is empty.
func (r *Rule) DisplayName() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Proto.String() + "/" + r.Listen
}

// key identifies a rule's socket across reloads: same protocol and
// address, same socket. Port 0 means "any free port", so such a socket is
// only the same if the rule name is too.
func (r *Rule) key() string {
	k := r.Proto.String() + " " + r.Listen
	if _, port, err := splitHostPort(r.Listen); err == nil && port == 0 {
		k += " " + r.DisplayName()
	}
	return k
}

// Validate checks a rule; errors name the field.
func (r *Rule) Validate() error {
	if err := r.validateUnix(); err != nil {
		return err
	}
	if err := r.validateQueue(); err != nil {
		return err
	}
	if _, ok := unixPath(r.Listen); !ok {
		host, _, err := splitHostPort(r.Listen)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if err := checkHost(host); err != nil {
			return fmt.Errorf("listen: %q: %w", r.Listen, err)
		}
	}
	if len(r.Targets) == 0 && len(r.SNI) == 0 {
		return errors.New("targets: at least one is needed")
	}
	for _, t := range r.Targets {
		if _, _, err := parseTarget(t); err != nil {
			return fmt.Errorf("targets: %w", err)
		}
	}
	switch {
	case r.HealthInterval < 0:
		return errors.New("health: must not be negative")
	case r.ConnectTimeout < 0:
		return errors.New("connect-timeout: must not be negative")
	case r.IdleTimeout < 0 && r.Proto == UDP:
		return errors.New("idle-timeout: a UDP session must expire: want a duration, not off")
	case r.MaxConns < 0:
		return errors.New("max-conns: must not be negative")
	case r.HealthRise < 0 || r.HealthFall < 0:
		return errors.New("health-rise, health-fall: must not be negative")
	case len(r.HealthSend) > 4096 || len(r.HealthExpect) > 4096:
		return errors.New("health-send, health-expect: at most 4096 bytes")
	case r.FailTimeout < 0:
		return errors.New("fail-timeout: must not be negative")
	case r.MaxConnsPerSource < 0:
		return errors.New("max-conns-per-source: must not be negative")
	case r.ProxyProtocol != 0 && r.ProxyProtocol != 1 && r.ProxyProtocol != 2:
		return fmt.Errorf("proxy-protocol: %d: want 1 or 2", r.ProxyProtocol)
	case r.ProxyProtocol != 0 && r.Proto == UDP:
		return errors.New("proxy-protocol: only for tcp rules")
	case len(r.TrustedProxies) > 0 && r.Proto == UDP:
		return errors.New("trusted-proxies: only for tcp rules")
	}
	return r.validateSNI()
}

// splitHostPort checks host:port with a numeric port.
func splitHostPort(s string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	return host, uint16(p), nil
}

// checkHost accepts an empty host, an IP address or a host name; a
// dotted number that is no IPv4 address (999.1.1.1) or a name with
// spaces is refused here rather than failing a lookup at start.
func checkHost(h string) error {
	if h == "" {
		return nil
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if len(h) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	numeric := true
	for i, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is neither an IP address nor a host name (label %d)", h, i+1)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
				numeric = false
			default:
				return fmt.Errorf("%q is neither an IP address nor a host name (%q at %d)", h, c, strings.Index(h, label)+j)
			}
		}
	}
	if numeric {
		return fmt.Errorf("%q is not an IP address", h)
	}
	return nil
}

// listenConflict reports whether two rules cannot both bind: the same
// protocol and port, and the same host or a wildcard (an empty host, or
// 0.0.0.0 or ::) on either side. Port 0 takes any free port: no conflict.
func listenConflict(a, b *Rule) bool {
	if a.Proto != b.Proto {
		return false
	}
	ha, pa, err1 := splitHostPort(a.Listen)
	hb, pb, err2 := splitHostPort(b.Listen)
	if err1 != nil || err2 != nil || pa != pb || pa == 0 {
		return false
	}
	wild := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || (err == nil && ip.IsUnspecified())
	}
	if wild(ha) || wild(hb) {
		return true
	}
	ia, ea := netip.ParseAddr(ha)
	ib, eb := netip.ParseAddr(hb)
	if ea == nil && eb == nil {
		return ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(ha, hb)
}

// permits reports whether a client address passes the rule's lists.
func (r *Rule) permits(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.Deny {
		if p.Contains(a) {
			return false
		}
	}
	if len(r.Allow) == 0 {
		return true
	}
	for _, p := range r.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (r *Rule) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// tcpIdle is the idle time of TCP connections; 0: never.
func (r *Rule) tcpIdle() time.Duration {
	switch {
	case r.IdleTimeout < 0:
		return 0
	case r.IdleTimeout == 0:
		return DefaultTCPIdle
	}
	return r.IdleTimeout
}

func (r *Rule) maxFails() int {
	switch {
	case r.MaxFails < 0:
		return 0
	case r.MaxFails == 0:
		return DefaultMaxFails
	}
	return r.MaxFails
}

func (r *Rule) failTimeout() time.Duration {
	if r.FailTimeout > 0 {
		return r.FailTimeout
	}
	return DefaultFailTimeout
}

func (r *Rule) connectTimeout() time.Duration {
	if r.ConnectTimeout > 0 {
		return r.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (r *Rule) keepAlive() net.KeepAliveConfig {
	switch {
	case r.KeepAlive < 0:
		return net.KeepAliveConfig{}
	case r.KeepAlive == 0:
		// Only SO_KEEPALIVE: each extra timer is one more setsockopt per connection.
		return net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	}
	return net.KeepAliveConfig{Enable: true, Idle: r.KeepAlive, Interval: r.KeepAlive, Count: -1}
}

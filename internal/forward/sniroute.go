package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"portolan/internal/config"
)

// SNI routing of a TCP rule: the server name in the client's TLS
// ClientHello picks the targets; the rule's own Targets are the default
// route (no name, or no pattern matches). TLS is not terminated: the
// bytes read to find the name go to the chosen target first, then the
// connection is relayed as any other. On Linux such connections leave the
// event loop for the goroutine relay (tcp.go), as PROXY headers do.

// SNIRoute sends the TLS connections whose server name matches Pattern to
// Targets.
type SNIRoute struct {
	// Pattern is a host name ("a.example", matched exactly) or a wildcard
	// ("*.example": any name ending in ".example", at any depth, but not
	// "example" itself). Case does not matter. An exact match wins over a
	// wildcard, and a longer wildcard over a shorter one.
	Pattern string   `json:"pattern"`
	Targets []string `json:"targets"` // host:port, at least one; balanced as the rule says
}

// ParseSNIRoute reads the command-line form PATTERN=TARGET[,TARGET...].
func ParseSNIRoute(s string) (SNIRoute, error) {
	pat, targets, ok := strings.Cut(s, "=")
	if !ok {
		return SNIRoute{}, fmt.Errorf("%q: want PATTERN=TARGET[,TARGET...]", s)
	}
	if pat == "" {
		return SNIRoute{}, fmt.Errorf("%q: offset 0: no pattern before =", s)
	}
	if targets == "" {
		return SNIRoute{}, fmt.Errorf("%q: offset %d: no target after =", s, len(pat)+1)
	}
	out := splitTargets(targets)
	at := len(pat) + 1
	for i, t := range out {
		if t == "" {
			return SNIRoute{}, fmt.Errorf("%q: offset %d: empty target", s, at)
		}
		at += len(strings.Split(targets, ",")[i]) + 1
	}
	return SNIRoute{Pattern: pat, Targets: out}, nil
}

func splitTargets(s string) []string {
	out := strings.Split(s, ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// patternKey checks a pattern and returns its lookup key: the name for an
// exact pattern, the suffix with its leading dot for a wildcard.
func patternKey(p string) (key string, wild bool, err error) {
	name := strings.ToLower(p)
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name, wild = rest, true
	}
	if name == "" {
		return "", false, errors.New(`want a host name, or "*." and a name`)
	}
	if strings.Contains(name, "*") {
		return "", false, errors.New(`a wildcard is only "*." at the start`)
	}
	if _, _, err := hostName([]byte(name)); err != nil {
		return "", false, err
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return "", false, errors.New("empty label")
	}
	if wild {
		return "." + name, true, nil
	}
	return name, false, nil
}

// validateSNI checks the SNI routes; errors name the pattern.
func (r *Rule) validateSNI() error {
	if len(r.SNI) == 0 {
		return nil
	}
	if r.Proto == UDP {
		return errors.New("sni: only for tcp rules")
	}
	seen := map[string]string{}
	for _, rt := range r.SNI {
		key, _, err := patternKey(rt.Pattern)
		if err != nil {
			return fmt.Errorf("sni: pattern %q: %w", rt.Pattern, err)
		}
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("sni: pattern %q: same as %q", rt.Pattern, prev)
		}
		seen[key] = rt.Pattern
		if len(rt.Targets) == 0 {
			return fmt.Errorf("sni: pattern %q: no targets", rt.Pattern)
		}
		if len(rt.Targets) > maxTargets {
			return fmt.Errorf("sni: pattern %q: %d targets: at most %d", rt.Pattern, len(rt.Targets), maxTargets)
		}
		for _, t := range rt.Targets {
			if _, _, err := parseTarget(t); err != nil {
				return fmt.Errorf("sni: pattern %q: %w", rt.Pattern, err)
			}
		}
	}
	return nil
}

// sniRoutes reads the config form: a mapping of pattern to a target or a
// list of targets.
func sniRoutes(v config.Node) ([]SNIRoute, error) {
	if !v.IsMapping() {
		return nil, v.Errorf(`want a mapping of server name pattern to targets, like "*.example": 198.18.0.2:443`)
	}
	pairs, err := v.Pairs()
	if err != nil {
		return nil, err
	}
	out := make([]SNIRoute, 0, len(pairs))
	for _, p := range pairs {
		targets, err := p.Value.Strings()
		if err != nil {
			return nil, err
		}
		out = append(out, SNIRoute{Pattern: p.Key, Targets: targets})
	}
	return out, nil
}

// sniRouter picks a connection's pool by server name.
type sniRouter struct {
	exact map[string]*pool
	wild  map[string]*pool // by suffix, leading dot included
}

// newSNIRouter makes the routes' pools (nil without routes) and starts
// their health checks, which stop with ctx.
func newSNIRouter(ctx context.Context, r *Rule, name string, st *ruleStats, log *slog.Logger) *sniRouter {
	if len(r.SNI) == 0 || r.Proto != TCP {
		return nil
	}
	sr := &sniRouter{exact: map[string]*pool{}, wild: map[string]*pool{}}
	for _, rt := range r.SNI {
		key, wild, err := patternKey(rt.Pattern)
		if err != nil {
			continue // Validate ran before
		}
		sub := *r // balancing and passive health as the rule says
		sub.Targets = rt.Targets
		p := newPool(&sub, st)
		if wild {
			sr.wild[key] = p
		} else {
			sr.exact[key] = p
		}
		if r.HealthInterval > 0 {
			go p.check(ctx, name, newHealthCheck(r), log)
		}
	}
	return sr
}

// pools returns the routes' pools (for their targets' metrics).
func (sr *sniRouter) pools() []*pool {
	if sr == nil {
		return nil
	}
	out := make([]*pool, 0, len(sr.exact)+len(sr.wild))
	for _, p := range sr.exact {
		out = append(out, p)
	}
	for _, p := range sr.wild {
		out = append(out, p)
	}
	return out
}

// route returns the pool for a server name, or nil when no pattern matches.
func (sr *sniRouter) route(name string) *pool {
	if name == "" {
		return nil
	}
	if p := sr.exact[name]; p != nil {
		return p
	}
	// Longest suffix first: "a.b.example" tries ".b.example", then ".example".
	for i := strings.IndexByte(name, '.'); i >= 0; {
		if p := sr.wild[name[i:]]; p != nil {
			return p
		}
		j := strings.IndexByte(name[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return nil
}

// helloBufs are the buffers ClientHellos are read into.
var helloBufs = sync.Pool{New: func() any { return new([maxHelloBytes]byte) }}

// readClientHello reads from c until a ClientHello is complete, timeout
// after start passes or maxHelloBytes have come, and returns the hello
// with every byte read (which may go on past the hello).
func readClientHello(c net.Conn, start time.Time, timeout time.Duration) (ClientHello, []byte, error) {
	buf := helloBufs.Get().(*[maxHelloBytes]byte)
	defer helloBufs.Put(buf)
	c.SetReadDeadline(start.Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	var p helloParser
	n := 0
	for {
		k, err := c.Read(buf[n:])
		n += k
		h, _, perr := p.next(buf[:n])
		switch {
		case perr == nil:
			return h, bytes.Clone(buf[:n]), nil
		case !errors.Is(perr, ErrShortHello):
			return ClientHello{}, nil, perr
		case errors.Is(err, os.ErrDeadlineExceeded):
			return ClientHello{}, nil, fmt.Errorf("no complete ClientHello within %s (%d bytes)", timeout, n)
		case err != nil:
			return ClientHello{}, nil, fmt.Errorf("client closed after %d bytes of a ClientHello: %w", n, err)
		}
	}
}

// routeSNI reads the connection's ClientHello within the connect timeout
// and returns the pool its server name routes to, with the bytes read.
// On failure the client gets a reset, the connection is counted and
// logged, and ok is false.
func (s *Server) routeSNI(rs *ruleState, tc *tcpConn) (p *pool, hello []byte, ok bool) {
	h, hello, err := readClientHello(tc.client, tc.start, rs.connectTimeout())
	tc.sni = h.ServerName
	if err == nil {
		p, err = rs.sniPool(h.ServerName)
	}
	if err != nil {
		tc.mu.Lock()
		cut := tc.reason // Shutdown closed the socket under the read
		tc.mu.Unlock()
		reset(tc.client)
		if cut != "" {
			s.logConn(tc, slog.LevelInfo, 0, 0, cut)
			return nil, nil, false
		}
		rs.stats.sniRejected.Add(1)
		s.logConn(tc, slog.LevelWarn, 0, 0, "sni: "+err.Error())
		return nil, nil, false
	}
	return p, hello, true
}

// sniPool is the pool a server name routes to: its route's, else the
// default route's (the rule's targets); without either, an error.
func (rs *ruleState) sniPool(name string) (*pool, error) {
	if p := rs.sni.route(name); p != nil {
		return p, nil
	}
	if len(rs.Targets) > 0 {
		return rs.pool, nil
	}
	return nil, fmt.Errorf("no route for %s", orNone(name))
}

func orNone(name string) string {
	if name == "" {
		return "a ClientHello without a server name"
	}
	return name
}

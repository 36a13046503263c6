package wait

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"

	"portolan/internal/freeport"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// bindFunc is freeport.ProbeBind's shape.
type bindFunc func(proto portspec.Proto, ap netip.AddrPort, reuse bool) error

func probeBind(proto portspec.Proto, ap netip.AddrPort, reuse bool) error {
	return freeport.ProbeBind(proto, ap, reuse)
}

var dialer net.Dialer

// dial connects from the wait's network namespace: the socket is made on
// this goroutine's thread, switched into it for the call.
func (w *waiter) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	if w.opts.Netns == "" {
		return dialer.DialContext(ctx, network, addr)
	}
	nerr := sockets.InNetns(w.opts.Netns, func() error {
		c, err = dialer.DialContext(ctx, network, addr)
		return nil
	})
	if nerr != nil {
		return nil, nerr
	}
	return c, err
}

// tcpAt connects to ap once.
func (w *waiter) tcpAt(ctx context.Context, ap netip.AddrPort) Observation {
	o := Observation{Addr: ap.String()}
	c, err := w.dial(ctx, "tcp", ap.String())
	if err != nil {
		o.Result = dialReason(err)
		if isTimeout(err) && w.isLocal(ap.Addr()) {
			if full := acceptQueueFull(w.opts.Netns, ap); full != "" {
				o.Result = full
			}
		}
		return o
	}
	c.Close()
	o.OK, o.Result = true, "accepting"
	return o
}

// acceptQueueFull explains a connect to a local address that timed out
// when a listener on its port has a full accept queue: the kernel then
// drops the SYNs, so the connect looks filtered, though the server is
// there and just not calling accept() fast enough. "" when none is full
// (or the table cannot be read).
func acceptQueueFull(netns string, ap netip.AddrPort) string {
	port := portspec.Port(ap.Port())
	q := sockets.Query{Proto: portspec.TCP, States: sockets.States(sockets.Listen),
		Ports: []sockets.PortRange{{Lo: port, Hi: port}}}
	socks, err := (&sockets.Table{Netns: netns}).List(context.Background(), q)
	if err != nil {
		return ""
	}
	for i := range socks {
		s := &socks[i]
		// A listener reports its accept queue's length as RxQueue and
		// the backlog as TxQueue; the kernel drops SYNs once the length
		// exceeds the backlog (sk_acceptq_is_full).
		if s.RxQueue > s.TxQueue || s.RxQueue == s.TxQueue && s.RxQueue > 0 {
			return fmt.Sprintf("no answer (timeout): a listener on %v has its accept queue full (%d waiting, backlog %d), so the kernel drops new connections: the server is not calling accept() fast enough, or is stuck", s.Local, s.RxQueue, s.TxQueue)
		}
	}
	return ""
}

// httpAt sends t's request to the server at ap, whatever t's host resolves
// to, and checks the status. Stages are told apart (connect, TLS, HTTP) so
// the reason says which one failed.
func (w *waiter) httpAt(ctx context.Context, t Target, ap netip.AddrPort) Observation {
	o := Observation{Addr: ap.String()}
	// The transport dials in a goroutine of its own, which may still run
	// when the request gives up: hence the lock, and the flags that say how
	// far it got.
	var stage struct {
		sync.Mutex
		dialed, handshaken bool
		dialErr, tlsErr    error
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := w.dial(ctx, "tcp", ap.String())
		stage.Lock()
		stage.dialed, stage.dialErr = err == nil, err
		stage.Unlock()
		return c, err
	}
	tr := &http.Transport{
		Proxy:             nil, // a proxy would answer for the endpoint we wait for
		DialContext:       dial,
		DisableKeepAlives: true,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := &tls.Config{}
			if w.opts.TLS != nil {
				cfg = w.opts.TLS.Clone()
			}
			cfg.ServerName = t.Host
			tc := tls.Client(c, cfg)
			err = tc.HandshakeContext(ctx)
			stage.Lock()
			stage.handshaken, stage.tlsErr = err == nil, err
			stage.Unlock()
			if err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		o.Result = "bad request: " + err.Error()
		return o
	}
	req.Header.Set("User-Agent", "portolan-wait")
	resp, err := client.Do(req)
	if err != nil {
		stage.Lock()
		defer stage.Unlock()
		switch {
		case stage.dialErr != nil:
			o.Result = dialReason(stage.dialErr)
		case stage.tlsErr != nil:
			o.Result = "TLS handshake failed: " + tlsReason(stage.tlsErr)
		case !stage.dialed && isTimeout(err):
			o.Result = dialReason(err)
		case stage.dialed && !stage.handshaken && strings.EqualFold(req.URL.Scheme, "https"):
			o.Result = "accepting but the TLS handshake did not finish in time"
		case isTimeout(err):
			o.Result = "accepting but no HTTP answer in time"
		default:
			o.Result = "accepting but no HTTP answer: " + innermost(err)
		}
		return o
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	status := fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	status = strings.TrimSpace(status)
	if resp.StatusCode < w.opts.StatusMin || resp.StatusCode > w.opts.StatusMax {
		o.Result = fmt.Sprintf("accepting but %s (want %d-%d)", status, w.opts.StatusMin, w.opts.StatusMax)
		return o
	}
	o.OK, o.Result = true, status
	return o
}

// unix connects to t's socket once.
func (w *waiter) unix(ctx context.Context, t Target) result {
	o := Observation{Addr: t.Path}
	c, err := w.dial(ctx, "unix", t.Path)
	if err == nil {
		c.Close()
		o.OK, o.Result = true, "accepting"
		return result{ready: true, addrs: []Observation{o}}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		o.Result = "no socket there (the file does not exist)"
	case errors.Is(err, syscall.ECONNREFUSED) && strings.HasPrefix(t.Path, "@"):
		// An abstract name has no file: it lives in the network namespace.
		o.Result = "connection refused (no socket listens on the abstract name " + t.Path + " in this network namespace)"
	case errors.Is(err, syscall.ECONNREFUSED):
		o.Result = "connection refused (the socket file exists but nothing listens)"
		if fi, serr := os.Stat(t.Path); serr == nil && fi.Mode()&fs.ModeSocket == 0 {
			o.Result = "not a socket (a " + fileKind(fi.Mode()) + ")"
		}
	case errors.Is(err, fs.ErrPermission):
		o.Result = "permission denied"
	default:
		o.Result = dialReason(err)
	}
	return result{reason: o.Result, addrs: []Observation{o}}
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return m.Type().String()
}

// unixFree is ready when nothing accepts on t's socket any more.
func (w *waiter) unixFree(ctx context.Context, t Target) result {
	r := w.unix(ctx, t)
	if r.ready {
		r.addrs[0].OK, r.addrs[0].Result = false, "still accepting"
		return result{reason: "still accepting connections", addrs: r.addrs}
	}
	r.addrs[0].OK = true
	return result{ready: true, addrs: r.addrs}
}

// free is ready when nothing listens on t's port: for local addresses a
// bind succeeds (with SO_REUSEADDR, as servers bind, so connections left
// in TIME_WAIT do not count); for remote ones a connect is refused.
// localhost covers the wildcards too: the port is wanted for a server.
func (w *waiter) free(ctx context.Context, t Target) result {
	addrs, err := w.resolve(ctx, t.Host)
	if err != nil {
		return result{reason: err.Error()}
	}
	if isLocalhostName(t.Host) {
		addrs = append(addrs, netip.IPv4Unspecified(), netip.IPv6Unspecified())
	}
	var obs []Observation
	busy := false
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, uint16(t.Port))
		o := Observation{Addr: ap.String()}
		if w.isLocal(a) {
			var err error
			if nerr := sockets.InNetns(w.opts.Netns, func() error { err = w.opts.bind(portspec.TCP, ap, true); return nil }); nerr != nil {
				err = nerr
			}
			switch {
			case err == nil, errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
				o.OK, o.Result = true, "free (bind succeeds)"
			case errors.Is(err, syscall.EADDRINUSE):
				o.Result = "in use (bind: address already in use)"
			case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
				// A privileged port we may not bind: ask by connecting.
				o = w.freeByConnect(ctx, ap)
			default:
				o.Result = "bind: " + innermost(err)
			}
		} else {
			o = w.freeByConnect(ctx, ap)
		}
		busy = busy || !o.OK
		obs = append(obs, o)
	}
	if !busy {
		return result{ready: true, addrs: obs}
	}
	// Say who still answers, from the loopback side.
	var listening []string
	for _, a := range []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()} {
		if w.tcpAt(ctx, netip.AddrPortFrom(a, uint16(t.Port))).OK {
			listening = append(listening, a.String())
		}
	}
	var failed []string
	for _, o := range obs {
		if !o.OK {
			failed = append(failed, o.Addr+": "+o.Result)
		}
	}
	reason := "still in use: " + strings.Join(failed, "; ")
	if len(listening) > 0 {
		reason = fmt.Sprintf("still listening (accepting on %s)", strings.Join(listening, " and "))
	}
	return result{reason: reason, addrs: obs}
}

// freeByConnect tells whether something listens on ap by connecting: a
// refusal means free. A wildcard address is asked on its loopback.
func (w *waiter) freeByConnect(ctx context.Context, ap netip.AddrPort) Observation {
	o := Observation{Addr: ap.String()}
	dst := ap
	switch {
	case ap.Addr() == netip.IPv4Unspecified():
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
	case ap.Addr() == netip.IPv6Unspecified():
		dst = netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	c := w.tcpAt(ctx, dst)
	switch {
	case c.OK:
		o.Result = "still accepting connections"
	case c.Result == "connection refused", c.Result == "address not available on this machine":
		o.OK, o.Result = true, "free ("+c.Result+")"
	default:
		o.Result = "cannot tell: " + c.Result
	}
	return o
}

func isLocalhostName(h string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// explain turns the failed observations of one attempt into one reason. A
// refused loopback or local address is checked against the other loopback
// family: a server on 127.0.0.1 only is the commonest wait that never ends.
func (w *waiter) explain(ctx context.Context, t Target, addrs []netip.Addr, obs []Observation) string {
	if len(addrs) == 1 && w.isLocal(addrs[0]) && strings.HasSuffix(obs[0].Result, "connection refused") {
		asked := addrs[0]
		var others []netip.Addr
		for _, a := range []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()} {
			if a != asked {
				others = append(others, a)
			}
		}
		var on []string
		for _, a := range others {
			ap := netip.AddrPortFrom(a, uint16(t.Port))
			var o Observation
			if t.Kind == HTTP {
				o = w.httpAt(ctx, t, ap)
			} else {
				o = w.tcpAt(ctx, ap)
			}
			if o.OK || strings.HasPrefix(o.Result, "accepting") {
				on = append(on, a.String())
			}
		}
		if len(on) > 0 {
			return fmt.Sprintf("listening on %s only, you asked for %s", strings.Join(on, " and "), asked)
		}
	}
	first := obs[0].Result
	same := true
	for _, o := range obs[1:] {
		same = same && o.Result == first
	}
	if same {
		if len(obs) == 1 {
			return first
		}
		names := make([]string, len(addrs))
		for i, a := range addrs {
			names[i] = a.String()
		}
		return fmt.Sprintf("%s (tried %s)", first, strings.Join(names, ", "))
	}
	parts := make([]string, len(obs))
	for i, o := range obs {
		parts[i] = addrs[i].String() + ": " + o.Result
	}
	return strings.Join(parts, "; ")
}

// dialReason says in a few words why a connect failed.
func dialReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available on this machine"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case isTimeout(err):
		return "no answer (timeout): filtered, or the host is down"
	}
	return innermost(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// tlsReason shortens the common certificate errors.
func tlsReason(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return "certificate signed by an unknown authority"
	case errors.As(err, &hn):
		return hn.Error()
	case errors.As(err, &ci):
		return ci.Error()
	case isTimeout(err):
		return "no answer in time"
	}
	return innermost(err)
}

// innermost returns the message of the last error in err's chain: "EOF"
// rather than "Get "http://...": EOF".
func innermost(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

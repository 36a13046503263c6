package scan

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Banner is what an open port said, and the service it sounds like.
type Banner struct {
	// Service is the service the answer identifies ("ssh", "http",
	// "https", "redis"...), or "" when it identifies none.
	Service string
	// Text is the answer made printable: the first line for most
	// services, status and Server header for HTTP, version, ALPN and
	// certificate subject for TLS.
	Text string
}

// Grabber reads banners: it connects, waits briefly for a service that
// speaks first (SSH, SMTP, FTP...), and otherwise sends a minimal greeting
// chosen by port (an HTTP HEAD, a TLS ClientHello, a Redis PING...), then
// guesses the service from the answer. The zero value is ready.
type Grabber struct {
	// Timeout bounds the whole exchange with one port. 0 means 3s.
	Timeout time.Duration
	// Wait is how long a silent service gets to speak first before the
	// greeting is sent. 0 means 1s.
	Wait time.Duration
	// MaxBytes bounds what is read from one port. 0 means 1024.
	MaxBytes int
	// Dial connects; nil means net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// greeting is what to send first to a port whose service waits for the
// client.
type greeting struct {
	tls  bool   // start with a TLS handshake
	send []byte // nil: wait for the server to speak
}

var (
	httpHead    = []byte("HEAD / HTTP/1.0\r\n\r\n")
	redisPing   = []byte("PING\r\n")
	memcacheVer = []byte("version\r\n")
	// pgSSLRequest asks a PostgreSQL server whether it speaks TLS; any
	// PostgreSQL answers with one byte, 'S' or 'N'.
	pgSSLRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
)

// greetings maps well-known client-speaks-first ports to their greeting.
// Ports not listed get the server-first wait, then an HTTP HEAD, which
// draws some answer from most line protocols.
var greetings = map[uint16]greeting{
	80: {send: httpHead}, 81: {send: httpHead}, 591: {send: httpHead},
	3000: {send: httpHead}, 5000: {send: httpHead}, 8000: {send: httpHead},
	8008: {send: httpHead}, 8080: {send: httpHead}, 8081: {send: httpHead},
	8888: {send: httpHead}, 9000: {send: httpHead}, 9090: {send: httpHead},
	443: {tls: true}, 465: {tls: true}, 636: {tls: true}, 853: {tls: true},
	989: {tls: true}, 990: {tls: true}, 992: {tls: true}, 993: {tls: true},
	994: {tls: true}, 995: {tls: true}, 2376: {tls: true}, 4443: {tls: true},
	5061: {tls: true}, 5986: {tls: true}, 6443: {tls: true}, 8443: {tls: true},
	8883: {tls: true}, 9443: {tls: true}, 10250: {tls: true},
	6379:  {send: redisPing},
	11211: {send: memcacheVer},
	5432:  {send: pgSSLRequest},
}

// tlsServices names what runs inside TLS on its usual ports.
var tlsServices = map[uint16]string{
	465: "smtps", 636: "ldaps", 853: "domain-s", 989: "ftps-data", 990: "ftps",
	992: "telnets", 993: "imaps", 994: "ircs", 995: "pop3s", 5061: "sips",
	8883: "secure-mqtt",
}

func (g *Grabber) timeout() time.Duration { return orDefault(g.Timeout, 3*time.Second) }
func (g *Grabber) wait() time.Duration    { return orDefault(g.Wait, time.Second) }
func (g *Grabber) maxBytes() int          { return orDefault(g.MaxBytes, 1024) }

func (g *Grabber) dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	if g.Dial != nil {
		return g.Dial(ctx, "tcp", ap.String())
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ap.String())
}

// Grab reads the banner of the service at ap within Timeout. An error
// means nothing usable came back; a Banner with an empty Text means the
// service stayed silent even after the greeting.
func (g *Grabber) Grab(ctx context.Context, ap netip.AddrPort) (Banner, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout())
	defer cancel()
	return g.grab(ctx, ap, greetings[ap.Port()])
}

func (g *Grabber) grab(ctx context.Context, ap netip.AddrPort, gr greeting) (Banner, error) {
	if gr.tls {
		return g.grabTLS(ctx, ap)
	}
	c, err := g.dial(ctx, ap)
	if err != nil {
		return Banner{}, fmt.Errorf("banner %s: %w", ap, err)
	}
	defer closeReset(c)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	dl, _ := ctx.Deadline()

	var got []byte
	sent := gr.send
	if sent == nil {
		// Server-first services greet at once; wait a little for them.
		c.SetReadDeadline(minTime(dl, time.Now().Add(g.wait())))
		got = g.read(c, nil)
		if len(got) == 0 {
			sent = httpHead
		}
	}
	if sent != nil {
		c.SetDeadline(dl)
		if _, err := c.Write(sent); err != nil {
			return Banner{}, fmt.Errorf("banner %s: %w", ap, err)
		}
		got = g.read(c, sent)
	}
	if isTLSRecord(got) || plainToTLS(got) {
		// A TLS server answered our plain text: do it properly.
		return g.grabTLS(ctx, ap)
	}
	if len(got) == 0 && errors.Is(ctx.Err(), context.Canceled) {
		return Banner{}, ctx.Err() // the scan stopped, not the service
	}
	return identify(ap.Port(), got, sent, false), nil
}

// read reads what the service says into at most MaxBytes: up to the end of
// the first line, or of the header for an HTTP answer, or the deadline.
func (g *Grabber) read(c net.Conn, sent []byte) []byte {
	buf := make([]byte, g.maxBytes())
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil || complete(buf[:n], sent) {
			break
		}
	}
	return buf[:n]
}

// complete reports whether an answer is whole enough to stop reading.
func complete(b, sent []byte) bool {
	if bytes.HasPrefix(b, []byte("HTTP/")) {
		return bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
	}
	if bytes.Equal(sent, pgSSLRequest) {
		return len(b) >= 1
	}
	if len(b) >= 5 && b[4] == 10 && mysqlHandshake(b) {
		return true
	}
	return bytes.IndexByte(b, '\n') >= 0
}

func isTLSRecord(b []byte) bool {
	return len(b) >= 3 && (b[0] == 0x15 || b[0] == 0x16) && b[1] == 3 && b[2] <= 4
}

// plainToTLS recognises the HTTP 400 that HTTPS servers (Go, nginx)
// answer to plain HTTP.
func plainToTLS(b []byte) bool {
	if !bytes.HasPrefix(b, []byte("HTTP/")) || !bytes.Contains(firstLineBytes(b), []byte(" 400 ")) {
		return false
	}
	up := bytes.ToUpper(b)
	return bytes.Contains(up, []byte("HTTPS")) || bytes.Contains(up, []byte("TLS")) || bytes.Contains(up, []byte("SSL"))
}

func firstLineBytes(b []byte) []byte {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		return b[:i]
	}
	return b
}

// mysqlHandshake recognises the first packet of MySQL and MariaDB: a
// 3-byte length, sequence 0, protocol version 10, a NUL-ended version.
func mysqlHandshake(b []byte) bool {
	if len(b) < 6 || b[3] != 0 || b[4] != 10 {
		return false
	}
	end := bytes.IndexByte(b[5:], 0)
	return end > 0 && isPrintable(b[5:5+end])
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// identify guesses the service from an answer to sent (nil: the service
// spoke first).
func identify(port uint16, got, sent []byte, inTLS bool) Banner {
	s := string(got)
	line := firstLine(s)
	b := Banner{Text: printable(line)}
	switch {
	case len(got) == 0:
		b.Text = ""
	case len(sent) > 0 && bytes.HasPrefix(sent, got):
		b.Service = "echo" // it said back what it was sent
	case strings.HasPrefix(s, "HTTP/"):
		b.Service = "http"
		if inTLS {
			b.Service = "https"
		}
		b.Text = printable(httpSummary(s))
	case strings.HasPrefix(s, "SSH-"):
		b.Service = "ssh"
	case strings.HasPrefix(s, "RFB "):
		b.Service = "vnc"
	case strings.HasPrefix(s, "* OK"), strings.HasPrefix(s, "* PREAUTH"):
		b.Service = "imap"
	case bytes.Equal(sent, redisPing) && (strings.HasPrefix(s, "+PONG") || strings.HasPrefix(s, "-NOAUTH") ||
		strings.HasPrefix(s, "-DENIED") || strings.HasPrefix(s, "-ERR")),
		strings.HasPrefix(s, "-ERR unknown command"):
		b.Service = "redis"
	case strings.HasPrefix(s, "+OK"):
		b.Service = "pop3"
	case strings.HasPrefix(s, "VERSION "):
		b.Service = "memcached"
	case bytes.Equal(sent, pgSSLRequest) && len(got) == 1 && (got[0] == 'S' || got[0] == 'N'):
		b.Service = "postgresql"
		b.Text = map[byte]string{'S': "postgresql: TLS offered", 'N': "postgresql: TLS not offered"}[got[0]]
	case mysqlHandshake(got):
		b.Service = "mysql"
		end := bytes.IndexByte(got[5:], 0)
		b.Text = "mysql " + string(got[5:5+end])
	case strings.HasPrefix(s, "220") || strings.HasPrefix(s, "421"):
		up := strings.ToUpper(line)
		switch {
		case strings.Contains(up, "SMTP") || strings.Contains(up, "POSTFIX") || strings.Contains(up, "EXIM") ||
			strings.Contains(up, "SENDMAIL") || port == 25 || port == 587 || port == 465:
			b.Service = "smtp"
		case strings.Contains(up, "FTP") || port == 21:
			b.Service = "ftp"
		}
	case strings.HasPrefix(s, "AMQP"):
		b.Service = "amqp"
	}
	return b
}

// httpSummary keeps the status line and the Server header.
func httpSummary(s string) string {
	head, _, _ := strings.Cut(s, "\r\n\r\n")
	lines := strings.Split(strings.ReplaceAll(head, "\r\n", "\n"), "\n")
	out := lines[0]
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "server") {
			out += "; Server: " + strings.TrimSpace(v)
		}
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// printable escapes what a terminal should not interpret, Go-style.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return strings.TrimSpace(b.String())
}

// grabTLS shakes hands (any certificate: the point is to read it), reports
// version, ALPN and certificate subject, and asks an HTTP server inside for
// its status.
func (g *Grabber) grabTLS(ctx context.Context, ap netip.AddrPort) (Banner, error) {
	raw, err := g.dial(ctx, ap)
	if err != nil {
		return Banner{}, fmt.Errorf("banner %s: %w", ap, err)
	}
	defer closeReset(raw)
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	dl, _ := ctx.Deadline()
	raw.SetDeadline(dl)
	c := tls.Client(raw, &tls.Config{
		InsecureSkipVerify: true, // a scanner reports certificates, it does not trust them
		MinVersion:         tls.VersionTLS10,
		NextProtos:         []string{"h2", "http/1.1"},
	})
	if err := c.HandshakeContext(ctx); err != nil {
		return Banner{Service: "ssl"}, fmt.Errorf("banner %s: tls: %w", ap, err)
	}
	cs := c.ConnectionState()
	parts := []string{tls.VersionName(cs.Version)}
	if cs.NegotiatedProtocol != "" {
		parts = append(parts, "alpn="+cs.NegotiatedProtocol)
	}
	if len(cs.PeerCertificates) > 0 {
		parts = append(parts, "subject="+cs.PeerCertificates[0].Subject.String())
	}
	b := Banner{Service: "ssl", Text: strings.Join(parts, " ")} // nmap's name for TLS
	if s := tlsServices[ap.Port()]; s != "" {
		b.Service = s
	}
	switch cs.NegotiatedProtocol {
	case "h2":
		b.Service = "https"
	case "", "http/1.1":
		if _, ok := tlsServices[ap.Port()]; ok {
			break
		}
		if _, err := c.Write(httpHead); err == nil {
			if got := g.read(c, httpHead); bytes.HasPrefix(got, []byte("HTTP/")) {
				b.Service = "https"
				b.Text += "; " + printable(httpSummary(string(got)))
			}
		}
	}
	b.Text = printable(b.Text)
	return b, nil
}

// closeReset closes with a reset, like the probes: no TIME_WAIT.
func closeReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

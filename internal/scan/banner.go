package scan

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"html"
	"net"
	"net/netip"
	"strconv"
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
	// MaxBytes bounds what is read from one port. 0 means 4096 (an HTTP
	// page's title usually comes within it).
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
	// httpHead asks for the start page; GET rather than HEAD for its title.
	httpHead    = []byte("GET / HTTP/1.0\r\n\r\n")
	redisPing   = []byte("PING\r\n")
	redisInfo   = []byte("INFO server\r\n") // a bulk string with redis_version, or -NOAUTH
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
	6379:  {send: redisInfo},
	11211: {send: memcacheVer},
	5432:  {send: pgSSLRequest},
}

// alpnOffer are the ALPN protocol IDs (IANA's registry) the TLS probe
// offers: a server picks the one it speaks, which names the service on any
// port, and a server that insists on ALPN refuses a handshake offering
// none of its own.
var alpnOffer = []string{"h2", "http/1.1", "imap", "pop3", "ftp", "managesieve", "xmpp-client", "mqtt", "dot", "irc", "postgresql", "smb", "sip/2", "coap"}

// alpnServices names the service an ALPN protocol ID says runs inside TLS
// (HTTP is found by asking).
var alpnServices = map[string]string{
	"imap": "imaps", "pop3": "pop3s", "ftp": "ftps", "managesieve": "sieve", "xmpp-client": "xmpp-client",
	"mqtt": "secure-mqtt", "dot": "domain-s", "irc": "ircs", "postgresql": "postgresql", "smb": "microsoft-ds",
	"sip/2": "sips", "coap": "coaps",
}

// tlsServices names what runs inside TLS on its usual ports.
var tlsServices = map[uint16]string{
	465: "smtps", 636: "ldaps", 853: "domain-s", 989: "ftps-data", 990: "ftps",
	992: "telnets", 993: "imaps", 994: "ircs", 995: "pop3s", 5061: "sips",
	8883: "secure-mqtt",
}

func (g *Grabber) timeout() time.Duration { return orDefault(g.Timeout, 3*time.Second) }
func (g *Grabber) wait() time.Duration    { return orDefault(g.Wait, time.Second) }
func (g *Grabber) maxBytes() int          { return orDefault(g.MaxBytes, 4096) }

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
	if bytes.Equal(sent, pgSSLRequest) && bytes.Equal(got, []byte("N")) {
		// No TLS: a startup message draws the server's own answer, an
		// authentication request or an error naming the refusal, which
		// nothing but PostgreSQL sends.
		if _, err := c.Write(pgStartup); err == nil {
			got = append(got, g.read(c, pgStartup)...)
		}
		sent = pgSSLRequest
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
		head, body, ok := cutHead(b)
		if !ok {
			return false
		}
		// An HTML page is read up to its title (or to where it should have
		// come); anything else ends with its header.
		ct := headerValue(string(head), "content-type")
		if !strings.Contains(strings.ToLower(ct), "html") {
			return true
		}
		low := bytes.ToLower(body)
		return bytes.Contains(low, []byte("</title")) || bytes.Contains(low, []byte("<body"))
	}
	if bytes.Equal(sent, pgSSLRequest) {
		return len(b) >= 1
	}
	if bytes.Equal(sent, pgStartup) {
		_, ok := pgMessages(b)
		return ok
	}
	if bytes.Equal(sent, redisInfo) && len(b) > 0 && b[0] == '$' {
		// A bulk string: $LEN\r\n then LEN bytes and \r\n.
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		n, err := strconv.Atoi(string(line[1:]))
		return ok && (err != nil || len(rest) >= n)
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
	case bytes.Equal(sent, redisInfo) && strings.HasPrefix(s, "$") && strings.Contains(s, "\nredis_version:"):
		b.Service = "redis"
		b.Text = redisSummary(s)
	case (bytes.Equal(sent, redisPing) || bytes.Equal(sent, redisInfo)) && (strings.HasPrefix(s, "+PONG") || strings.HasPrefix(s, "-NOAUTH") ||
		strings.HasPrefix(s, "-DENIED") || strings.HasPrefix(s, "-ERR")),
		strings.HasPrefix(s, "-ERR unknown command"):
		b.Service = "redis"
	case strings.HasPrefix(s, "+OK"):
		b.Service = "pop3"
	case strings.HasPrefix(s, "VERSION "):
		b.Service = "memcached"
	case bytes.Equal(sent, pgSSLRequest) && len(got) >= 1 && (got[0] == 'S' || got[0] == 'N'):
		b.Service = "postgresql"
		b.Text = map[byte]string{'S': "postgresql: TLS offered", 'N': "postgresql: TLS not offered"}[got[0]]
		if len(got) > 1 {
			say, ok := pgStartupAnswer(got[1:])
			if !ok {
				b.Service, b.Text = "", printable(firstLine(s))
				break
			}
			b.Text = printable(b.Text + "; " + say)
		}
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

// httpSummary keeps the status line, the Server header and the page's
// title.
func httpSummary(s string) string {
	head, body, _ := cutHead([]byte(s))
	lines := strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n")
	out := lines[0]
	if v := headerValue(string(head), "server"); v != "" {
		out += "; Server: " + v
	}
	if t := htmlTitle(body); t != "" {
		out += "; title: " + t
	}
	return out
}

// cutHead splits an HTTP answer at the blank line after its header.
func cutHead(b []byte) (head, body []byte, ok bool) {
	if h, r, ok := bytes.Cut(b, []byte("\r\n\r\n")); ok {
		return h, r, true
	}
	if h, r, ok := bytes.Cut(b, []byte("\n\n")); ok {
		return h, r, true
	}
	return b, nil, false
}

// headerValue returns the first value of header name in an HTTP head.
func headerValue(head, name string) string {
	for _, l := range strings.Split(strings.ReplaceAll(head, "\r\n", "\n"), "\n")[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// maxTitle bounds the title kept from a page, in runes.
const maxTitle = 80

// htmlTitle returns the text of the first <title> element of an HTML page,
// entities decoded and white space collapsed; "" when there is none (or
// it does not end within what was read).
func htmlTitle(body []byte) string {
	low := lowerASCII(body)
	i := bytes.Index(low, []byte("<title"))
	if i < 0 {
		return ""
	}
	gt := bytes.IndexByte(low[i:], '>')
	if gt < 0 {
		return ""
	}
	start := i + gt + 1
	end := bytes.Index(low[start:], []byte("</title"))
	if end < 0 {
		return ""
	}
	t := strings.Join(strings.Fields(html.UnescapeString(string(body[start:start+end]))), " ")
	if r := []rune(t); len(r) > maxTitle {
		t = string(r[:maxTitle]) + "..."
	}
	return t
}

// lowerASCII returns a copy of b with A-Z lowered and every other byte as
// it is, so that an index into it is one into b: bytes.ToLower turns
// invalid UTF-8 into U+FFFD and lowers some letters into longer ones (a
// title of such bytes cut a page out of bounds).
func lowerASCII(b []byte) []byte {
	low := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	return low
}

// redisSummary keeps what Redis's INFO server says of the product:
// "redis 7.0.15 standalone".
func redisSummary(s string) string {
	var ver, mode string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, "\r")
		if v, ok := strings.CutPrefix(l, "redis_version:"); ok {
			ver = v
		}
		if v, ok := strings.CutPrefix(l, "redis_mode:"); ok {
			mode = v
		}
	}
	return printable(strings.TrimSpace("redis " + ver + " " + mode))
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
		NextProtos:         alpnOffer,
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
		cert := cs.PeerCertificates[0]
		parts = append(parts, "subject="+cert.Subject.String(), "issuer="+cert.Issuer.String(),
			"expires="+cert.NotAfter.UTC().Format(time.DateOnly))
	}
	b := Banner{Service: "ssl", Text: strings.Join(parts, " ")} // nmap's name for TLS
	if s := tlsServices[ap.Port()]; s != "" {
		b.Service = s
	}
	if name := alpnServices[cs.NegotiatedProtocol]; name != "" {
		b.Service = name
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

// pgStartup is a PostgreSQL startup message (protocol 3.0) for a user
// and database named portolan, which no server should have: the answer is
// an authentication request or an error, never a session.
var pgStartup = func() []byte {
	body := []byte{0, 3, 0, 0} // protocol 3.0
	for _, kv := range []string{"user", "portolan", "database", "portolan", "application_name", "portolan-scan"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}()

// pgMsg is one backend message: its type and body.
type pgMsg struct {
	typ  byte
	body []byte
}

// pgMessages splits what a PostgreSQL server sent into messages. done
// says the answer is decisive: an error, an authentication request
// other than "ok", or ready-for-query.
func pgMessages(b []byte) (msgs []pgMsg, done bool) {
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || n > 1<<20 {
			return msgs, true // not PostgreSQL: stop reading
		}
		if len(b) < 1+n {
			break
		}
		m := pgMsg{b[0], b[5 : 1+n]}
		msgs = append(msgs, m)
		b = b[1+n:]
		switch {
		case m.typ == 'E', m.typ == 'Z':
			return msgs, true
		case m.typ == 'R' && (len(m.body) < 4 || binary.BigEndian.Uint32(m.body) != 0):
			return msgs, true
		}
	}
	return msgs, false
}

// pgAuth names the authentication requests (AuthenticationXXX).
var pgAuth = map[uint32]string{0: "ok", 2: "Kerberos V5", 3: "password", 5: "MD5 password", 7: "GSSAPI", 9: "SSPI"}

// pgStartupAnswer says what a server answered a startup message with:
// "auth SCRAM-SHA-256", "FATAL 28000: role \"portolan\" does not exist",
// or the server_version a server without authentication reports. ok is
// false when the answer is not the PostgreSQL protocol.
func pgStartupAnswer(b []byte) (string, bool) {
	msgs, _ := pgMessages(b)
	var out []string
	for _, m := range msgs {
		switch m.typ {
		case 'R':
			if len(m.body) < 4 {
				return "", false
			}
			code := binary.BigEndian.Uint32(m.body)
			name, known := pgAuth[code]
			if code == 10 { // SASL: the mechanisms, each NUL-ended
				name, known = strings.Join(strings.FieldsFunc(string(m.body[4:]), func(r rune) bool { return r == 0 }), ","), true
			}
			if !known {
				name = "method " + strconv.FormatUint(uint64(code), 10)
			}
			out = append(out, "auth "+name)
		case 'S': // ParameterStatus: name, value
			if k, v, ok := strings.Cut(strings.TrimRight(string(m.body), "\x00"), "\x00"); ok && k == "server_version" {
				out = append(out, "server_version "+v)
			}
		case 'E':
			f := map[byte]string{}
			for body := m.body; len(body) > 1 && body[0] != 0; {
				end := bytes.IndexByte(body[1:], 0)
				if end < 0 {
					break
				}
				f[body[0]] = string(body[1 : 1+end])
				body = body[2+end:]
			}
			if f['C'] == "" && f['M'] == "" {
				return "", false
			}
			out = append(out, strings.TrimSpace(f['S']+" "+f['C']+": "+f['M']))
		}
	}
	if len(out) == 0 {
		return "", false
	}
	return strings.Join(out, "; "), true
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

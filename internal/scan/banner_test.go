package scan

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portolan/internal/testenv"
)

// server is a tiny TCP service: it greets with hello (if any), then answers
// each line it reads with reply(line) (if reply is set).
func server(t *testing.T, hello string, reply func(string) string) netip.AddrPort {
	t.Helper()
	addr := testenv.ServeLoopback(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if hello != "" {
			c.Write([]byte(hello))
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if reply != nil {
				c.Write([]byte(reply(line)))
			}
		}
	})
	return netip.MustParseAddrPort(addr)
}

func addrPort(t *testing.T, url string) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://"))
}

func TestGrab(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "tiny/1.0")
		w.Write([]byte("hello"))
	}))
	defer web.Close()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<!DOCTYPE html>\n<html><head><meta charset=utf-8>\n<TITLE>\n  Router &amp; Firewall\n  Login </TITLE></head><body>" + strings.Repeat("x", 8000) + "</body></html>"))
	}))
	defer page.Close()
	tlsWeb := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "tiny-tls/2.0")
	}))
	tlsWeb.Config.ErrorLog = log.New(io.Discard, "", 0) // our plain-text probe is an "error" to it
	tlsWeb.StartTLS()
	defer tlsWeb.Close()

	// TLS that is not HTTP: a handshake, then silence.
	plainTLS, err := tls.Listen("tcp", "127.0.0.1:0", tlsWeb.TLS)
	if err != nil {
		t.Fatal(err)
	}
	defer plainTLS.Close()
	go testenv.Serve(plainTLS, testenv.Drain) // reading makes the TLS handshake

	tests := []struct {
		name        string
		ap          netip.AddrPort
		gr          *greeting // nil: as Grab chooses by port
		service     string
		textHas     []string
		textIsEmpty bool
		timeout     time.Duration // 0: generous, for a loaded machine
	}{
		{name: "http", ap: addrPort(t, web.URL), service: "http",
			textHas: []string{"HTTP/1.", "200 OK", "Server: tiny/1.0"}},
		{name: "http title", ap: addrPort(t, page.URL), service: "http",
			textHas: []string{"200 OK", "; title: Router & Firewall Login"}},
		{name: "https found via the 400 to plain text", ap: addrPort(t, tlsWeb.URL), service: "https",
			textHas: []string{"TLS 1.3", "alpn=http/1.1", "subject=O=Acme Co", "200 OK", "Server: tiny-tls/2.0"}},
		{name: "https by port", ap: addrPort(t, tlsWeb.URL), gr: &greeting{tls: true}, service: "https",
			textHas: []string{"TLS 1.3", "subject=O=Acme Co", "Server: tiny-tls/2.0"}},
		{name: "TLS is ssl, as nmap names it", ap: netip.MustParseAddrPort(plainTLS.Addr().String()), gr: &greeting{tls: true}, service: "ssl",
			textHas: []string{"TLS 1.3", "subject=O=Acme Co"}},
		{name: "ssh speaks first", ap: server(t, "SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n", nil), service: "ssh",
			textHas: []string{"SSH-2.0-OpenSSH_9.6p1 Debian-3"}},
		{name: "smtp", ap: server(t, "220 mx.example.test ESMTP Postfix (Debian)\r\n", nil), service: "smtp",
			textHas: []string{"220 mx.example.test ESMTP Postfix"}},
		{name: "ftp", ap: server(t, "220 ProFTPD Server ready.\r\n", nil), service: "ftp",
			textHas: []string{"ProFTPD"}},
		{name: "redis ping", ap: server(t, "", func(string) string { return "+PONG\r\n" }),
			gr: &greeting{send: redisPing}, service: "redis", textHas: []string{"+PONG"}},
		{name: "redis on an odd port answers the HTTP probe", ap: server(t, "", func(l string) string {
			if f := strings.Fields(l); len(f) > 0 {
				return "-ERR unknown command '" + f[0] + "'\r\n"
			}
			return ""
		}), service: "redis", textHas: []string{"-ERR unknown command 'GET'"}},
		{name: "memcached", ap: server(t, "", func(string) string { return "VERSION 1.6.21\r\n" }),
			gr: &greeting{send: memcacheVer}, service: "memcached", textHas: []string{"VERSION 1.6.21"}},
		{name: "echo says back what it was sent", ap: server(t, "", func(l string) string { return l }), service: "echo"},
		{name: "silent service", ap: server(t, "", nil), textIsEmpty: true, timeout: 300 * time.Millisecond},
		{name: "binary is escaped", ap: server(t, "\x00\x01hi\xff\n", nil), textHas: []string{`\x00\x01hi\xff`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &Grabber{Wait: 100 * time.Millisecond, Timeout: orDefault(tc.timeout, 10*time.Second)}
			ctx, cancel := context.WithTimeout(context.Background(), g.timeout())
			defer cancel()
			var b Banner
			var err error
			if tc.gr != nil {
				b, err = g.grab(ctx, tc.ap, *tc.gr)
			} else {
				b, err = g.Grab(ctx, tc.ap)
			}
			if err != nil {
				t.Fatalf("Grab(%s) error %v", tc.ap, err)
			}
			if b.Service != tc.service {
				t.Errorf("Grab(%s).Service = %q; want %q (text %q)", tc.ap, b.Service, tc.service, b.Text)
			}
			for _, s := range tc.textHas {
				if !strings.Contains(b.Text, s) {
					t.Errorf("Grab(%s).Text = %q; want it to contain %q", tc.ap, b.Text, s)
				}
			}
			if tc.textIsEmpty && b.Text != "" {
				t.Errorf("Grab(%s).Text = %q; want empty", tc.ap, b.Text)
			}
		})
	}
}

func TestGrabBounded(t *testing.T) {
	// A service that talks forever is cut at MaxBytes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		junk := []byte(strings.Repeat("x", 4096))
		for {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	g := &Grabber{MaxBytes: 100, Timeout: 2 * time.Second}
	b, err := g.Grab(context.Background(), netip.MustParseAddrPort(ln.Addr().String()))
	if err != nil || len(b.Text) != 100 {
		t.Errorf("Grab of an endless service: %d bytes, %v; want 100", len(b.Text), err)
	}
}

var identifyCases = []struct {
	name    string
	port    uint16
	got     string
	sent    []byte
	service string
	text    string
}{
	{"mysql", 3306, "J\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00abc", nil, "mysql", "mysql 8.0.36"},
	{"mariadb", 3307, "\x5b\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00rest", nil, "mysql", "mysql 5.5.5-10.11.6-MariaDB-0+deb12u1"},
	{"postgresql no tls", 5432, "N", pgSSLRequest, "postgresql", "postgresql: TLS not offered"},
	{"imap", 143, "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", nil, "imap", "* OK [CAPABILITY IMAP4rev1] Dovecot ready."},
	{"pop3", 110, "+OK Dovecot ready.\r\n", nil, "pop3", "+OK Dovecot ready."},
	{"vnc", 5900, "RFB 003.008\n", nil, "vnc", "RFB 003.008"},
	{"smtp by port", 25, "220 example\r\n", nil, "smtp", "220 example"},
	{"ftp by port", 21, "220 ready\r\n", nil, "ftp", "220 ready"},
	{"unknown", 9999, "hello there\r\nmore", nil, "", "hello there"},
	{"empty", 9999, "", nil, "", ""},
	{"http", 8080, "HTTP/1.1 404 Not Found\r\nserver: x\r\n\r\n", httpHead, "http", "HTTP/1.1 404 Not Found; Server: x"},
	{"http title", 80, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html><head><title>A &lt;b&gt;\n\t c\x01</title>", httpHead, "http", `HTTP/1.0 200 OK; title: A <b> c\x01`},
	{"http title cut", 80, "HTTP/1.0 200 OK\r\n\r\n<title>" + strings.Repeat("é", 100) + "</title>", httpHead, "http", "HTTP/1.0 200 OK; title: " + strings.Repeat("é", 80) + "..."},
	{"http title of letters that lower longer", 80, "HTTP/1.0 200 OK\r\n\r\n<TITLE>İSTANBUL İ</TITLE>", httpHead, "http", "HTTP/1.0 200 OK; title: İSTANBUL İ"},
	{"http unclosed title", 80, "HTTP/1.0 200 OK\r\n\r\n<title>never ends", httpHead, "http", "HTTP/1.0 200 OK"},
	{"redis info", 6379, "$120\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\nos:Linux\r\n", redisInfo, "redis", "redis 7.0.15 standalone"},
	{"redis noauth", 6379, "-NOAUTH Authentication required.\r\n", redisInfo, "redis", "-NOAUTH Authentication required."},
	{"postgresql scram", 5432, "NR\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00", pgSSLRequest, "postgresql", "postgresql: TLS not offered; auth SCRAM-SHA-256"},
	{"postgresql md5", 5432, "NR\x00\x00\x00\x0c\x00\x00\x00\x05salt", pgSSLRequest, "postgresql", "postgresql: TLS not offered; auth MD5 password"},
	{"postgresql error", 5432, "NE\x00\x00\x00\x29SFATAL\x00C28000\x00Mno pg_hba.conf entry\x00\x00", pgSSLRequest, "postgresql", "postgresql: TLS not offered; FATAL 28000: no pg_hba.conf entry"},
	{"not postgresql after N", 5432, "Nope, not here\r\n", pgSSLRequest, "", "Nope, not here"},
}

func TestIdentify(t *testing.T) {
	for _, tc := range identifyCases {
		t.Run(tc.name, func(t *testing.T) {
			b := identify(tc.port, []byte(tc.got), tc.sent, false)
			if b.Service != tc.service || b.Text != tc.text {
				t.Errorf("identify(%d, %q) = %q, %q; want %q, %q", tc.port, tc.got, b.Service, b.Text, tc.service, tc.text)
			}
		})
	}
}

// FuzzIdentify feeds arbitrary answers to the guesser: whatever a service
// sends, identify must not panic and its text must stay printable.
func FuzzIdentify(f *testing.F) {
	for _, tc := range identifyCases {
		f.Add(tc.port, []byte(tc.got))
	}
	f.Fuzz(func(t *testing.T, port uint16, got []byte) {
		for _, sent := range [][]byte{nil, httpHead, redisPing, redisInfo, pgSSLRequest, pgStartup} {
			b := identify(port, got, sent, false)
			for _, r := range b.Text {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("identify(%q).Text = %q holds a control character", got, b.Text)
				}
			}
		}
		plainToTLS(got)
		isTLSRecord(got)
		complete(got, httpHead)
		complete(got, redisInfo)
		complete(got, pgStartup)
	})
}

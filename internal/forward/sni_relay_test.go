package forward

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCert is a self-signed certificate for the names the SNI tests use,
// and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "portolan sni test"},
		DNSNames:     []string{"a.example", "*.example", "*.b.example", "deep.y.b.example", "other.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsBackend is a TLS server on loopback that, after the handshake, says
// its name, the server name it was asked for and (with proxied) the
// client of the PROXY header in front, then echoes. A failed handshake
// fails the test, unless the name starts with "chaos" or "checked"
// (health checks connect and reset).
func tlsBackend(t *testing.T, name string, cert tls.Certificate, proxied bool) string {
	t.Helper()
	report := t.Errorf
	if strings.HasPrefix(name, "chaos") || strings.HasPrefix(name, "checked") {
		report = t.Logf
	}
	return backend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		client := ""
		if proxied {
			h, err := ReadProxyHeader(c)
			if err != nil {
				report("backend %s: %v", name, err)
				return
			}
			client = " from " + h.Src.String()
		}
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := s.Handshake(); err != nil {
			report("backend %s: handshake: %v", name, err)
			return
		}
		fmt.Fprintf(s, "%s %q%s\n", name, s.ConnectionState().ServerName, client)
		io.Copy(s, s)
	})
}

// fragmenting writes one byte at a time, with a pause now and then so
// that the relay sees the ClientHello over many reads.
type fragmenting struct{ net.Conn }

func (c fragmenting) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := c.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond)
		}
	}
	return len(b), nil
}

// tlsThrough connects to addr, writes before (a PROXY header) if given,
// does a TLS handshake for serverName and returns the backend's greeting
// after one echoed round trip.
func tlsThrough(addr, serverName string, pool *x509.CertPool, split bool, before string) (string, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	if before != "" {
		io.WriteString(raw, before)
	}
	c := raw
	if split {
		c = fragmenting{raw}
	}
	tc := tls.Client(c, &tls.Config{ServerName: serverName, RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	greeting, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	if _, err := io.WriteString(tc, "ping"); err != nil {
		return "", err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(tc, b); err != nil || string(b) != "ping" {
		return "", fmt.Errorf("echo = %q, %v", b, err)
	}
	return strings.TrimSpace(greeting), nil
}

// TestSNIRoutesTLSConnections runs real TLS clients through the relay to
// real TLS servers: each lands on the target its server name routes to,
// with the handshake intact (the relay passed every byte of the
// ClientHello on), and its log line names the server name.
func TestSNIRoutesTLSConnections(t *testing.T) {
	cert, pool := testCert(t)
	a := tlsBackend(t, "A", cert, false)
	w := tlsBackend(t, "W", cert, false)
	b := tlsBackend(t, "B", cert, false)
	d := tlsBackend(t, "D", cert, false)
	pp := tlsBackend(t, "P", cert, true)
	lo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s, lb := start(t,
		Rule{Name: "sni", Listen: "127.0.0.1:0", Targets: []string{d}, SNI: []SNIRoute{
			{Pattern: "a.example", Targets: []string{a}},
			{Pattern: "*.example", Targets: []string{w}},
			{Pattern: "*.b.example", Targets: []string{b}},
		}},
		// PROXY headers both ways: the one read comes before the hello,
		// the one sent goes before it.
		Rule{Name: "sni-proxied", Listen: "127.0.0.1:0", TrustedProxies: lo, ProxyProtocol: 2, SNI: []SNIRoute{
			{Pattern: "a.example", Targets: []string{pp}},
		}},
		// A PROXY header sent, none read (on Linux, the event loop's way).
		Rule{Name: "sni-send-proxy", Listen: "127.0.0.1:0", ProxyProtocol: 1, SNI: []SNIRoute{
			{Pattern: "a.example", Targets: []string{pp}},
		}},
	)
	addr := s.Addr("sni").String()
	for _, tc := range []struct {
		name, serverName, want string
		split                  bool
	}{
		{"exact", "a.example", `A "a.example"`, false},
		{"exact, any case", "A.Example", `A "A.Example"`, false},
		{"wildcard", "x.example", `W "x.example"`, false},
		{"longer wildcard, two labels deep", "deep.y.b.example", `B "deep.y.b.example"`, false},
		{"no match: default", "other.test", `D "other.test"`, false},
		{"no server name: default", "127.0.0.1", `D ""`, false},
		{"hello in 1-byte writes", "a.example", `A "a.example"`, true},
	} {
		got, err := tlsThrough(addr, tc.serverName, pool, tc.split, "")
		if err != nil || got != tc.want {
			t.Errorf("%s: TLS to %q = %q, %v; want %q", tc.name, tc.serverName, got, err, tc.want)
		}
	}
	got, err := tlsThrough(s.Addr("sni-proxied").String(), "a.example", pool, false, "PROXY TCP4 198.18.0.7 198.18.0.1 40000 443\r\n")
	if want := `P "a.example" from 198.18.0.7:40000`; err != nil || got != want {
		t.Errorf("through a PROXY header: %q, %v; want %q", got, err, want)
	}

	got, err = tlsThrough(s.Addr("sni-send-proxy").String(), "a.example", pool, true, "")
	if want := `P "a.example" from 127.0.0.1:`; err != nil || !strings.HasPrefix(got, want) {
		t.Errorf("with a PROXY header sent: %q, %v; want %q...", got, err, want)
	}

	waitFor(t, "9 log lines", func() bool { return len(lb.lines()) == 9 })
	names := map[string]int{}
	for _, l := range lb.lines() {
		if l["reason"] != "eof" {
			t.Errorf("line %v: want reason eof", l)
		}
		sni, _ := l["sni"].(string)
		names[sni+" -> "+l["target"].(string)]++
	}
	for k, n := range map[string]int{"a.example -> " + a: 3, "x.example -> " + w: 1, "deep.y.b.example -> " + b: 1, "other.test -> " + d: 1, " -> " + d: 1, "a.example -> " + pp: 2} {
		if names[k] != n {
			t.Errorf("log lines %q: %d; want %d (all: %v)", k, names[k], n, names)
		}
	}
	// The routes' targets have their own series, with their state.
	text := metricsText(t, s)
	for _, tc := range []struct{ series, want string }{
		{`portolan_forward_target_up{proto="tcp",rule="sni",target="` + a + `"}`, "1"},
		{`portolan_forward_target_connections_total{proto="tcp",rule="sni",target="` + a + `"}`, "3"},
		{`portolan_forward_target_connections_total{proto="tcp",rule="sni",target="` + w + `"}`, "1"},
		{`portolan_forward_target_connections_total{proto="tcp",rule="sni",target="` + d + `"}`, "2"},
	} {
		if v := metricValue(t, text, tc.series); v != tc.want {
			t.Errorf("%s = %s; want %s", tc.series, v, tc.want)
		}
	}
}

// TestSNIRejects: a rule without a default resets what it cannot route;
// a silent client is reset after the connect timeout; garbage and cut
// hellos are reset. Each has its reason in the log and is counted.
func TestSNIRejects(t *testing.T) {
	cert, pool := testCert(t)
	a := tlsBackend(t, "A", cert, false)
	s, lb := start(t, Rule{Name: "strict", Listen: "127.0.0.1:0", ConnectTimeout: 300 * time.Millisecond,
		SNI: []SNIRoute{{Pattern: "a.example", Targets: []string{a}}}})
	addr := s.Addr("strict").String()

	if got, err := tlsThrough(addr, "a.example", pool, false, ""); err != nil || got != `A "a.example"` {
		t.Fatalf("routed: %q, %v", got, err)
	}
	for _, name := range []string{"other.test", "127.0.0.1"} {
		if _, err := tlsThrough(addr, name, pool, false, ""); !isReset(err) {
			t.Errorf("TLS to %q without a route: %v; want a reset", name, err)
		}
	}
	silent := dial(t, s, "strict")
	expectResetOn(t, silent, "silent client")

	garbage := dial(t, s, "strict")
	io.WriteString(garbage, "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
	expectResetOn(t, garbage, "plain HTTP")

	hello := clientHello(t, &tls.Config{ServerName: "a.example"})
	cut := dial(t, s, "strict")
	cut.Write(hello[:100])
	cut.CloseWrite()
	expectResetOn(t, cut, "hello cut short")

	partial := dial(t, s, "strict")
	partial.Write(hello[:100])
	expectResetOn(t, partial, "hello never finished")

	waitFor(t, "7 log lines", func() bool { return len(lb.lines()) == 7 })
	var reasons []string
	for _, l := range lb.lines() {
		sni, _ := l["sni"].(string)
		reasons = append(reasons, fmt.Sprintf("%s [%s]", l["reason"], sni))
	}
	for _, want := range []string{
		"eof [a.example]",
		"sni: no route for other.test [other.test]",
		"sni: no route for a ClientHello without a server name []",
		"sni: no complete ClientHello within 300ms (0 bytes) []",
		`sni: tls client hello: offset 0: record type 0x47 ('G'), want a TLS handshake (0x16); looks like plain HTTP []`,
		"sni: client closed after 100 bytes of a ClientHello: EOF []",
		"sni: no complete ClientHello within 300ms (100 bytes) []",
	} {
		found := false
		for _, r := range reasons {
			found = found || r == want
		}
		if !found {
			t.Errorf("no log line %q in:\n%s", want, strings.Join(reasons, "\n"))
		}
	}
	if v := metricValue(t, metricsText(t, s), `portolan_forward_rejected_total{proto="tcp",reason="sni",rule="strict"}`); v != "6" {
		t.Errorf("rejected for sni: %s; want 6", v)
	}
	// It still routes after all that.
	if got, err := tlsThrough(addr, "a.example", pool, true, ""); err != nil || got != `A "a.example"` {
		t.Fatalf("routed after rejects: %q, %v", got, err)
	}
}

// TestSNIChaosKeepsRouting throws hostile clients at SNI rules at once
// (the chaos test's, and hellos that are cut, oversized or name nothing
// routable), then checks that TLS connections are still routed.
func TestSNIChaosKeepsRouting(t *testing.T) {
	n := 20 // rounds of every client kind per rule
	if testing.Short() {
		n = 5
	}
	cert, pool := testCert(t)
	a := tlsBackend(t, "chaos A", cert, false)
	d := tlsBackend(t, "chaos D", cert, false)
	lo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	routes := []SNIRoute{{Pattern: "a.example", Targets: []string{a}}}
	rules := []Rule{
		{Name: "sni", Listen: "127.0.0.1:0", Targets: []string{d}, SNI: routes, ConnectTimeout: time.Second},
		{Name: "sni-strict", Listen: "127.0.0.1:0", SNI: routes, ConnectTimeout: time.Second},
		{Name: "sni-accept-proxy", Listen: "127.0.0.1:0", Targets: []string{d}, SNI: routes, TrustedProxies: lo, ConnectTimeout: time.Second},
	}
	s, _ := start(t, rules...)
	hello := clientHello(t, &tls.Config{ServerName: "a.example"})
	huge := reframe(makeHello(sniExt("a.example"), ext(21, make([]byte, 4000))), 1)
	kinds := []func(addr string){
		func(addr string) { // a hello cut short, then a reset
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return
			}
			c.Write(hello[:len(hello)/2])
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		},
		func(addr string) { // a hello in tiny records, over the 16 KiB bound
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			c.Write(huge)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			io.Copy(io.Discard, c)
		},
		func(addr string) { tlsThrough(addr, "other.test", pool, false, "") }, // the default route, or none
	}
	for _, cc := range chaosClients {
		if cc.tcp != nil {
			kinds = append(kinds, cc.tcp)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range rules {
		addr := s.Addr(r.Name).String()
		for _, f := range kinds {
			wg.Go(func() {
				for i := 0; i < n && ctx.Err() == nil; i++ {
					f(addr)
				}
			})
		}
	}
	wg.Wait()

	for _, name := range []string{"sni", "sni-strict"} {
		if got, err := tlsThrough(s.Addr(name).String(), "a.example", pool, false, ""); err != nil || got != `chaos A "a.example"` {
			t.Errorf("%s after the storm: %q, %v", name, got, err)
		}
	}
	if got, err := tlsThrough(s.Addr("sni-accept-proxy").String(), "a.example", pool, false, "PROXY TCP6 fd00::9 fd00::1 4000 443\r\n"); err != nil || got != `chaos A "a.example"` {
		t.Errorf("sni-accept-proxy after the storm: %q, %v", got, err)
	}
}

// TestSNIPendingHellosBounded: clients that connect and send nothing take
// at most maxPendingHeaders hand-offs; the ones beyond get a reset at
// once, and once they leave, TLS is routed again.
func TestSNIPendingHellosBounded(t *testing.T) {
	cert, pool := testCert(t)
	a := tlsBackend(t, "A", cert, false)
	s, lb := start(t, Rule{Name: "sni", Listen: "127.0.0.1:0", ConnectTimeout: time.Minute,
		SNI: []SNIRoute{{Pattern: "a.example", Targets: []string{a}}}})
	addr := s.Addr("sni").String()
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	limited := func() int {
		k := 0
		for _, l := range lb.lines() {
			if l["reason"] == "limit: client hellos pending" {
				k++
			}
		}
		return k
	}
	for i := 0; i < maxPendingHeaders+50; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		switch {
		case err == nil:
			silent = append(silent, c)
		case !isReset(err): // a reset can beat the end of connect(2)
			t.Fatalf("silent client %d: %v", i, err)
		}
	}
	waitFor(t, "a client refused over the bound", func() bool { return limited() > 0 })
	for _, c := range silent {
		c.Close()
	}
	silent = nil
	waitFor(t, "hand-offs to end", func() bool { return s.handoffs.Load() == 0 })
	if got, err := tlsThrough(addr, "a.example", pool, false, ""); err != nil || got != `A "a.example"` {
		t.Fatalf("routed after the silent clients left: %q, %v", got, err)
	}
	if v := metricValue(t, metricsText(t, s), `portolan_forward_rejected_total{proto="tcp",reason="limit",rule="sni"}`); v == "0" || limited() > 50 {
		t.Errorf("limit: %d lines (want 1 to 50), counted %s", limited(), v)
	}
}

// TestSNIShutdownCutsHelloRead: Shutdown ends a connection still waiting
// for its ClientHello; that is a shutdown, not a bad client.
func TestSNIShutdownCutsHelloRead(t *testing.T) {
	s, lb := start(t, Rule{Name: "sni", Listen: "127.0.0.1:0", ConnectTimeout: time.Minute,
		SNI: []SNIRoute{{Pattern: "a.example", Targets: []string{closedPort(t)}}}})
	c := dial(t, s, "sni")
	// Waiting in the Linux event loop (counted in handoffs), or on the
	// goroutine relay elsewhere (tracked in conns).
	waitFor(t, "the hello read to start", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1 || s.handoffs.Load() == 1
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("read after shutdown = %v; want EOF or a reset", err)
	}
	if l := lb.lines(); len(l) != 1 || l[0]["reason"] != "shutdown" {
		t.Errorf("log lines %v; want one with reason shutdown", l)
	}
	if v := metricValue(t, metricsText(t, s), `portolan_forward_rejected_total{proto="tcp",reason="sni",rule="sni"}`); v != "0" {
		t.Errorf("rejected for sni after a shutdown: %s; want 0", v)
	}
}

// TestSNIBytesCounted: the ClientHello read to route a connection counts
// in bytes_to_target like every other byte the client sent, whichever
// way the connection was read (a trusted peer's PROXY header is not).
func TestSNIBytesCounted(t *testing.T) {
	hello := clientHello(t, &tls.Config{ServerName: "a.example"})
	back := backend(t, echo)
	lo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	routes := []SNIRoute{{Pattern: "a.example", Targets: []string{back}}}
	s, lb := start(t,
		Rule{Name: "sni", Listen: "127.0.0.1:0", SNI: routes},
		Rule{Name: "sni-accept-proxy", Listen: "127.0.0.1:0", SNI: routes, TrustedProxies: lo},
	)
	for _, tc := range []struct{ rule, before string }{
		{"sni", ""},
		{"sni-accept-proxy", "PROXY TCP4 198.18.0.7 198.18.0.1 40000 443\r\n"},
	} {
		c := dial(t, s, tc.rule)
		io.WriteString(c, tc.before)
		c.Write(hello)
		got := make([]byte, len(hello))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(hello) {
			t.Fatalf("%s: echo of the hello: %v", tc.rule, err)
		}
		c.Close()
	}
	waitFor(t, "2 log lines", func() bool { return len(lb.lines()) == 2 })
	for _, l := range lb.lines() {
		if up, down := l["bytes_to_target"].(float64), l["bytes_to_client"].(float64); int(up) != len(hello) || int(down) != len(hello) {
			t.Errorf("rule %s: bytes to target %v, to client %v; want %d each", l["rule"], up, down, len(hello))
		}
	}
}

// TestSNIRouteHealthChecks: a route's targets are health-checked like the
// rule's own; one found down is out of the rotation and its series says so.
func TestSNIRouteHealthChecks(t *testing.T) {
	cert, pool := testCert(t)
	a := tlsBackend(t, "checked A", cert, false)
	dead := closedPort(t)
	s, _ := start(t, Rule{Name: "sni", Listen: "127.0.0.1:0", HealthInterval: 50 * time.Millisecond,
		SNI: []SNIRoute{{Pattern: "a.example", Targets: []string{dead, a}}}})
	waitFor(t, "the dead target marked down", func() bool {
		return strings.Contains(metricsText(t, s), `portolan_forward_target_up{proto="tcp",rule="sni",target="`+dead+`"} 0`)
	})
	for i := range 4 {
		if got, err := tlsThrough(s.Addr("sni").String(), "a.example", pool, false, ""); err != nil || got != `checked A "a.example"` {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}
	if v := metricValue(t, metricsText(t, s), `portolan_forward_target_dial_errors_total{proto="tcp",rule="sni",target="`+dead+`"}`); v != "0" {
		t.Errorf("dials to the target marked down: %s errors; want none tried", v)
	}
}

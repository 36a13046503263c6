package scan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/testenv"
)

// grabWith grabs the banner at ap with greeting gr and returns it with the
// version parsed from it, as every output format shows it.
func grabWith(t *testing.T, ap netip.AddrPort, gr greeting) (Banner, Version) {
	t.Helper()
	g := &Grabber{Wait: 100 * time.Millisecond, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout())
	defer cancel()
	b, err := g.grab(ctx, ap, gr)
	if err != nil {
		t.Fatalf("grab %s: %v", ap, err)
	}
	return b, ParseVersion(b.Service, b.Text)
}

// TestTLSCertificate: a TLS service signed by a CA reports its subject,
// its issuer, its expiry and the ALPN protocol it chose, which names the
// service.
func TestTLSCertificate(t *testing.T) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	notAfter := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portolan test CA", Organization: []string{"Portolan"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mq.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: []string{"mq.example.test"}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}},
		NextProtos: []string{"mqtt"}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, testenv.Drain) // reading makes the handshake
	b, v := grabWith(t, netip.MustParseAddrPort(ln.Addr().String()), greeting{tls: true})
	if b.Service != "secure-mqtt" {
		t.Errorf("service %q; want secure-mqtt (from ALPN)", b.Service)
	}
	for _, want := range []string{"TLS 1.3", "alpn=mqtt", "subject=CN=mq.example.test", "issuer=CN=portolan test CA,O=Portolan", "expires=2031-01-02"} {
		if !strings.Contains(b.Text, want) {
			t.Errorf("banner %q; want it to contain %q", b.Text, want)
		}
		if !strings.Contains(v.Extra, want) {
			t.Errorf("version extra %q; want it to contain %q", v.Extra, want)
		}
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something accepts on 127.0.0.1:port.
func waitListening(t *testing.T, port int, what string) netip.AddrPort {
	t.Helper()
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", ap.String(), time.Second)
		if err == nil {
			c.Close()
			return ap
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: not listening after 60s: %v", what, ap, err)
		}
	}
}

// startProcess starts cmd and stops it when the test ends.
func startProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// TestRedisVersion asks a real redis-server: INFO server gives its version;
// with a password set, the refusal still says redis.
func TestRedisVersion(t *testing.T) {
	bin := testenv.RequireCommand(t, "redis-server")
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("redis-server --version: %q", out)
	}
	want := string(m[1])
	for _, tc := range []struct {
		name    string
		args    []string
		version string
	}{
		{"open", nil, want},
		{"password", []string{"--requirepass", "s3cret"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", t.TempDir(), "--daemonize", "no", "--logfile", ""}, tc.args...)
			startProcess(t, exec.Command(bin, args...))
			ap := waitListening(t, port, "redis-server")
			b, v := grabWith(t, ap, greetings[6379])
			if b.Service != "redis" {
				t.Errorf("service %q (banner %q); want redis", b.Service, b.Text)
			}
			if tc.version != "" && (v.Product != "Redis" || v.Version != tc.version) {
				t.Errorf("version %+v (banner %q); want Redis %s", v, b.Text, tc.version)
			}
			if tc.version == "" && (!strings.Contains(b.Text, "NOAUTH") || v.Version != "") {
				t.Errorf("banner %q, version %+v; want NOAUTH and no version", b.Text, v)
			}
		})
	}
}

// initdb finds PostgreSQL's initdb: on the PATH, or where Debian puts it.
func initdb(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		return p
	}
	if ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(ms) > 0 {
		return ms[len(ms)-1]
	}
	return testenv.RequireCommand(t, "initdb") // skips, or fails in CI
}

// TestPostgreSQLIdentified starts a real PostgreSQL server (as the
// postgres user: it refuses to run as root) and reads what it answers a
// startup message: with trust authentication, that the role portolan
// does not exist; with SCRAM, the mechanism it asks for.
func TestPostgreSQLIdentified(t *testing.T) {
	bin := filepath.Dir(initdb(t))
	testenv.RequireCommand(t, "runuser")
	for _, tc := range []struct {
		auth string
		want string
	}{
		{"trust", `postgresql: TLS not offered; auth ok; FATAL 28000: role "portolan" does not exist`},
		{"scram-sha-256", "postgresql: TLS not offered; auth SCRAM-SHA-256"},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "portolan-pg-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := exec.Command("chown", "postgres", dir).Run(); err != nil {
				t.Skipf("no postgres user to run the server as: %v", err)
			}
			as := func(args ...string) *exec.Cmd {
				return exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
			}
			data := filepath.Join(dir, "data")
			if out, err := as(filepath.Join(bin, "initdb"), "-D", data, "--auth="+tc.auth, "--username=postgres", "--pwfile=/dev/null", "--no-sync").CombinedOutput(); err != nil {
				// SCRAM needs a password for the superuser.
				if out2, err2 := as("sh", "-c", "echo pw > "+dir+"/pw && "+filepath.Join(bin, "initdb")+" -D "+data+" --auth="+tc.auth+" --username=postgres --pwfile="+dir+"/pw --no-sync").CombinedOutput(); err2 != nil {
					t.Fatalf("initdb: %v: %s\n%s", err2, out, out2)
				}
			}
			port := freePort(t)
			startProcess(t, as(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "ssl=off"))
			ap := waitListening(t, port, "postgres")
			b, v := grabWith(t, ap, greetings[5432])
			for deadline := time.Now().Add(60 * time.Second); strings.Contains(b.Text, "57P03") && time.Now().Before(deadline); {
				time.Sleep(200 * time.Millisecond) // "the database system is starting up"
				b, v = grabWith(t, ap, greetings[5432])
			}
			if b.Service != "postgresql" || b.Text != tc.want {
				t.Errorf("service %q banner %q; want postgresql, %q", b.Service, b.Text, tc.want)
			}
			if v.Product != "PostgreSQL" {
				t.Errorf("version %+v; want product PostgreSQL", v)
			}
		})
	}
}

// Command load is the bounded loopback client and echo backend of the
// forward benchmark.
//
//	load echo -tcp 127.0.0.1:5301 -udp 127.0.0.1:5301   # backend, runs until killed
//	load conns -addr 127.0.0.1:15301 -n 5000 -c 1        # connect, 64 B echo, close
//	load udprr -addr 127.0.0.1:15301 -n 20000            # UDP request/response, one socket
//	load turns -addr 127.0.0.1:16301,127.0.0.1:16303 -n 3000 [-of udprr]
//	load tlsecho -tcp 127.0.0.1:5401,127.0.0.1:5402     # TLS echo backends (self-signed)
//	load turns -of tls -sni a.example,x.example,other.test -addr ...  # TLS connect, 64 B echo, close
//
// turns does conns (or, with -of udprr, udprr) against several addresses in
// turn, one operation each, and times each address's operations alone:
// the relays behind them are measured under the same conditions, down to
// the millisecond, on a machine whose speed drifts by tens of percent
// from one second to the next. -n is per address; each gets a line.
//
// Every load loop stops at -n operations or -max seconds, whichever comes
// first, and only loopback addresses are accepted.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: load echo|conns|udprr [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	tcpAddr := fs.String("tcp", "", "echo: TCP listen address")
	udpAddr := fs.String("udp", "", "echo: UDP listen address")
	addr := fs.String("addr", "", "target address (loopback only)")
	n := fs.Int("n", 5000, "operations")
	c := fs.Int("c", 1, "parallel workers")
	max := fs.Duration("max", 60*time.Second, "time limit")
	what := fs.String("of", "conns", "turns: conns, udprr or tls")
	sni := fs.String("sni", "", "turns -of tls: server names, comma-separated, used in turn")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "echo":
		echo(*tcpAddr, *udpAddr)
	case "conns":
		loopbackOnly(*addr)
		run("conns", *n, *c, *max, func() func() error { return func() error { return conn(*addr) } })
	case "udprr":
		loopbackOnly(*addr)
		udprr(*addr, *n, *c, *max)
	case "tlsecho":
		tlsEcho(strings.Split(*tcpAddr, ","))
	case "turns":
		if *what != "conns" && *what != "udprr" && *what != "tls" {
			log.Fatalf("-of %q: conns, udprr or tls", *what)
		}
		addrs := strings.Split(*addr, ",")
		for _, a := range addrs {
			loopbackOnly(a)
		}
		if *what == "tls" {
			tlsNames = strings.Split(*sni, ",")
		}
		turns(addrs, *what == "udprr", *n, *max)
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func loopbackOnly(a string) {
	ap, err := netip.ParseAddrPort(a)
	if err != nil || !ap.Addr().IsLoopback() {
		log.Fatalf("-addr %q: loopback host:port only", a)
	}
}

func echo(tcpAddr, udpAddr string) {
	if tcpAddr != "" {
		ln, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			log.Fatal(err)
		}
		go serveEcho(ln)
	}
	if udpAddr != "" {
		pc, err := net.ListenPacket("udp", udpAddr)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err == nil {
					pc.WriteTo(buf[:n], from)
				}
			}
		}()
	}
	select {}
}

var payload = bytes.Repeat([]byte("x"), 64)

func conn(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(payload); err != nil {
		return err
	}
	buf := make([]byte, len(payload))
	_, err = io.ReadFull(c, buf)
	return err
}

// run does n operations over c workers within max and prints the rate;
// mk makes each worker's operation.
func run(name string, n, c int, max time.Duration, mk func() func() error) {
	var done, failed atomic.Int64
	var next atomic.Int64
	end := time.Now().Add(max)
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		op := mk()
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && time.Now().Before(end) {
				if err := op(); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("%s ok=%d failed=%d seconds=%.3f rate=%.0f/s\n", name, done.Load(), failed.Load(), el.Seconds(), float64(done.Load())/el.Seconds())
}

// turns runs n operations per address, taking the addresses in turn.
func turns(addrs []string, udp bool, n int, max time.Duration) {
	type target struct {
		op              func() error
		busy            time.Duration
		ok, failed, bad int
		lat             []time.Duration
	}
	ts := make([]*target, len(addrs))
	for i, a := range addrs {
		t := &target{}
		if udp {
			t.op = udpOp(a, i, &t.bad)
		} else if tlsNames != nil {
			t.op = tlsOp(a)
		} else {
			t.op = func() error { return conn(a) }
		}
		ts[i] = t
	}
	// Each round takes the addresses in a new random order: whoever goes
	// after a relay meets the tail of its work (closing sockets), so a
	// fixed order would favour some.
	end := time.Now().Add(max)
	order := rand.Perm(len(ts))
	for i := 0; i < n*len(ts) && time.Now().Before(end); i++ {
		if i%len(ts) == 0 {
			rand.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		}
		t := ts[order[i%len(ts)]]
		t0 := time.Now()
		err := t.op()
		d := time.Since(t0)
		t.busy += d
		t.lat = append(t.lat, d)
		if err != nil {
			t.failed++
		} else {
			t.ok++
		}
	}
	for i, t := range ts {
		s := t.busy.Seconds()
		slices.Sort(t.lat)
		pct := func(p int) float64 {
			if len(t.lat) == 0 {
				return 0
			}
			return float64(t.lat[(len(t.lat)-1)*p/100].Microseconds())
		}
		lat := fmt.Sprintf("p50=%.0fus p90=%.0fus p99=%.0fus", pct(50), pct(90), pct(99))
		if udp {
			fmt.Printf("udprr addr=%s ok=%d failed=%d seconds=%.3f rate=%.0f/s wrong_replies=%d %s\n", addrs[i], t.ok, t.failed, s, float64(t.ok)/s, t.bad, lat)
		} else {
			fmt.Printf("conns addr=%s ok=%d failed=%d seconds=%.3f rate=%.0f/s %s\n", addrs[i], t.ok, t.failed, s, float64(t.ok)/s, lat)
		}
	}
}

// udpOp returns a request/response on a socket of its own, counting in
// wrong the replies that are not the request.
func udpOp(addr string, me int, wrong *int) func() error {
	u, err := net.Dial("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	var seq int
	buf := make([]byte, 256)
	return func() error {
		seq++
		q := fmt.Appendf(nil, "w%d-%d", me, seq)
		u.SetDeadline(time.Now().Add(time.Second))
		if _, err := u.Write(q); err != nil {
			return err
		}
		m, err := u.Read(buf)
		if err != nil {
			return err
		}
		if !bytes.Equal(buf[:m], q) {
			*wrong++
			return fmt.Errorf("wrong reply")
		}
		return nil
	}
}

// udprr: each worker has its own socket (its own session) and checks that
// every reply is the one it asked for.
func udprr(addr string, n, c int, max time.Duration) {
	var mu sync.Mutex
	var wrong []*int
	var id atomic.Int64
	run("udprr", n, c, max, func() func() error {
		w := new(int)
		mu.Lock()
		wrong = append(wrong, w)
		mu.Unlock()
		return udpOp(addr, int(id.Add(1)), w)
	})
	total := 0
	for _, w := range wrong {
		total += *w
	}
	fmt.Printf("udprr wrong_replies=%d\n", total)
}

// tlsNames are the server names tls operations ask for, in turn.
var tlsNames []string

// tlsOp returns a TLS connection with a full handshake (no resumption),
// a 64 B echo and a close, asking for each of tlsNames in turn.
func tlsOp(addr string) func() error {
	i := 0
	return func() error {
		name := tlsNames[i%len(tlsNames)]
		i++
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		// The backends' certificate is made at their start: nothing to
		// verify it against, and verifying is not what is measured.
		tc := tls.Client(c, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if _, err := tc.Write(payload); err != nil {
			return err
		}
		buf := make([]byte, len(payload))
		_, err = io.ReadFull(tc, buf)
		return err
	}
}

// tlsEcho serves TLS echo on each address with a self-signed certificate
// made now.
func tlsEcho(addrs []string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		DNSNames: []string{"*.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	for _, a := range addrs {
		loopbackOnly(a)
		ln, err := tls.Listen("tcp", a, cfg)
		if err != nil {
			log.Fatal(err)
		}
		go serveEcho(ln)
	}
	select {}
}

// serveEcho echoes each connection ln accepts until the peer closes.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

//go:build linux

// knock-bench times, in namespace pairs of its own, how long after the last
// knock (or the SPA datagram) the protected port accepts its first
// connection, for portolan knockd (SPA and a classic sequence), knockd and
// fwknopd, their rounds interleaved in the same run. Run it with run.sh.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/knock"
	"portolan/internal/netlab"
	"portolan/internal/portspec"
)

const guardedPort = 2222

// daemonLatency is what portolan knockd logged as each open's latency, by
// capture and "via" ("nflog spa", "packet sequence"...).
var (
	daemonMu      sync.Mutex
	daemonLatency = map[string][]time.Duration{}
)

var seq = []knock.DoorPort{{Proto: portspec.TCP, Port: 7000}, {Proto: portspec.UDP, Port: 8000}, {Proto: portspec.TCP, Port: 9000}}

// pair is one namespace pair: the daemon and the listener in srv, the
// client in cli.
type pair struct {
	srv, cli *netlab.Host
	link     *netlab.Link
	dir      string
	reset    []string // the nft/iptables command that closes the door again
}

// tool is one contender: setup starts its daemon in a pair, send knocks
// (returning the time the last packet left), close shuts the door again.
type tool struct {
	name  string
	pair  *pair
	send  func(p *pair) (time.Time, error)
	times []time.Duration
	fails int
}

func main() {
	rounds := flag.Int("rounds", 50, "rounds per tool")
	portolan := flag.String("portolan", "portolan", "the portolan binary")
	only := flag.String("only", "", "comma-separated tool names to run (default all)")
	flag.Parse()
	if err := run(*rounds, *portolan, *only); err != nil {
		fmt.Fprintln(os.Stderr, "knock-bench:", err)
		os.Exit(1)
	}
}

func run(rounds int, portolanBin, only string) error {
	lab, err := netlab.New()
	if err != nil {
		return err
	}
	defer lab.Close()
	tmp, err := os.MkdirTemp("", "knock-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	newPair := func(name string) (*pair, error) {
		srv, err := lab.AddHost(name + "s")
		if err != nil {
			return nil, err
		}
		cli, err := lab.AddHost(name + "c")
		if err != nil {
			return nil, err
		}
		lk, err := lab.Link(srv, cli)
		if err != nil {
			return nil, err
		}
		ln, err := srv.Listen("tcp4", fmt.Sprintf(":%d", guardedPort))
		if err != nil {
			return nil, err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		dir := filepath.Join(tmp, name)
		return &pair{srv: srv, cli: cli, link: lk, dir: dir}, os.MkdirAll(dir, 0o700)
	}

	var tools []*tool
	want := func(n string) bool { return only == "" || slices.Contains(strings.Split(only, ","), n) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// portolan on NFLOG, and on its AF_PACKET fallback (--capture packet).
	for _, v := range []struct{ suffix, pair, capture string }{{"", "pl", "nflog"}, {"-afpacket", "pa", "packet"}} {
		if !want("portolan-spa"+v.suffix) && !want("portolan-seq"+v.suffix) {
			continue
		}
		p, err := newPair(v.pair)
		if err != nil {
			return err
		}
		key, err := startPortolan(ctx, p, portolanBin, v.capture)
		if err != nil {
			return err
		}
		if want("portolan-spa" + v.suffix) {
			tools = append(tools, &tool{name: "portolan-spa" + v.suffix, pair: p, send: func(p *pair) (time.Time, error) {
				var t0 time.Time
				err := p.cli.Do(func() error {
					_, err := (&knock.SPA{Key: key}).Send(ctx, netip.AddrPortFrom(p.link.A4, knock.DefaultSPAPort), netip.Addr{},
						[]knock.DoorPort{{Proto: portspec.TCP, Port: guardedPort}}, 0)
					t0 = time.Now()
					return err
				})
				return t0, err
			}})
		}
		if want("portolan-seq" + v.suffix) {
			tools = append(tools, &tool{name: "portolan-seq" + v.suffix, pair: p, send: sendSequence})
		}
	}
	if want("knockd") {
		p, err := newPair("kd")
		if err != nil {
			return err
		}
		if err := startKnockd(ctx, p); err != nil {
			return err
		}
		tools = append(tools, &tool{name: "knockd", pair: p, send: sendSequence})
	}
	if want("fwknopd") {
		p, err := newPair("fw")
		if err != nil {
			return err
		}
		if err := startFwknopd(ctx, p); err != nil {
			return err
		}
		tools = append(tools, &tool{name: "fwknopd", pair: p, send: sendFwknop})
	}

	for r := 0; r < rounds; r++ {
		for _, t := range tools {
			if err := closeDoor(ctx, t.pair); err != nil {
				return fmt.Errorf("%s: close the door: %w", t.name, err)
			}
			time.Sleep(20 * time.Millisecond) // let the closing settle, and the daemons idle
			t0, err := t.send(t.pair)
			if err != nil {
				return fmt.Errorf("%s: send: %w", t.name, err)
			}
			d, err := firstAccept(t.pair, t0, 3*time.Second)
			if err != nil {
				t.fails++
				continue
			}
			t.times = append(t.times, d)
		}
	}
	fmt.Printf("| tool | rounds | opened | p50 | p90 | p99 | min | max |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	row := func(name string, times []time.Duration) {
		slices.Sort(times)
		q := func(f float64) string {
			if len(times) == 0 {
				return "-"
			}
			return ms(times[int(f*float64(len(times)-1))])
		}
		fmt.Printf("| %s | %d | %d | %s | %s | %s | %s | %s |\n", name, rounds, len(times), q(0.5), q(0.9), q(0.99), q(0), q(1))
	}
	for _, t := range tools {
		row(t.name, t.times)
	}
	time.Sleep(100 * time.Millisecond) // the last log lines
	daemonMu.Lock()
	defer daemonMu.Unlock()
	for _, capture := range []string{"nflog", "packet"} {
		for _, via := range []string{"spa", "sequence"} {
			if ds := daemonLatency[capture+" "+via]; len(ds) > 0 {
				row("portolan knockd's own log, "+via+" by "+capture+" (kernel receipt to door open)", ds)
			}
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// sendSequence knocks 7000, 8000/udp, 9000 from cli.
func sendSequence(p *pair) (time.Time, error) {
	var t0 time.Time
	err := p.cli.Do(func() error {
		err := knock.Knock(context.Background(), p.link.A4, seq, 2*time.Millisecond)
		t0 = time.Now()
		return err
	})
	return t0, err
}

// closeDoor empties whatever holds the door open.
func closeDoor(ctx context.Context, p *pair) error {
	out, err := p.srv.Command(ctx, p.reset[0], p.reset[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(p.reset, " "), err, out)
	}
	return nil
}

// firstAccept starts a non-blocking connect from cli to the guarded port
// every interval (100 µs for the first 20 ms, then 0.5 ms, then 2 ms) and
// returns when the first one completes, measured from t0. Connects the
// door drops stay unanswered; closing them sends nothing.
func firstAccept(p *pair, t0 time.Time, limit time.Duration) (time.Duration, error) {
	var got time.Duration
	err := p.cli.Do(func() error {
		var fds []unix.PollFd
		defer func() {
			for _, f := range fds {
				unix.Close(int(f.Fd))
			}
		}()
		sa := &unix.SockaddrInet4{Port: guardedPort, Addr: p.link.A4.As4()}
		next := time.Now()
		for {
			now := time.Now()
			since := now.Sub(t0)
			if since > limit {
				return fmt.Errorf("not open after %v", limit)
			}
			if !now.Before(next) {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
					unix.Close(fd)
					return err
				}
				fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT})
				interval := 100 * time.Microsecond
				switch {
				case since > 200*time.Millisecond:
					interval = 2 * time.Millisecond
				case since > 20*time.Millisecond:
					interval = 500 * time.Microsecond
				}
				next = now.Add(interval)
			}
			ts := unix.NsecToTimespec(max(int64(time.Until(next)), 0))
			n, err := unix.Ppoll(fds, &ts, nil)
			if err != nil && err != unix.EINTR {
				return err
			}
			if n <= 0 {
				continue
			}
			for i := range fds {
				if fds[i].Revents == 0 {
					continue
				}
				soerr, _ := unix.GetsockoptInt(int(fds[i].Fd), unix.SOL_SOCKET, unix.SO_ERROR)
				if soerr == 0 && fds[i].Revents&unix.POLLOUT != 0 {
					got = time.Since(t0)
					return nil
				}
				return fmt.Errorf("connect: %v", unix.Errno(soerr))
			}
		}
	})
	return got, err
}

// startPortolan runs portolan knockd in srv with a door from flags and an
// SPA key, and returns the client key.
func startPortolan(ctx context.Context, p *pair, bin, capture string) (*knock.ClientKey, error) {
	keyPath := filepath.Join(p.dir, "client.key")
	if err := knock.WriteKeyPair(keyPath, knock.Ed25519, "bench"); err != nil {
		return nil, err
	}
	text, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := knock.ParseClientKey(keyPath, text)
	if err != nil {
		return nil, err
	}
	cmd := p.srv.Command(ctx, bin, "knockd", "--protect", fmt.Sprintf("%d/tcp", guardedPort), "--sequence", knock.FormatSequence(seq),
		"--authorized-keys", keyPath+".pub", "--open-for", "30s", "--db", filepath.Join(p.dir, "p.db"), "--log-format", "json", "--capture", capture)
	// The daemon's own view: from the kernel's receipt of the last
	// packet to the door open, per "door opened" line.
	err = startAndWatch(cmd, `"msg":"door"`, func(line string) {
		var l struct {
			Msg, Via, Latency string
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "door opened" {
			return
		}
		if d, err := time.ParseDuration(l.Latency); err == nil {
			daemonMu.Lock()
			daemonLatency[capture+" "+l.Via] = append(daemonLatency[capture+" "+l.Via], d)
			daemonMu.Unlock()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("portolan knockd: %w", err)
	}
	p.reset = []string{"nft", "flush", "set", "inet", "portolan", "knock_open_v4"}
	return key, nil
}

// startAndWait starts cmd and waits for a line of its output (stdout or
// stderr) with marker; the rest of its output is read and discarded.
func startAndWait(cmd *exec.Cmd, marker string) error { return startAndWatch(cmd, marker, nil) }

// startAndWatch is startAndWait that also hands every later line to each.
func startAndWatch(cmd *exec.Cmd, marker string, each func(string)) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return err
	}
	found := make(chan bool, 1)
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), marker) {
				ok = true
				found <- true
			} else if ok && each != nil {
				each(sc.Text())
			}
		}
		if !ok {
			found <- false
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			return fmt.Errorf("exited before %q", marker)
		}
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no %q in 10s", marker)
	}
}

func nftScript(ctx context.Context, h *netlab.Host, script string) error {
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %v: %s", err, out)
	}
	return nil
}

// startKnockd runs knockd 0.8 in srv behind the guard of
// ../../../shared/bench/knock (a timeout set it adds the source to).
func startKnockd(ctx context.Context, p *pair) error {
	if err := nftScript(ctx, p.srv, fmt.Sprintf(`table inet guard {
	set allow4 { type ipv4_addr; flags timeout; }
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport %d ip saddr @allow4 accept
		tcp dport %d drop
	}
}
`, guardedPort, guardedPort)); err != nil {
		return err
	}
	conf := filepath.Join(p.dir, "knockd.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, `[options]
	LogFile   = %[1]s/knockd.log
	PidFile   = %[1]s/knockd.pid
	Interface = %[2]s

[openGuard]
	sequence      = 7000,8000:udp,9000
	seq_timeout   = 5
	tcpflags      = syn
	start_command = /usr/sbin/nft add element inet guard allow4 { %%IP%% timeout 30s }
`, p.dir, p.link.ADev), 0o600)
	if err != nil {
		return err
	}
	cmd := p.srv.Command(ctx, "knockd", "-c", conf, "-i", p.link.ADev, "-v", "-D")
	if err := startAndWait(cmd, "listening on"); err != nil {
		return fmt.Errorf("knockd: %w", err)
	}
	p.reset = []string{"nft", "flush", "set", "inet", "guard", "allow4"}
	return nil
}

// The throwaway lab keys of ../../../shared/bench/knock/fwknop.
const (
	fwKey  = "oV5slwUIEHlS8/aYyTjdOdXGfOLLbeDOHlRe10NaA3M="
	fwHMAC = "t2xeL94/5qYj/gsZUVtHEqfR0Oo2ZbhkYTqOqUauCxO71pddeNMStBtL3Mj80nI5Qv8CMwYKaLJPR7YCxWAyIg=="
)

// startFwknopd runs fwknopd 2.6.10 in srv in its pcap mode, its iptables
// chain in front of a drop of the guarded port.
func startFwknopd(ctx context.Context, p *pair) error {
	out, err := p.srv.Command(ctx, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", fmt.Sprint(guardedPort), "-j", "DROP").CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables: %v: %s", err, out)
	}
	run := filepath.Join(p.dir, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		return err
	}
	files := map[string]string{
		"access.conf": fmt.Sprintf("SOURCE              ANY\nOPEN_PORTS          tcp/%d\nREQUIRE_SOURCE_ADDRESS  Y\nKEY_BASE64          %s\nHMAC_KEY_BASE64     %s\nHMAC_DIGEST_TYPE    sha256\nFW_ACCESS_TIMEOUT   30\n", guardedPort, fwKey, fwHMAC),
		"fwknopd.conf": fmt.Sprintf("PCAP_INTF                   %s;\nPCAP_FILTER                 udp port 62201;\nENABLE_SPA_PACKET_AGING     Y;\nMAX_SPA_PACKET_AGE          120;\nENABLE_DIGEST_PERSISTENCE   Y;\nFWKNOP_RUN_DIR              %s;\nDIGEST_FILE                 %s/digest.cache;\nFWKNOP_PID_FILE             %s/fwknopd.pid;\n",
			p.link.ADev, run, run, run),
		"fwknoprc": fmt.Sprintf("[default]\n\n[lab]\nSPA_SERVER          %s\nACCESS              tcp/%d\nALLOW_IP            %s\nKEY_BASE64          %s\nHMAC_KEY_BASE64     %s\nUSE_HMAC            Y\nHMAC_DIGEST_TYPE    sha256\n",
			p.link.A4, guardedPort, p.link.B4, fwKey, fwHMAC),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(p.dir, n), []byte(c), 0o600); err != nil {
			return err
		}
	}
	cmd := p.srv.Command(ctx, "fwknopd", "-c", filepath.Join(p.dir, "fwknopd.conf"), "-a", filepath.Join(p.dir, "access.conf"),
		"-d", filepath.Join(run, "digest.cache"), "-p", filepath.Join(run, "fwknopd.pid"), "-r", run, "-i", p.link.ADev, "-f")
	if err := startAndWait(cmd, "Starting fwknopd"); err != nil {
		return fmt.Errorf("fwknopd: %w", err)
	}
	time.Sleep(time.Second) // it creates its chains after that line
	p.reset = []string{"iptables", "-F", "FWKNOP_INPUT"}
	return nil
}

// sendFwknop builds an SPA packet with the fwknop client (not sent by it)
// and sends it from cli, so the time starts when the packet leaves.
func sendFwknop(p *pair) (time.Time, error) {
	pkt := filepath.Join(p.dir, "packet")
	os.Remove(pkt)
	out, err := exec.Command("fwknop", "--rc-file", filepath.Join(p.dir, "fwknoprc"), "-n", "lab", "-T", "-B", pkt, "--no-save-args").CombinedOutput()
	if err != nil {
		return time.Time{}, fmt.Errorf("fwknop -T: %v: %s", err, out)
	}
	data, err := os.ReadFile(pkt)
	if err != nil {
		return time.Time{}, err
	}
	data = []byte(strings.TrimSpace(string(data)))
	c, err := p.cli.DialContext(context.Background(), "udp4", netip.AddrPortFrom(p.link.A4, 62201).String())
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	_, err = c.Write(data)
	return time.Now(), err
}

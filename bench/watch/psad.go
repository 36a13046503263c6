//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/watch"
)

// psad (Debian's package) reads firewall messages from the kernel log,
// through a syslog daemon's file. The kernel log gets LOG lines from a
// network namespace other than the first only while the machine-wide
// sysctl net.netfilter.nf_log_all_netns is 1 (nf_log_syslog drops them
// otherwise), so the psad parts set it for their duration and restore
// the old value (run.sh restores it too, from a trap, in case this
// process is killed).
const logAllNetns = "/proc/sys/net/netfilter/nf_log_all_netns"

// psadDangerLevel1 is psad.conf's DANGER_LEVEL1 (packets), kept at its
// default: the probe that crosses it is the 5th.
const psadDangerLevel1 = 5

// cleanups run when the program ends, by return or by fail.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

func runCleanups() {
	cleanupMu.Lock()
	fs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for _, f := range slices.Backward(fs) {
		f()
	}
}

// enableLogAllNetns sets nf_log_all_netns to 1 and returns the function
// that puts the old value back (also registered with atExit).
func enableLogAllNetns() (restore func(), err error) {
	old, err := os.ReadFile(logAllNetns)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", logAllNetns, err)
	}
	if err := os.WriteFile(logAllNetns, []byte("1"), 0); err != nil {
		return nil, fmt.Errorf("write %s: %w", logAllNetns, err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := os.WriteFile(logAllNetns, bytes.TrimSpace(old), 0); err != nil {
				fmt.Fprintf(os.Stderr, "watch-bench: restore %s to %s: %v\n", logAllNetns, bytes.TrimSpace(old), err)
			}
		})
	}
	atExit(restore)
	return restore, nil
}

// kmsgBridge is the syslog daemon: it reads the kernel log (/dev/kmsg,
// from its end) and appends each line carrying token to a file in
// syslog's format at once, as rsyslog would write kern.log, so psad's
// figure leaves out a syslog daemon's own delay.
type kmsgBridge struct {
	lines  atomic.Uint64 // lines with the token written
	missed atomic.Uint64 // kernel log records overwritten before they were read (any source)
	done   chan struct{}
}

func startKmsgBridge(ctx context.Context, path, token string) (*kmsgBridge, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seek /dev/kmsg: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	b := &kmsgBridge{done: make(chan struct{})}
	host, _ := os.Hostname()
	go func() {
		defer close(b.done)
		defer unix.Close(fd)
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<16)
		buf := make([]byte, 8192)
		var lastSeq uint64
		for ctx.Err() == nil {
			n, err := unix.Read(fd, buf)
			switch {
			case err == unix.EAGAIN:
				w.Flush()
				unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
				continue
			case err == unix.EPIPE: // overwritten: the next read tells how many
				continue
			case err == unix.EINTR:
				continue
			case err != nil:
				fmt.Fprintln(os.Stderr, "watch-bench: read /dev/kmsg:", err)
				return
			}
			// "prio,seq,usec,flags;message\n"
			hdr, msg, ok := bytes.Cut(buf[:n], []byte(";"))
			if !ok {
				continue
			}
			fs := bytes.SplitN(hdr, []byte(","), 4)
			if len(fs) < 3 {
				continue
			}
			seq, _ := strconv.ParseUint(string(fs[1]), 10, 64)
			if lastSeq != 0 && seq > lastSeq+1 {
				b.missed.Add(seq - lastSeq - 1)
			}
			lastSeq = seq
			msg, _, _ = bytes.Cut(msg, []byte("\n"))
			if !bytes.Contains(msg, []byte(token)) {
				continue
			}
			us, _ := strconv.ParseUint(string(fs[2]), 10, 64)
			fmt.Fprintf(w, "%s %s kernel: [%5d.%06d] %s\n", time.Now().Format(time.Stamp), host, us/1e6, us%1e6, msg)
			b.lines.Add(1)
		}
		w.Flush()
	}()
	return b, nil
}

// psadRun is one psad daemon in a server namespace, with its own
// directories and config in a temporary directory.
type psadRun struct {
	dir, logDir string
	srv         *netlab.Host
	cmd         *exec.Cmd
	bridge      *kmsgBridge
	cancel      context.CancelFunc
	token       string
	logRule     []string // the LOG rule's iptables arguments, to delete it
	stopOnce    sync.Once
}

// startPsad adds the LOG rule psad needs to the server's input chain
// (iptables, as psad's documentation says: log what you drop) and runs
// psad inside the server namespace, so that its auto-blocking iptables
// commands change that namespace's rules only. interval is
// CHECK_INTERVAL; block turns on ENABLE_AUTO_IDS at danger level 1.
// Everything but the daemon's defaults for detection is left as Debian
// ships it.
func startPsad(ctx context.Context, srv *netlab.Host, interval int, block bool) (*psadRun, error) {
	bin, err := exec.LookPath("psad")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "psad-bench")
	if err != nil {
		return nil, err
	}
	p := &psadRun{dir: dir, logDir: filepath.Join(dir, "log"), srv: srv, token: fmt.Sprintf("PB%d ", os.Getpid())}
	atExit(p.stop)
	for _, d := range []string{"log", "run", "lib", "archive"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return p, err
		}
	}
	// psad's own default prefix search is "DROP"; FW_SEARCH_ALL=Y takes
	// every LOG line anyway. The token tells this run's lines apart from
	// any other namespace's while nf_log_all_netns is on.
	p.logRule = []string{"INPUT", "-p", "tcp", "--syn", "-j", "LOG", "--log-prefix", "DROP " + p.token, "--log-level", "6"}
	if out, err := srv.Command(ctx, "iptables", append([]string{"-A"}, p.logRule...)...).CombinedOutput(); err != nil {
		p.logRule = nil
		return p, fmt.Errorf("iptables LOG rule: %v: %s", err, out)
	}
	msgs := filepath.Join(dir, "messages")
	bctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	if p.bridge, err = startKmsgBridge(bctx, msgs, p.token); err != nil {
		return p, err
	}
	auto := "N"
	if block {
		auto = "Y"
	}
	conf, err := psadConf("/etc/psad/psad.conf", map[string]string{
		"PSAD_DIR":         p.logDir,
		"PSAD_RUN_DIR":     filepath.Join(dir, "run"),
		"PSAD_FIFO_DIR":    filepath.Join(dir, "lib"),
		"CONF_ARCHIVE_DIR": filepath.Join(dir, "archive"),
		"IPT_SYSLOG_FILE":  msgs,
		"HOSTNAME":         "psadbench",
		"CHECK_INTERVAL":   strconv.Itoa(interval),
		"ENABLE_AUTO_IDS":  auto,
		// Block at the first danger level (5 packets, DANGER_LEVEL1).
		"AUTO_IDS_DANGER_LEVEL": "1",
		// No mail, no whois or DNS (nothing may leave the namespaces), no
		// journald (the bench is the syslog daemon), ip instead of ifconfig.
		"ALERTING_METHODS":        "noemail",
		"ENABLE_WHOIS_LOOKUPS":    "N",
		"ENABLE_DNS_LOOKUPS":      "N",
		"AUTO_DETECT_JOURNALCTL":  "N",
		"ENABLE_FW_MSG_READ_CMD":  "N",
		"IFCFGTYPE":               "iproute2",
		"ENABLE_FW_LOGGING_CHECK": "N",
	})
	if err != nil {
		return p, err
	}
	confPath := filepath.Join(dir, "psad.conf")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return p, err
	}
	out, err := os.Create(filepath.Join(dir, "psad.out"))
	if err != nil {
		return p, err
	}
	defer out.Close()
	p.cmd = srv.Command(ctx, bin, "-c", confPath, "--no-daemon", "--no-netstat", "--no-whois", "--no-rdns")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		return p, fmt.Errorf("start psad: %w", err)
	}
	return p, nil
}

// psadConf rewrites the values of keys in the shipped config.
func psadConf(path string, set map[string]string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out bytes.Buffer
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			if v, ok := set[f[0]]; ok {
				fmt.Fprintf(&out, "%-27s %s;\n", f[0], v)
				seen[f[0]] = true
				continue
			}
		}
		out.WriteString(l + "\n")
	}
	for k, v := range set {
		if !seen[k] {
			fmt.Fprintf(&out, "%-27s %s;\n", k, v)
		}
	}
	return out.Bytes(), nil
}

func (p *psadRun) stop() {
	p.stopOnce.Do(func() {
		if p.cmd != nil && p.cmd.Process != nil {
			p.cmd.Process.Signal(unix.SIGTERM)
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				p.cmd.Process.Kill()
				<-done
			}
		}
		if p.cancel != nil {
			p.cancel()
		}
		if p.bridge != nil {
			<-p.bridge.done
		}
		// The next psad in this namespace adds its own rule: two would
		// log each packet twice.
		if p.logRule != nil {
			if out, err := p.srv.Command(context.Background(), "iptables", append([]string{"-D"}, p.logRule...)...).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "watch-bench: delete the LOG rule: %v: %s\n", err, out)
			}
		}
		if os.Getenv("PSAD_BENCH_KEEP") == "" {
			os.RemoveAll(p.dir)
		} else {
			fmt.Println("psad: kept", p.dir)
		}
	})
}

// cpu is the user and system time psad has used (from /proc: clock
// ticks of 10 ms).
func (p *psadRun) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// tcpCount reads psad's global TCP packet counter.
func (p *psadRun) tcpCount() uint64 {
	b, err := os.ReadFile(filepath.Join(p.logDir, "packet_ctr"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == "tcp" {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// detected reports whether psad gave src a danger level (its scan
// record: PSAD_DIR/SRC/danger_level).
func (p *psadRun) detected(src netip.Addr) bool {
	_, err := os.Stat(filepath.Join(p.logDir, src.String(), "danger_level"))
	return err == nil
}

// wait sends one SYN from src every 250 ms until psad has counted a
// packet: psad skips what was logged before its first check, so nothing
// is measured until it is reading. The SYNs all go to one port, so that
// portolan's watcher in the same namespace sees no scan and bans nothing.
func (p *psadRun) wait(ctx context.Context, send func(netip.Addr, uint16), src netip.Addr, interval int) error {
	limit := time.Duration(3*interval+60) * time.Second
	deadline := time.Now().Add(limit)
	before := p.tcpCount()
	for p.tcpCount() == before {
		if time.Now().After(deadline) || ctx.Err() != nil {
			out, _ := os.ReadFile(filepath.Join(p.dir, "psad.out"))
			return fmt.Errorf("psad counted nothing %v after it started (%d kernel log lines written for it, %d kernel log records missed); its output:\n%s",
				limit, p.bridge.lines.Load(), p.bridge.missed.Load(), out)
		}
		send(src, 60000)
		time.Sleep(250 * time.Millisecond)
	}
	return nil
}

// psadBlocked reports whether psad's PSAD_BLOCK_INPUT chain (iptables-nft:
// table ip filter) has a rule matching src: the rule that blocks it.
func psadBlocked(c *nftables.Conn, src netip.Addr) bool {
	return psadRules(c, src, "PSAD_BLOCK_INPUT") > 0
}

// psadRules counts the rules of psad's chains that match src. A block is
// 4 of them (INPUT; OUTPUT; FORWARD both ways), and psad runs 17-20
// iptables commands for one before it sleeps again.
func psadRules(c *nftables.Conn, src netip.Addr, chains ...string) int {
	t := &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}
	want := src.AsSlice()
	n := 0
	for _, ch := range chains {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if err != nil {
			continue
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if cmp, ok := e.(*expr.Cmp); ok && bytes.Equal(cmp.Data, want) {
					n++
					break
				}
			}
		}
	}
	return n
}

// rawSender returns a function that sends one TCP SYN from src (an
// address of the client) to dst:port, through a raw socket in cli.
func rawSender(cli *netlab.Host, dst netip.Addr) (send func(src netip.Addr, port uint16), closeFn func(), err error) {
	var fd int
	if err := cli.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		return nil, nil, err
	}
	sa := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 40)
	var k uint32
	send = func(src netip.Addr, port uint16) {
		k++
		synPacket(buf, src.As4(), dst.As4(), uint16(40000+k%20000), port, k)
		unix.Sendto(fd, buf, 0, sa)
	}
	return send, func() { unix.Close(fd) }, nil
}

type sample struct {
	detect, block           time.Duration // from the scan's first probe
	detectCross, blockCross time.Duration // from the probe that crosses the tool's threshold
	ok                      bool
}

// sideBySide runs portolan watch (capture + watcher, blocking) and psad
// (auto-blocking) in one server namespace on the same scans: each scan
// is probes SYNs to distinct closed ports, 1 ms apart, from a new client
// address, started at a random point of psad's check interval. For each
// tool it reports the time from the scan's first probe (and from the
// probe crossing its threshold: portolan's 12th distinct port, psad's
// 5th packet, DANGER_LEVEL1) to the detection and to the block being in
// the kernel.
func sideBySide(ctx context.Context, lab *netlab.Lab, intervals []int, rounds, probes int) error {
	restore, err := enableLogAllNetns()
	if err != nil {
		return err
	}
	defer restore()
	cli, srv, lk, err := pair(lab, "p")
	if err != nil {
		return err
	}
	// portolan watch, as in latency.
	var mu sync.Mutex
	detects := map[netip.Addr]time.Time{}
	tb, stop, err := blockingWatch(ctx, srv, func(e watch.Event) {
		if e.Type == watch.TypeDetection {
			mu.Lock()
			detects[e.Source.Addr()] = time.Now()
			mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	send, closeSend, err := rawSender(cli, lk.B4)
	if err != nil {
		return err
	}
	defer closeSend()
	nc, err := nftables.New(nftables.WithNetNSFd(srv.FD()), nftables.AsLasting())
	if err != nil {
		return err
	}
	defer nc.CloseLasting()

	base := lk.A4.As4()
	next := byte(40)
	newSource := func() (netip.Addr, error) {
		a := base
		a[3] = next
		next++
		src := netip.AddrFrom4(a)
		return src, cli.AddAddr(lk.ADev, netip.PrefixFrom(src, 24))
	}
	for _, iv := range intervals {
		ps, err := startPsad(ctx, srv, iv, true)
		if err != nil {
			if ps != nil {
				ps.stop()
			}
			return fmt.Errorf("psad: %w", err)
		}
		warm, err := newSource()
		if err != nil {
			return err
		}
		if err := ps.wait(ctx, send, warm, iv); err != nil {
			ps.stop()
			return fmt.Errorf("psad: %w", err)
		}
		var port, psad []sample
		for range rounds {
			// A random phase against psad's polling.
			select {
			case <-ctx.Done():
				ps.stop()
				return ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(time.Duration(iv) * time.Second)))):
			}
			src, err := newSource()
			if err != nil {
				ps.stop()
				return err
			}
			sent := make([]time.Time, 0, probes)
			for i := range probes {
				sent = append(sent, time.Now())
				send(src, uint16(2000+i))
				time.Sleep(time.Until(sent[0].Add(time.Duration(i+1) * time.Millisecond)))
			}
			t0 := sent[0]
			var pt, pd, st, sd time.Time // portolan block/detect, psad block/detect
			deadline := t0.Add(time.Duration(2*iv+10) * time.Second)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				now := time.Now()
				if sd.IsZero() && ps.detected(src) {
					sd = now
				}
				if st.IsZero() && psadBlocked(nc, src) {
					st = now
				}
				if pt.IsZero() {
					tb.mu.Lock()
					pt = tb.done[netip.PrefixFrom(src, 32)]
					tb.mu.Unlock()
					mu.Lock()
					pd = detects[src]
					mu.Unlock()
				}
				if !pt.IsZero() && !sd.IsZero() && !st.IsZero() {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			cross := func(n int) time.Time { return sent[min(n, len(sent))-1] }
			port = append(port, mkSample(t0, cross(watch.DefaultThresholds.Ports), pd, pt))
			psad = append(psad, mkSample(t0, cross(psadDangerLevel1), sd, st))
			// Let psad finish the block (its OUTPUT and FORWARD rules come
			// after the INPUT one) before the next scan, which would
			// otherwise wait behind those iptables commands.
			for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
				if psadRules(nc, src, "PSAD_BLOCK_INPUT", "PSAD_BLOCK_OUTPUT", "PSAD_BLOCK_FORWARD") >= 4 {
					break
				}
			}
		}
		fmt.Printf("side by side, psad CHECK_INTERVAL %d s: %d scans of %d SYNs 1 ms apart, same scans, one namespace (time from the scan's first probe; in brackets from the probe crossing the tool's threshold)\n", iv, rounds, probes)
		pm := report("  portolan watch (12 distinct ports)", port)
		sm := report(fmt.Sprintf("  psad %s (DANGER_LEVEL1 %d packets, auto-block at level 1)", psadVersion(), psadDangerLevel1), psad)
		if pm > 0 && sm > 0 {
			fmt.Printf("  ratio psad/portolan, median scan start to block: %.0fx\n", float64(sm)/float64(pm))
		}
		ps.stop()
	}
	return nil
}

func mkSample(t0, cross, detect, block time.Time) sample {
	if detect.IsZero() || block.IsZero() {
		return sample{}
	}
	return sample{detect: detect.Sub(t0), block: block.Sub(t0), detectCross: detect.Sub(cross), blockCross: block.Sub(cross), ok: true}
}

// report prints min/median/p90/max of detection and block and returns
// the median block time from scan start (0 if nothing was blocked).
func report(name string, ss []sample) time.Duration {
	var d, b, dc, bc []time.Duration
	for _, s := range ss {
		if s.ok {
			d, b, dc, bc = append(d, s.detect), append(b, s.block), append(dc, s.detectCross), append(bc, s.blockCross)
		}
	}
	if len(b) == 0 {
		fmt.Printf("%s: nothing detected and blocked in %d scans\n", name, len(ss))
		return 0
	}
	q := func(v []time.Duration) string {
		slices.Sort(v)
		r := func(x time.Duration) string { return x.Round(10 * time.Microsecond).String() }
		return fmt.Sprintf("min %s, median %s, p90 %s, max %s", r(v[0]), r(v[len(v)/2]), r(v[min(len(v)-1, len(v)*9/10)]), r(v[len(v)-1]))
	}
	slices.Sort(bc)
	slices.Sort(dc)
	fmt.Printf("%s: %d/%d scans; detection %s [median %s]; block %s [median %s]\n", name, len(b), len(ss),
		q(d), dc[len(dc)/2].Round(10*time.Microsecond), q(b), bc[len(bc)/2].Round(10*time.Microsecond))
	return b[len(b)/2]
}

func psadVersion() string {
	out, err := exec.Command("psad", "-V").CombinedOutput()
	if err != nil {
		return "?"
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "v") && len(f) > 1 && f[1] >= '0' && f[1] <= '9' {
			return f
		}
	}
	return "?"
}

// psadThroughput is the throughput side of psad for one paced run: the
// run's LOG lines go through the kernel log to psad (auto-blocking off,
// CHECK_INTERVAL 1 s, its minimum, so that it drains as fast as it can);
// it follows psad's packet counter to tell what psad counted and when it
// had counted the last of it.
type psadThroughput struct {
	ps                      *psadRun
	before, lines0, missed0 uint64
	mu                      sync.Mutex
	n                       uint64    // psad's counter
	moved                   time.Time // when n last changed
	stop                    chan struct{}
}

func startPsadThroughput(ctx context.Context, srv *netlab.Host, send func(netip.Addr, uint16), warm netip.Addr) (*psadThroughput, error) {
	ps, err := startPsad(ctx, srv, 1, false)
	if err != nil {
		if ps != nil {
			ps.stop()
		}
		return nil, err
	}
	if err := ps.wait(ctx, send, warm, 1); err != nil {
		ps.stop()
		return nil, err
	}
	// Let psad count the last warm-up SYNs before taking the baseline.
	time.Sleep(2500 * time.Millisecond)
	pt := &psadThroughput{ps: ps, before: ps.tcpCount(), lines0: ps.bridge.lines.Load(), missed0: ps.bridge.missed.Load(), moved: time.Now(), stop: make(chan struct{})}
	pt.n = pt.before
	go func() {
		for {
			select {
			case <-pt.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if m := ps.tcpCount(); m != 0 {
				pt.mu.Lock()
				if m != pt.n {
					pt.n, pt.moved = m, time.Now()
				}
				pt.mu.Unlock()
			}
		}
	}()
	return pt, nil
}

// finish waits until psad has counted every line the syslog side wrote
// for the run, or is idle (less than 100 ms of CPU in 3 s, its counter
// still), at most limit; psad reads all new lines, then parses them all,
// then writes its counters, so the counter stands still while it works.
// It returns what psad counted for the run, when its count last moved,
// the kernel log lines the syslog side wrote and missed, and psad's CPU.
func (pt *psadThroughput) finish(ctx context.Context, limit time.Duration) (counted uint64, last time.Time, logged, missed uint64, cpu time.Duration) {
	defer pt.ps.stop()
	defer close(pt.stop)
	end := time.Now().Add(limit)
	type mark struct {
		at  time.Time
		cpu time.Duration
		n   uint64
	}
	var marks []mark
	for time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		pt.mu.Lock()
		n := pt.n
		pt.mu.Unlock()
		if n-pt.before >= pt.ps.bridge.lines.Load()-pt.lines0 {
			break
		}
		marks = append(marks, mark{time.Now(), pt.ps.cpu(), n})
		if len(marks) > 6 {
			m0, m1 := marks[len(marks)-7], marks[len(marks)-1]
			if m1.cpu-m0.cpu < 100*time.Millisecond && m1.n == m0.n {
				break
			}
		}
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.n - pt.before, pt.moved, pt.ps.bridge.lines.Load() - pt.lines0, pt.ps.bridge.missed.Load() - pt.missed0, pt.ps.cpu()
}

//go:build linux

// Command watch-bench measures portolan watch in network namespaces of
// its own (internal/netlab): the latency from the probe that crosses the
// detection threshold (its kernel receive time, as NFLOG stamps it) to the
// ban being in the kernel, over many scans from distinct client
// addresses; and the attempts per second the capture takes at a paced
// rate of raw SYNs, with every attempt sent accounted for as captured,
// over the in-kernel rate limit, lost from the NFLOG socket, or dropped
// by the receiving interface. fail2ban's port-scan recipe runs on the
// same kind of scans, and psad (psad.go) on the same scans and the same
// paced attempts, in the same namespace. Run it as root through
// bench/watch/run.sh.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/watch"
)

func main() {
	rounds := flag.Int("rounds", 20, "scans (each from its own address) for the latency")
	rates := flag.String("rates", "20000,50000,80000", "paced SYN rates for the throughput, attempts/s, comma-separated")
	dur := flag.Duration("duration", 5*time.Second, "length of each throughput run")
	queue := flag.Uint("queue-threshold", 1, "NFLOG queue threshold of the throughput runs")
	f2b := flag.Bool("fail2ban", true, "also measure fail2ban's port-scan recipe, if installed")
	psadOn := flag.Bool("psad", true, "also run psad side by side on the same scans and paced runs, if installed")
	psadIv := flag.String("psad-intervals", "5,1", "psad CHECK_INTERVAL values (s) of the side-by-side scans: its default and its minimum")
	psadRounds := flag.Int("psad-rounds", 5, "side-by-side scans per psad interval")
	psadProbes := flag.Int("psad-probes", 100, "SYNs per side-by-side scan (distinct ports, 1 ms apart)")
	psadRates := flag.String("psad-rates", "2000,10000", "paced rates (attempts/s) run with psad reading the same attempts")
	flag.Parse()
	defer runCleanups()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := netlab.New()
	if err != nil {
		fail(err)
	}
	atExit(func() { lab.Close() })
	if err := latency(ctx, lab, *rounds); err != nil {
		fail(err)
	}
	if *f2b {
		if err := fail2banLatency(ctx, lab, min(*rounds, 10)); err != nil {
			fail(err)
		}
	}
	_, err = exec.LookPath("psad")
	withPsad := *psadOn && err == nil
	if *psadOn && !withPsad {
		fmt.Println("psad: not installed; skipped")
	}
	if withPsad {
		if err := sideBySide(ctx, lab, ints(*psadIv, "-psad-intervals"), *psadRounds, *psadProbes); err != nil {
			fail(err)
		}
		for _, n := range ints(*psadRates, "-psad-rates") {
			if err := throughput(ctx, lab, n, *dur, uint32(*queue), true); err != nil {
				fail(err)
			}
		}
	}
	for _, n := range ints(*rates, "-rates") {
		if err := throughput(ctx, lab, n, *dur, uint32(*queue), false); err != nil {
			fail(err)
		}
	}
}

// ints parses a comma-separated flag value; empty is none.
func ints(s, flagName string) []int {
	var out []int
	for _, r := range strings.Split(s, ",") {
		if strings.TrimSpace(r) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil {
			fail(fmt.Errorf("%s %q: %w", flagName, r, err))
		}
		out = append(out, n)
	}
	return out
}

// fail ends the program after the cleanups (os.Exit skips defers): psad
// stopped, the sysctl restored, the lab's namespaces removed.
func fail(err error) {
	fmt.Fprintln(os.Stderr, "watch-bench:", err)
	runCleanups()
	os.Exit(1)
}

func pair(lab *netlab.Lab, name string) (cli, srv *netlab.Host, lk *netlab.Link, err error) {
	if cli, err = lab.AddHost(name + "c"); err != nil {
		return
	}
	if srv, err = lab.AddHost(name + "s"); err != nil {
		return
	}
	lk, err = lab.Link(cli, srv)
	return
}

// timedBlocker records when each ban is in the kernel.
type timedBlocker struct {
	b    watch.Blocker
	mu   sync.Mutex
	done map[netip.Prefix]time.Time
}

func (t *timedBlocker) Ban(ctx context.Context, p netip.Prefix, d time.Duration) error {
	err := t.b.Ban(ctx, p, d)
	now := time.Now()
	t.mu.Lock()
	t.done[p] = now
	t.mu.Unlock()
	return err
}

// blockingWatch runs portolan watch's capture and watcher in srv, as
// `portolan watch --block --ban 1m` does, recording when each ban is in
// the kernel; onEvent gets every event on the capture goroutine.
func blockingWatch(ctx context.Context, srv *netlab.Host, onEvent func(watch.Event)) (tb *timedBlocker, stop func(), err error) {
	capt := &watch.Capture{NetNS: srv.FD()}
	tb = &timedBlocker{b: capt, done: map[netip.Prefix]time.Time{}}
	w := &watch.Watcher{Blocker: tb, Ban: time.Minute, OnEvent: onEvent}
	rctx, cancel := context.WithCancel(ctx)
	rn, err := capt.Start(rctx, w, 1, 0)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	go rn.Serve(rctx)
	return tb, func() { rn.Close(context.Background()); cancel() }, nil
}

// latency: each round scans closed ports one connect at a time from a new
// address until the ban; the latency is from the crossing probe's kernel
// receive time to the ban's netlink transaction returning.
func latency(ctx context.Context, lab *netlab.Lab, rounds int) error {
	cli, srv, lk, err := pair(lab, "l")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	triggers := map[netip.Prefix]time.Time{}
	tb, stop, err := blockingWatch(ctx, srv, func(e watch.Event) {
		if e.Type == watch.TypeBlock {
			mu.Lock()
			triggers[e.Source] = e.Time
			mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	defer stop()

	var lat, fromSend []time.Duration
	var probes []int
	for i := range rounds {
		var sendTimes []time.Time
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
		if err := cli.AddAddr(lk.ADev, netip.PrefixFrom(src, 24)); err != nil {
			return err
		}
		p := netip.PrefixFrom(src, 32)
		sent := 0
		for port := 2000; port < 2200; port++ {
			sent++
			sendTimes = append(sendTimes, time.Now())
			err := cli.Do(func() error {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 200 * time.Millisecond}
				c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(lk.B4, uint16(port)).String())
				if err == nil {
					c.Close()
				}
				return nil
			})
			if err != nil {
				return err
			}
			tb.mu.Lock()
			_, banned := tb.done[p]
			tb.mu.Unlock()
			if banned {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		tb.mu.Lock()
		end, ok := tb.done[p]
		tb.mu.Unlock()
		mu.Lock()
		start, ok2 := triggers[p]
		mu.Unlock()
		if !ok || !ok2 {
			return fmt.Errorf("round %d: %s not banned after %d probes", i, src, sent)
		}
		lat = append(lat, end.Sub(start))
		fromSend = append(fromSend, end.Sub(sendTimes[min(len(sendTimes), watch.DefaultThresholds.Ports)-1]))
		probes = append(probes, sent)
	}
	slices.Sort(fromSend)
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	fmt.Printf("latency: %d scans, crossing probe (kernel receive) to ban in the kernel: min %v, median %v, p90 %v, max %v; probes sent before the ban was seen: %v (threshold %d)\n",
		len(lat), lat[0].Round(time.Microsecond), pct(0.5).Round(time.Microsecond), pct(0.9).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), probes, watch.DefaultThresholds.Ports)
	fmt.Printf("latency from the client's connect() of the 12th probe to the ban: min %v, median %v, p90 %v, max %v\n",
		fromSend[0].Round(time.Microsecond), fromSend[len(fromSend)/2].Round(time.Microsecond), fromSend[min(len(fromSend)-1, len(fromSend)*9/10)].Round(time.Microsecond), fromSend[len(fromSend)-1].Round(time.Microsecond))
	return nil
}

// throughput sends raw SYNs from the client at rate for dur and accounts
// for each.
func throughput(ctx context.Context, lab *netlab.Lab, rate int, dur time.Duration, queue uint32, withPsad bool) error {
	name := "t" + strconv.Itoa(rate/1000)
	if withPsad {
		name = "q" + strconv.Itoa(rate/1000)
	}
	cli, srv, lk, err := pair(lab, name)
	if err != nil {
		return err
	}
	capt := &watch.Capture{NetNS: srv.FD(), Rate: 10_000_000, Burst: 10_000_000}
	var events atomic.Uint64
	w := &watch.Watcher{Thresholds: watch.Thresholds{Ports: 1 << 30, Hosts: 1 << 30, SlowPairs: 1 << 30, Odd: 1 << 30},
		OnEvent: func(e watch.Event) {
			if e.Type == watch.TypeAttempt {
				events.Add(1)
			}
		}}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rn, err := capt.Start(rctx, w, queue, 20*time.Millisecond)
	if err != nil {
		return err
	}
	defer rn.Close(context.Background())
	served := make(chan error, 1)
	go func() { served <- rn.Serve(rctx) }()

	var fd int
	if err := cli.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		return err
	}
	defer unix.Close(fd)
	var pt *psadThroughput
	if withPsad {
		restore, err := enableLogAllNetns()
		if err != nil {
			return err
		}
		defer restore()
		send, closeSend, err := rawSender(cli, lk.B4)
		if err != nil {
			return err
		}
		defer closeSend()
		a := lk.A4.As4()
		a[3] = 250
		warm := netip.AddrFrom4(a)
		if err := cli.AddAddr(lk.ADev, netip.PrefixFrom(warm, 24)); err != nil {
			return err
		}
		if pt, err = startPsadThroughput(ctx, srv, send, warm); err != nil {
			return fmt.Errorf("psad: %w", err)
		}
	}
	ev0 := events.Load() // psad's warm-up probes
	dropsBefore, err := rxDropped(srv, lk.BDev)
	if err != nil {
		return err
	}
	txBefore, _ := devStat(cli, lk.ADev, "tx_dropped")
	softBefore := softnetDropped()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	src, dst := lk.A4.As4(), lk.B4.As4()
	// Packets go out in batches of up to 64 per sendmmsg, paced in 1 ms
	// steps: one system call per packet held the sender under 45,000/s
	// on the loaded machine.
	const batch = 64
	bufs := make([][]byte, batch)
	iovs := make([]unix.Iovec, batch)
	hdrs := make([]mmsghdr, batch)
	var sa unix.RawSockaddrInet4
	sa.Family = unix.AF_INET
	sa.Addr = dst
	for i := range bufs {
		bufs[i] = make([]byte, 40)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(40)
		hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&sa))
		hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}
	start := time.Now()
	total := int(float64(rate) * dur.Seconds())
	sent := 0
	for sent < total {
		due := min(int(float64(rate)*time.Since(start).Seconds()), total)
		for sent < due {
			n := min(due-sent, batch)
			for i := range n {
				k := sent + i
				synPacket(bufs[i], src, dst, uint16(10000+k%50000), uint16(1+k%60000), uint32(k))
			}
			m, err := sendmmsg(fd, hdrs[:n])
			if err != nil {
				if err == unix.ENOBUFS || err == unix.EAGAIN || err == unix.EINTR {
					time.Sleep(50 * time.Microsecond)
					continue
				}
				return fmt.Errorf("send: %w", err)
			}
			sent += m
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	sendTime := time.Since(start)
	// Let the queue drain, then account.
	var last uint64
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		if n := events.Load(); n == last {
			break
		} else {
			last = n
		}
	}
	rn.Sync(ctx)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	st := w.Stats()
	dropsAfter, _ := rxDropped(srv, lk.BDev)
	txAfter, _ := devStat(cli, lk.ADev, "tx_dropped")
	soft := softnetDropped() - softBefore
	rs := rn.ReaderStats()
	got := events.Load() - ev0
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	accounted := got + st.RateLimited + st.SocketLost + (dropsAfter - dropsBefore) + (txAfter - txBefore) + soft
	fmt.Printf("throughput: target %d/s: sent %d in %v (%.0f/s); captured %d (%.0f/s); rate-limited %d; NFLOG socket lost %d; interface drops rx %d tx %d; backlog (softnet, machine-wide) drops %d; unaccounted %d; decode errors %d; nflog overruns %d truncated %d malformed %d; process CPU %v (%.1f us/attempt, sender included)\n",
		rate, sent, sendTime.Round(time.Millisecond), float64(sent)/sendTime.Seconds(), got, float64(got)/sendTime.Seconds(),
		st.RateLimited, st.SocketLost, dropsAfter-dropsBefore, txAfter-txBefore, soft, int64(sent)-int64(accounted), st.DecodeErrs, rs.Overruns, rs.Truncated, rs.Malformed, cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(sent))
	if pt != nil {
		counted, last, logged, missed, cpu := pt.finish(ctx, 3*time.Minute)
		span := max(last.Sub(start), sendTime)
		fmt.Printf("  psad %s (CHECK_INTERVAL 1 s) on the same attempts: kernel log lines %d of %d sent (kernel log records overwritten before the syslog side read them, any source: %d); psad counted %d (%.1f%%), the last %v after the first attempt: %.0f/s sustained, psad CPU %v (%.1f us/attempt counted); portolan captured %.0f/s; ratio portolan/psad %.1fx\n",
			psadVersion(), logged, sent, missed, counted, 100*float64(counted)/float64(sent), span.Round(time.Millisecond), float64(counted)/span.Seconds(),
			cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(max(counted, 1)), float64(got)/sendTime.Seconds(), (float64(got)/sendTime.Seconds())/(float64(counted)/span.Seconds()))
	}
	cancel()
	<-served
	return nil
}

// rxDropped reads the interface's receive drops in host h.
func rxDropped(h *netlab.Host, dev string) (uint64, error) { return devStat(h, dev, "rx_dropped") }

// synPacket writes an IPv4 TCP SYN with correct checksums into b (40 bytes).
func synPacket(b []byte, src, dst [4]byte, sport, dport uint16, seq uint32) {
	clear(b)
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(b[2:], 40)
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint16(b[10:], csum(b[:20], 0))
	t := b[20:]
	binary.BigEndian.PutUint16(t, sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], seq)
	t[12], t[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(t[14:], 64240)
	pseudo := uint32(src[0])<<8 + uint32(src[1]) + uint32(src[2])<<8 + uint32(src[3]) +
		uint32(dst[0])<<8 + uint32(dst[1]) + uint32(dst[2])<<8 + uint32(dst[3]) + unix.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(t[16:], csum(t, pseudo))
}

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// devStat reads a counter of dev in h from /proc/net/dev, which follows
// the thread's namespace (sysfs follows the mount's).
func devStat(h *netlab.Host, dev, name string) (uint64, error) {
	col := map[string]int{"rx_dropped": 3, "tx_dropped": 11}[name]
	var n uint64
	err := h.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/dev")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			iface, rest, ok := strings.Cut(l, ":")
			if ok && strings.TrimSpace(iface) == dev {
				n, err = strconv.ParseUint(strings.Fields(rest)[col], 10, 64)
				return err
			}
		}
		return fmt.Errorf("no %s in /proc/net/dev", dev)
	})
	return n, err
}

// softnetDropped sums the per-CPU backlog drops (netdev_max_backlog full).
func softnetDropped() uint64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var n uint64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 {
			v, _ := strconv.ParseUint(f[1], 16, 64)
			n += v
		}
	}
	return n
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func sendmmsg(fd int, hdrs []mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

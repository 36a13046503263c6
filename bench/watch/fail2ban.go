//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/nflog"
)

// fail2banLatency runs fail2ban's usual port-scan recipe on the same kind
// of scans as latency: an nft log rule for every SYN (prefix PORTSCAN),
// its lines in a kernel-log file (written here from NFLOG at once, where
// a syslog daemon would write them), a filter matching `PORTSCAN .*
// SRC=<HOST>` with maxretry 12 in 60 s, and an action that adds the
// address to an nft set. The latency is from the kernel receive time of
// the 12th logged probe to the element being in the set (polled every
// millisecond).
func fail2banLatency(ctx context.Context, lab *netlab.Lab, rounds int) error {
	server, err := exec.LookPath("fail2ban-server")
	if err != nil {
		fmt.Println("fail2ban: not installed; skipped")
		return nil
	}
	cli, srv, lk, err := pair(lab, "f")
	if err != nil {
		return err
	}
	const group = 11
	r, err := nflog.Open(ctx, nflog.Config{Group: group, NetNS: srv.FD(), CopyRange: 128})
	if err != nil {
		return err
	}
	defer r.Close()
	set, err := f2bTable(srv.FD(), group)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "f2b-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logPath := filepath.Join(dir, "kern.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	files := map[string]string{
		"fail2ban.conf":          fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = %s/f2b.log\nsyslogsocket = auto\nallowipv6 = auto\nsocket = %s/f2b.sock\npidfile = %s/f2b.pid\ndbfile = :memory:\ndbpurgeage = 1d\n", dir, dir, dir),
		"jail.conf":              fmt.Sprintf("[DEFAULT]\nbackend = polling\nusedns = no\n[portscan]\nenabled = true\nfilter = portscan\nlogpath = %s\nmaxretry = 12\nfindtime = 60\nbantime = 600\naction = netnsnft[ns=%s]\n", logPath, srv.Netns()),
		"filter.d/portscan.conf": "[Definition]\nfailregex = PORTSCAN .* SRC=<HOST> \ndatepattern = {^LN-BEG}EPOCH\n",
		"action.d/netnsnft.conf": "[Definition]\nactionstart =\nactionstop =\nactioncheck =\nactionban = ip netns exec <ns> nft add element inet f2bbench f2b { <ip> }\nactionunban = ip netns exec <ns> nft delete element inet f2bbench f2b { <ip> }\n[Init]\nns =\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, "conf", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, server, "-f", "-x", "-c", filepath.Join(dir, "conf"))
	out, err := os.Create(filepath.Join(dir, "f2b.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(unix.SIGTERM); cmd.Wait() }()

	// The "syslog": each logged SYN as a kernel-log line, at once.
	var mu sync.Mutex
	stamps := map[netip.Addr][]time.Time{} // kernel receive times per source
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		w := bufio.NewWriter(lf)
		pkts := make([]nflog.Packet, 64)
		for {
			n, err := r.Read(rctx, pkts)
			if err != nil {
				return
			}
			for i := range pkts[:n] {
				f, err := pkts[i].Flow()
				if err != nil {
					continue
				}
				ts := pkts[i].Timestamp
				fmt.Fprintf(w, "%d.%06d srv kernel: PORTSCAN IN=eth0 OUT= SRC=%s DST=%s PROTO=TCP SPT=%d DPT=%d SYN \n",
					ts.Unix(), ts.Nanosecond()/1000, f.Src.Addr(), f.Dst.Addr(), f.Src.Port(), f.Dst.Port())
				mu.Lock()
				stamps[f.Src.Addr()] = append(stamps[f.Src.Addr()], ts)
				mu.Unlock()
			}
			w.Flush()
		}
	}()
	// fail2ban reads the file from its end when it starts: wait for it.
	time.Sleep(3 * time.Second)

	conn, err := nftables.New(nftables.WithNetNSFd(srv.FD()), nftables.AsLasting())
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	banned := func(a netip.Addr) bool {
		els, err := conn.GetSetElements(set)
		if err != nil {
			return false
		}
		for _, e := range els {
			if b, ok := netip.AddrFromSlice(e.Key); ok && b == a {
				return true
			}
		}
		return false
	}
	var lat []time.Duration
	for i := range rounds {
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i)})
		if err := cli.AddAddr(lk.ADev, netip.PrefixFrom(src, 24)); err != nil {
			return err
		}
		// 12 probes, then wait for the ban (fail2ban acts on the 12th
		// line; more probes would only add lines).
		for port := 3000; port < 3012; port++ {
			cli.Do(func() error {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 200 * time.Millisecond}
				c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(lk.B4, uint16(port)).String())
				if err == nil {
					c.Close()
				}
				return nil
			})
		}
		deadline := time.Now().Add(20 * time.Second)
		for !banned(src) {
			if time.Now().After(deadline) {
				return fmt.Errorf("fail2ban: %s not banned 20 s after 12 probes (see its log in %s)", src, dir)
			}
			time.Sleep(time.Millisecond)
		}
		end := time.Now()
		mu.Lock()
		ts := stamps[src]
		mu.Unlock()
		if len(ts) < 12 {
			return fmt.Errorf("fail2ban: %d probes of %s logged", len(ts), src)
		}
		lat = append(lat, end.Sub(ts[11]))
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	fmt.Printf("fail2ban %s (polling backend, maxretry 12): %d scans, 12th probe (kernel receive) to ban in the kernel: min %v, median %v, p90 %v, max %v\n",
		version(server), len(lat), lat[0].Round(time.Millisecond), pct(0.5).Round(time.Millisecond), pct(0.9).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}

func version(server string) string {
	out, err := exec.Command(server, "-V").Output()
	if err != nil {
		return "?"
	}
	return string(slices.DeleteFunc([]byte(string(out)), func(b byte) bool { return b == '\n' }))
}

// f2bTable makes table inet f2bbench in the namespace: the set fail2ban's
// action fills, a drop rule for it, and the log rule of every SYN.
func f2bTable(nsfd int, group uint16) (*nftables.Set, error) {
	c, err := nftables.New(nftables.WithNetNSFd(nsfd), nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	t := c.AddTable(&nftables.Table{Name: "f2bbench", Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	s := &nftables.Set{Table: t, Name: "f2b", KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(s, nil); err != nil {
		return nil, err
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x16}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Group: group, Snaplen: 128},
	}})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("f2bbench table: %w", err)
	}
	return s, nil
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"portolan/internal/netlab"
)

// silentNet is routed from the scanner to the target, which owns none of
// it and does not forward: probes to it vanish without an answer.
var silentNet = netip.MustParsePrefix("198.19.0.0/16")

// testbed is the scanner and target namespaces and what the target runs.
type testbed struct {
	lab              *netlab.Lab
	scanner, target  *netlab.Host
	link             *netlab.Link
	open, dropped    []uint16 // sorted
	openSet, dropSet map[uint16]bool
	listeners        []net.Listener
	wg               sync.WaitGroup
	filterOn         filterMode
}

// pickPorts draws nOpen open and nDrop dropped ports from 1-65535 with a
// fixed seed, disjoint. 22, 80 and 443 are always open.
func pickPorts(seed uint64, nOpen, nDrop int) (open, dropped []uint16) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	taken := map[uint16]bool{}
	draw := func(n int, pre ...uint16) []uint16 {
		var out []uint16
		for _, p := range pre {
			if len(out) < n && !taken[p] {
				taken[p] = true
				out = append(out, p)
			}
		}
		for len(out) < n {
			p := uint16(1 + r.IntN(65535))
			if !taken[p] {
				taken[p] = true
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return out
	}
	open = draw(nOpen, 22, 80, 443)
	dropped = draw(nDrop)
	return open, dropped
}

func setOf(ports []uint16) map[uint16]bool {
	m := make(map[uint16]bool, len(ports))
	for _, p := range ports {
		m[p] = true
	}
	return m
}

// newTestbed builds the network: scanner (198.18.0.1, fd00::1) and target
// (198.18.0.2, fd00::2) joined by a veth pair with pinned neighbours, no
// default route; the target listens on the open ports (dual stack), every
// other port answers RST.
func newTestbed(open, dropped []uint16) (tb *testbed, err error) {
	lab, err := netlab.New()
	if err != nil {
		return nil, err
	}
	tb = &testbed{lab: lab, open: open, dropped: dropped, openSet: setOf(open), dropSet: setOf(dropped)}
	defer func() {
		if err != nil {
			tb.Close()
			tb = nil
		}
	}()
	if tb.scanner, err = lab.AddHost("scanner"); err != nil {
		return tb, err
	}
	if tb.target, err = lab.AddHost("target"); err != nil {
		return tb, err
	}
	if tb.link, err = lab.Link(tb.scanner, tb.target); err != nil {
		return tb, err
	}
	if err = tb.link.PinNeighbors(); err != nil {
		return tb, err
	}
	// A real server's accept queue is not what is measured here.
	for k, v := range map[string]string{"net.core.somaxconn": "65535", "net.ipv4.tcp_max_syn_backlog": "65535"} {
		if err = tb.target.SetSysctl(k, v); err != nil {
			return tb, err
		}
	}
	if err = tb.scanner.AddRoute(silentNet, tb.link.B4); err != nil {
		return tb, err
	}
	for _, p := range open {
		ln, err := tb.target.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			return tb, fmt.Errorf("listen on target port %d: %w", p, err)
		}
		tb.listeners = append(tb.listeners, ln)
		tb.wg.Add(1)
		go func() {
			defer tb.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				c.Close()
			}
		}()
	}
	return tb, nil
}

// setFilter sets the target's firewall: none, dropping the dropped ports
// silently, or dropping everything but the open ports (pings too). nft is
// fine here: this is a benchmark, not product code.
func (tb *testbed) setFilter(ctx context.Context, mode filterMode) error {
	if mode == tb.filterOn {
		return nil
	}
	script := ""
	if tb.filterOn != filterNone {
		script = "delete table inet scanbench\n"
	}
	join := func(ports []uint16) string {
		ps := make([]string, len(ports))
		for i, p := range ports {
			ps[i] = strconv.Itoa(int(p))
		}
		return strings.Join(ps, ", ")
	}
	switch mode {
	case filterDropped:
		script += "table inet scanbench {\n chain input { type filter hook input priority 0; policy accept;\n  tcp dport { " +
			join(tb.dropped) + " } drop\n }\n}\n"
	case filterFirewall:
		script += "table inet scanbench {\n chain input { type filter hook input priority 0; policy drop;\n" +
			"  iif lo accept\n  ct state established,related accept\n" +
			"  icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n" +
			"  tcp dport { " + join(tb.open) + " } accept\n }\n}\n"
	}
	cmd := tb.target.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft in target (filter %d): %w: %s", mode, err, strings.TrimSpace(stderr.String()))
	}
	tb.filterOn = mode
	return nil
}

// Close stops the listeners and removes the namespaces.
func (tb *testbed) Close() error {
	for _, ln := range tb.listeners {
		ln.Close()
	}
	tb.wg.Wait()
	return tb.lab.Close()
}

// tick sends a small UDP datagram from the target to the scanner every
// 50 ms until ctx is done. masscan's receive thread only notices its end
// of scan when a packet arrives: on a link that falls silent after the
// scan it never exits (the rig's ticker.py does the same).
func (tb *testbed) tick(ctx context.Context) {
	c, err := tb.target.DialContext(ctx, "udp", netip.AddrPortFrom(tb.link.A4, 9).String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "scan-bench: ticker:", err)
		return
	}
	defer c.Close()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Write([]byte("tick"))
		}
	}
}

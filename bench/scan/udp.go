package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// udpOpen are the UDP ports the target answers in the UDP scenarios: on
// both portolan's and nmap's top 100 lists, each served by a responder that
// answers every datagram (any UDP answer is "open" to both tools).
var udpOpen = []uint16{53, 111, 123, 161, 500, 1900, 5060, 5353}

// udpTool is one UDP scanner command line.
type udpTool struct {
	name string
	args func(addr netip.Addr, out string, run int) []string
	// parse returns each listed port's state, and the count of ports
	// by state that the output collapses (nmap's extraports).
	parse func(out string, addr netip.Addr) (map[uint16]string, map[string]int, error)
}

func udpTools(portolan string) []udpTool {
	return []udpTool{
		{name: "portolan-sU", parse: parseUDPJSONL,
			args: func(a netip.Addr, out string, run int) []string {
				return []string{portolan, "scan", a.String(), "-sU", "--top-ports", "100", "--no-store",
					"--format", "jsonl", "--seed", strconv.Itoa(run), "-o", out}
			}},
		{name: "nmap-sU", parse: parseUDPNmapXML,
			args: func(a netip.Addr, out string, _ int) []string {
				argv := []string{"nmap", "-sU", "--top-ports", "100", "-n", "-Pn"}
				if a.Is6() {
					argv = append(argv, "-6")
				}
				return append(argv, "-oX", out, a.String())
			}},
	}
}

// runUDP is the -udp benchmark: portolan -sU --top-ports 100 against nmap
// -sU --top-ports 100, the same target, in the same run, the target's ICMP
// rate limits at Linux's defaults (one port unreachable a second after a
// burst of 6, per destination).
func runUDP(ctx context.Context, c config, tb *testbed) error {
	for _, a := range []netip.Addr{tb.link.B4, tb.link.B6} {
		for _, p := range udpOpen {
			pc, err := tb.target.ListenPacket("udp", netip.AddrPortFrom(a, p).String())
			if err != nil {
				return fmt.Errorf("udp responder on %s port %d: %w", a, p, err)
			}
			defer pc.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo([]byte("portolan bench udp service\n"), from)
				}
			}()
		}
	}
	for _, k := range []string{"net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit"} {
		if err := tb.target.SetSysctl(k, "1000"); err != nil { // the kernel's default, whatever the host has
			return err
		}
	}
	env := describeEnv(ctx, tb, c)
	fmt.Print(env)
	fmt.Printf("target: UDP services on %v (v4 and v6), every other port closed; ICMP rate limit 1 s per destination (default); outputs in %s\n\n", udpOpen, c.outDir)

	type udpRow struct {
		tool, fam string
		run       int
		m         measured
		states    map[uint16]string
		extra     map[string]int
		err       error
	}
	var rows []udpRow
	ts := slices.DeleteFunc(udpTools(c.portolan), func(t udpTool) bool { return !picked(c.only, t.name) })
	for r := 1; r <= c.runs && ctx.Err() == nil; r++ {
		for _, a := range []netip.Addr{tb.link.B4, tb.link.B6} {
			fam := "v4"
			if a.Is6() {
				fam = "v6"
			}
			if !picked(c.scenarios, "udp-"+fam) {
				continue
			}
			for i := range ts {
				t := ts[(i+r-1)%len(ts)]
				if ctx.Err() != nil {
					break
				}
				base := filepath.Join(c.outDir, fmt.Sprintf("%s.udp-%s.%d", t.name, fam, r))
				out := base + ".out"
				os.Remove(out)
				rw := udpRow{tool: t.name, fam: fam, run: r}
				rw.m = measure(ctx, tb.scanner, c.limit, t.args(a, out, r), base+".stdout", 0)
				rw.states, rw.extra, rw.err = t.parse(out, a)
				rows = append(rows, rw)
				counts := map[string]int{}
				for st, n := range rw.extra {
					counts[st] += n
				}
				found := 0
				for p, st := range rw.states {
					counts[st]++
					if st == "open" && slices.Contains(udpOpen, p) {
						found++
					}
				}
				line := fmt.Sprintf("run %d udp-%s %-12s %7.2fs  cpu %.2f+%.2fs  open found %d/%d  states %v  load %.1f",
					r, fam, t.name, rw.m.wall.Seconds(), rw.m.user.Seconds(), rw.m.sys.Seconds(), found, len(udpOpen), counts, load1())
				if rw.m.timedOut {
					line += "  TIMED OUT"
				}
				if rw.m.err != nil {
					line += "  ERROR " + rw.m.err.Error()
				}
				if rw.err != nil {
					line += "  PARSE " + rw.err.Error()
				}
				fmt.Println(line)
			}
		}
	}
	// Ratios within a run and family: nmap's wall over portolan's.
	var md strings.Builder
	md.WriteString(env + "\n| run | family | portolan -sU s | nmap -sU s | nmap / portolan | open found (portolan, nmap) | closed reported closed, of 92 (portolan, nmap) |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, p := range rows {
		if p.tool != "portolan-sU" {
			continue
		}
		for _, n := range rows {
			if n.tool == "nmap-sU" && n.run == p.run && n.fam == p.fam {
				ratio := n.m.wall.Seconds() / p.m.wall.Seconds()
				fmt.Printf("run %d udp-%s: nmap -sU / portolan -sU = %.2f (%.1f s / %.1f s)\n", p.run, p.fam, ratio, n.m.wall.Seconds(), p.m.wall.Seconds())
				fmt.Fprintf(&md, "| %d | %s | %.1f | %.1f | %.2f | %d, %d | %d, %d |\n", p.run, p.fam, p.m.wall.Seconds(), n.m.wall.Seconds(), ratio,
					openFound(p.states), openFound(n.states), countState(p.states, p.extra, "closed"), countState(n.states, n.extra, "closed"))
			}
		}
	}
	if err := os.WriteFile(filepath.Join(c.outDir, "results-udp.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nmarkdown: %s\n", filepath.Join(c.outDir, "results-udp.md"))
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return nil
}

// countState counts the ports in state st, collapsed ones included.
func countState(states map[uint16]string, extra map[string]int, st string) int {
	n := extra[st]
	for _, s := range states {
		if s == st {
			n++
		}
	}
	return n
}

func openFound(states map[uint16]string) int {
	n := 0
	for _, p := range udpOpen {
		if states[p] == "open" {
			n++
		}
	}
	return n
}

// parseUDPJSONL reads portolan's JSON Lines for the UDP ports of addr.
func parseUDPJSONL(out string, addr netip.Addr) (map[uint16]string, map[string]int, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, nil, err
	}
	states := map[uint16]string{}
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var r scan.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, nil, fmt.Errorf("parse %s:%d: %w", out, n+1, err)
		}
		if r.Addr == addr && r.Proto == portspec.UDP {
			states[uint16(r.Port)] = r.State.String()
		}
	}
	return states, nil, nil
}

// parseUDPNmapXML reads nmap's -oX for UDP ports, and the ports it
// collapsed into <extraports> by state.
func parseUDPNmapXML(out string, _ netip.Addr) (map[uint16]string, map[string]int, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, nil, err
	}
	var r nmapRun
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", out, err)
	}
	if len(r.Hosts) == 0 {
		return nil, nil, errors.New("no host in nmap's output")
	}
	states, extra := map[uint16]string{}, map[string]int{}
	for _, h := range r.Hosts {
		for _, e := range h.Ports.Extra {
			extra[e.State] += e.Count
		}
		for _, p := range h.Ports.Ports {
			if p.Proto == "udp" {
				states[uint16(p.ID)] = p.State.State
			}
		}
	}
	return states, extra, nil
}

package main

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// scenario is one target setup every tool scans.
type scenario struct {
	name   string
	addr   netip.Addr
	filter filterMode
	ports  string // the -p spec; empty means all (-p-)
}

// filterMode is what the target's firewall does.
type filterMode uint8

const (
	filterNone     filterMode = iota
	filterDropped             // drops the dropped ports
	filterFirewall            // drops everything but the open ports, pings included
)

// portArgs is -p with the scenario's ports.
func (sc scenario) portArgs() []string {
	if sc.ports == "" {
		return []string{"-p-"}
	}
	return []string{"-p", sc.ports}
}

// discovery reports whether the tools keep their default host discovery:
// behind a firewall that is what is measured (-Pn elsewhere, for nmap).
func (sc scenario) discovery() bool { return sc.filter == filterFirewall }

// tool is one scanner command line and the reader of its output.
type tool struct {
	name string
	// args returns the command line; out is the file the results go to.
	// Stdout goes to out+".stdout".
	args func(sc scenario, out string, run int) []string
	// parse returns the open ports found and how many ports it reported
	// filtered, -1 if the format does not say.
	parse func(out string, addr netip.Addr) (open map[uint16]bool, filtered int, err error)
}

// tools are the scanners run; lk is the test network's link (masscan
// needs the interface and the next hop's MAC).
func tools(portolan, naabu string, lk *netlab.Link) []tool {
	nmap := func(name, typ string, extra ...string) tool {
		return tool{name: name, parse: parseNmapXML,
			args: func(sc scenario, out string, _ int) []string {
				a := []string{"nmap", typ, "-n"}
				if !sc.discovery() {
					a = append(a, "-Pn")
				}
				a = append(a, sc.portArgs()...)
				a = append(a, extra...)
				if sc.addr.Is6() {
					a = append(a, "-6")
				}
				return append(a, "-oX", out, sc.addr.String())
			}}
	}
	ts := []tool{
		// The connect rows say -sT: as root (here) the default is -sS.
		{name: "portolan", parse: parseJSONL,
			args: func(sc scenario, out string, run int) []string {
				return append([]string{portolan, "scan", "-sT", sc.addr.String(), "--no-store", "--format", "jsonl",
					"--seed", strconv.Itoa(run), "-o", out}, sc.portArgs()...)
			}},
		{name: "portolan-list", parse: parseHostPort,
			args: func(sc scenario, out string, run int) []string {
				return append([]string{portolan, "scan", "-sT", sc.addr.String(), "--no-store", "--format", "list",
					"--seed", strconv.Itoa(run), "-o", out}, sc.portArgs()...)
			}},
		// The default: every result recorded in the embedded SQLite store,
		// one file that every run of a scenario adds to, as a user's default
		// store does.
		{name: "portolan-stored", parse: parseJSONL,
			args: func(sc scenario, out string, run int) []string {
				db := filepath.Join(filepath.Dir(out), "portolan-stored."+sc.name+".db")
				return append([]string{portolan, "scan", "-sT", sc.addr.String(), "--db", db, "--format", "jsonl",
					"--seed", strconv.Itoa(run), "-o", out}, sc.portArgs()...)
			}},
		// A first scan: a new store each run (the schema made, the file
		// turned to WAL, as the sweep starts).
		{name: "portolan-stored-new", parse: parseJSONL,
			args: func(sc scenario, out string, run int) []string {
				return append([]string{portolan, "scan", "-sT", sc.addr.String(), "--db", out + ".db", "--format", "jsonl",
					"--seed", strconv.Itoa(run), "-o", out}, sc.portArgs()...)
			}},
		{name: "portolan-syn", parse: parseJSONL,
			args: func(sc scenario, out string, run int) []string {
				return append([]string{portolan, "scan", "-sS", sc.addr.String(), "--no-store", "--format", "jsonl",
					"--seed", strconv.Itoa(run), "-o", out}, sc.portArgs()...)
			}},
		nmap("nmap-T4", "-sT", "-T4"),
		nmap("nmap-minrate5000", "-sT", "--min-rate", "5000"),
		nmap("nmap-sS-T4", "-sS", "-T4"),
		nmap("nmap-sS-minrate10000", "-sS", "--min-rate", "10000"),
		masscan("masscan-100k", 100_000, lk),
		masscan("masscan-1M", 1_000_000, lk),
	}
	if naabu != "" {
		ts = append(ts, tool{name: "naabu-connect", parse: parseHostPort,
			args: func(sc scenario, out string, _ int) []string {
				ports := sc.ports
				if ports == "" {
					ports = "-"
				}
				a := []string{naabu, "-host", sc.addr.String(), "-p", ports, "-s", "c", "-rate", "10000", "-c", "100",
					"-Pn", "-duc", "-silent", "-no-stdin", "-o", out}
				if sc.addr.Is6() {
					a = append(a, "-iv", "6")
				}
				return a
			}})
	}
	return ts
}

// masscan is masscan at a fixed rate, IPv4 only here (its IPv6 needs a
// source address and router set up by hand), with --wait 1 as in the rig
// of ../shared/bench/scan. Its default host discovery is none.
func masscan(name string, rate int, lk *netlab.Link) tool {
	return tool{name: name, parse: parseMasscanList,
		args: func(sc scenario, out string, _ int) []string {
			if sc.addr.Is6() || sc.discovery() {
				return nil
			}
			ports := sc.ports
			if ports == "" {
				ports = "1-65535"
			}
			return []string{"masscan", sc.addr.String(), "-p" + ports, "--rate", strconv.Itoa(rate), "--wait", "1",
				"--interface", lk.ADev, "--router-mac", lk.BMAC.String(), "-oL", out}
		}}
}

// parseMasscanList reads masscan -oL: "open tcp PORT ADDR TIME" lines.
func parseMasscanList(out string, addr netip.Addr) (map[uint16]bool, int, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, 0, err
	}
	open := map[uint16]bool{}
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 4 {
			return nil, 0, fmt.Errorf("parse %s:%d: %q is not a masscan -oL line", out, n+1, line)
		}
		p, err := strconv.ParseUint(f[2], 10, 16)
		a, aerr := netip.ParseAddr(f[3])
		if err != nil || aerr != nil {
			return nil, 0, fmt.Errorf("parse %s:%d: %q is not a masscan -oL line", out, n+1, line)
		}
		if f[0] == "open" && f[1] == "tcp" && a == addr {
			open[uint16(p)] = true
		}
	}
	return open, -1, nil
}

// nmapRun is the part of nmap's -oX output the benchmark reads.
type nmapRun struct {
	Hosts []struct {
		Ports struct {
			Extra []struct {
				State string `xml:"state,attr"`
				Count int    `xml:"count,attr"`
			} `xml:"extraports"`
			Ports []struct {
				Proto string `xml:"protocol,attr"`
				ID    int    `xml:"portid,attr"`
				State struct {
					State string `xml:"state,attr"`
				} `xml:"state"`
			} `xml:"port"`
		} `xml:"ports"`
	} `xml:"host"`
}

func parseNmapXML(out string, _ netip.Addr) (map[uint16]bool, int, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, 0, err
	}
	var r nmapRun
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, 0, fmt.Errorf("parse %s: %w", out, err)
	}
	open, filtered := map[uint16]bool{}, 0
	for _, h := range r.Hosts {
		for _, e := range h.Ports.Extra {
			if e.State == "filtered" {
				filtered += e.Count
			}
		}
		for _, p := range h.Ports.Ports {
			switch {
			case p.Proto != "tcp":
			case p.State.State == "open":
				open[uint16(p.ID)] = true
			case p.State.State == "filtered":
				filtered++
			}
		}
	}
	return open, filtered, nil
}

// parseJSONL reads portolan's JSON Lines: one object per port.
func parseJSONL(out string, addr netip.Addr) (map[uint16]bool, int, error) {
	f, err := os.Open(out)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	open, filtered := map[uint16]bool{}, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r scan.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, 0, fmt.Errorf("parse %s:%d: %w", out, n, err)
		}
		if r.Addr != addr || r.Proto != portspec.TCP {
			continue
		}
		switch r.State {
		case scan.Open:
			open[uint16(r.Port)] = true
		case scan.Filtered:
			filtered++
		}
	}
	return open, filtered, sc.Err()
}

// parseHostPort reads "addr:port" lines (portolan --format list, naabu).
func parseHostPort(out string, addr netip.Addr) (map[uint16]bool, int, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, 0, err
	}
	open := map[uint16]bool{}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(line)
		if err != nil {
			// naabu writes bare IPv6 addresses as "fd00::2:22".
			i := strings.LastIndexByte(line, ':')
			a, err1 := netip.ParseAddr(line[:max(i, 0)])
			p, err2 := strconv.ParseUint(line[i+1:], 10, 16)
			if i < 0 || err1 != nil || err2 != nil {
				return nil, 0, fmt.Errorf("parse %s:%d: %q is not addr:port", out, n+1, line)
			}
			ap = netip.AddrPortFrom(a, uint16(p))
		}
		if ap.Addr() == addr {
			open[ap.Port()] = true
		}
	}
	return open, -1, nil
}

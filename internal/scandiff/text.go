package scandiff

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"portolan/internal/scan"
)

// Describe is how a port reads in a diff: "open ssh OpenSSH 9.2p1", "closed",
// "-" when the scan has no result for it.
func (p Port) Describe() string {
	if p.State == scan.Unknown {
		return "-"
	}
	s := p.State.String()
	if p.State == scan.Open || p.State == scan.OpenFiltered {
		if p.Service != "" {
			s += " " + p.Service
		}
		if v := p.Version.String(); v != "" {
			s += " " + v
		}
	}
	return s
}

// Text describes what changed for the port, in a line.
func (c PortChange) Text() string {
	switch c.Kind {
	case PortService:
		var parts []string
		for _, f := range c.Fields {
			switch f {
			case "service":
				parts = append(parts, fmt.Sprintf("service %s -> %s", orDash(c.A.Service), orDash(c.B.Service)))
			case "version":
				parts = append(parts, fmt.Sprintf("version %s -> %s", orDash(c.A.Version.String()), orDash(c.B.Version.String())))
			case "banner":
				parts = append(parts, fmt.Sprintf("banner %q -> %q", c.A.Banner, c.B.Banner))
			}
		}
		return strings.Join(parts, "; ")
	}
	return c.A.Describe() + " -> " + c.B.Describe()
}

// Text describes the host change in a line.
func (h HostChange) Text() string {
	switch h.Kind {
	case HostAppeared:
		return fmt.Sprintf("appeared, %d open", h.Open)
	case HostVanished:
		return fmt.Sprintf("vanished, %d were open", h.Open)
	}
	return fmt.Sprintf("not shown: %s -> %s", h.A, h.B)
}

// String is the counts as nmap's "Not shown" line has them.
func (h Hidden) String() string {
	return fmt.Sprintf("%d closed, %d filtered", h.Closed, h.Filtered)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mark is the sign a change gets in the text form: + for new, - for gone,
// ~ for changed.
func mark(k Kind) string {
	switch k {
	case HostAppeared, PortAdded:
		return "+"
	case HostVanished, PortRemoved:
		return "-"
	}
	return "~"
}

// WriteText writes d as plain text for a mail or a log, a host at a time:
//
//	scan 17 (2026-12-07 10:00:00 UTC, 198.18.0.0/24) -> scan 18 (...)
//	+ 198.18.0.3  appeared, 1 open
//	  + 80/tcp  - -> open http
//	~ 198.18.0.1
//	  - 80/tcp  open http -> closed
func WriteText(w io.Writer, d *Diff) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "scan %s -> scan %s\n", refText(d.A), refText(d.B))
	if !d.Changed() {
		bw.WriteString("no changes\n")
		return bw.Flush()
	}
	hosts := map[netip.Addr]HostChange{}
	for _, h := range d.Hosts {
		hosts[h.Addr] = h
	}
	printed := map[netip.Addr]bool{}
	header := func(a netip.Addr) {
		if printed[a] {
			return
		}
		printed[a] = true
		if h, ok := hosts[a]; ok {
			fmt.Fprintf(bw, "%s %s  %s\n", mark(h.Kind), a, h.Text())
		} else {
			fmt.Fprintf(bw, "~ %s\n", a)
		}
	}
	// Hosts and ports come in address order; a host's line goes before its ports.
	i := 0
	for _, p := range d.Ports {
		for i < len(d.Hosts) && d.Hosts[i].Addr.Less(p.Addr) {
			header(d.Hosts[i].Addr)
			i++
		}
		header(p.Addr)
		fmt.Fprintf(bw, "  %s %d/%s  %s\n", mark(p.Kind), p.Port, p.Proto, p.Text())
	}
	for ; i < len(d.Hosts); i++ {
		header(d.Hosts[i].Addr)
	}
	s := d.Summary
	fmt.Fprintf(bw, "%d host(s) appeared, %d vanished, %d with other closed/filtered counts; ports: %d opened, %d no longer open, %d other state changes, %d service changes\n",
		s.HostsAppeared, s.HostsVanished, s.HostsHidden, s.PortsAdded, s.PortsRemoved, s.StateChanges, s.ServiceChange)
	return bw.Flush()
}

func refText(r ScanRef) string {
	s := fmt.Sprint(r.ID)
	if r.Name != "" {
		s = r.Name
	}
	var parts []string
	if !r.Started.IsZero() {
		parts = append(parts, r.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if r.Targets != "" {
		parts = append(parts, r.Targets)
	}
	if r.Ports != "" {
		parts = append(parts, "-p "+r.Ports)
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

package output

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"portolan/internal/scan"
)

// stateColor is the colour of a state in the table: green for open, red
// for closed, yellow for the states where something is in the way.
func stateColor(s scan.State) Color {
	switch s {
	case scan.Open:
		return Green
	case scan.Closed:
		return Red
	case scan.Filtered, scan.OpenFiltered, scan.ClosedFiltered:
		return Yellow
	}
	return ""
}

// maxBannerWidth bounds the banner column so a chatty service does not push
// the table off the screen; the full banner is in every other format.
const maxBannerWidth = 60

// writeScanTable writes, for each host that is up, nmap's "Not shown" line
// for the collapsed states and a table of the other ports; then one line
// for the hosts that are down (as nmap, which lists them only with -v:
// a /24 with two live hosts is two reports, not 256), then a summary line.
func writeScanTable(w io.Writer, meta ScanMeta, sorted []scan.Result, color bool) error {
	bw := bufio.NewWriter(w)
	hosts := groupHosts(sorted, meta.Verbose)
	var down []host
	shown := 0
	for _, h := range hosts {
		if !h.up(meta) && meta.Verbose == 0 {
			down = append(down, h)
			continue
		}
		if shown > 0 {
			bw.WriteByte('\n')
		}
		shown++
		title := "Scan report for " + h.addr.String()
		if name := meta.Names[h.addr]; name != "" {
			title = "Scan report for " + name + " (" + h.addr.String() + ")"
		}
		if !h.up(meta) {
			title += " [host down: " + h.downWhy() + "]"
		}
		fmt.Fprintln(bw, Paint(title, Bold, color))
		if meta.DiscoveryOnly {
			r := h.results[0]
			fmt.Fprintf(bw, "Host is up (%s", r.Reason)
			if r.RTT > 0 {
				fmt.Fprintf(bw, ", %s", formatRTT(r.RTT))
			}
			bw.WriteString(").\n")
			continue
		}
		if len(h.hidden) > 0 {
			var parts []string
			for _, g := range h.hidden {
				parts = append(parts, notShown(g))
			}
			fmt.Fprintf(bw, "Not shown: %s\n", strings.Join(parts, ", "))
		}
		if len(h.shown) == 0 {
			continue
		}
		banners, versions := false, false
		for _, r := range h.shown {
			banners = banners || r.Banner != ""
			versions = versions || meta.version(r).Product != ""
		}
		t := &Table{Header: []string{"PORT", "STATE", "SERVICE", "REASON", "RTT"}, RightAlign: []int{4}}
		if versions {
			t.Header = append(t.Header, "VERSION") // nmap -sV's column
		}
		if banners {
			t.Header = append(t.Header, "BANNER")
		}
		for _, r := range h.shown {
			svc := r.Service
			if svc == "" {
				svc = "unknown" // as nmap says
			}
			row := []string{fmt.Sprintf("%d/%s", r.Port, r.Proto), r.State.String(), svc, r.Reason, formatRTT(r.RTT)}
			if versions {
				row = append(row, printable(meta.version(r).String()))
			}
			if banners {
				row = append(row, truncate(printable(r.Banner), maxBannerWidth))
			}
			t.AddColored(row, []Color{"", stateColor(r.State)})
		}
		if err := t.Write(bw, color); err != nil {
			return err
		}
	}
	if len(down) > 0 {
		if shown > 0 {
			bw.WriteByte('\n')
		}
		fmt.Fprintln(bw, downLine(down))
	}
	if !meta.Start.IsZero() {
		if len(hosts) > 0 {
			bw.WriteByte('\n')
		}
		fmt.Fprintf(bw, "portolan %s: %s\n", doneVerb(meta), doneSummary(meta, hosts))
	}
	return bw.Flush()
}

// maxDownListed is how many down hosts the table names in its one line.
const maxDownListed = 8

// downLine is the table's one line for the hosts that are down: how many,
// why, and the first few addresses.
func downLine(down []host) string {
	var b strings.Builder
	given := 0
	for _, h := range down {
		if h.givenUp {
			given++
		}
	}
	fmt.Fprintf(&b, "Not shown: %s down", plural(len(down), "host"))
	switch given {
	case len(down):
		b.WriteString(" (no answer to their ports or to host discovery; -Pn scans them anyway)")
	case 0:
		b.WriteString(" (no response)")
	}
	b.WriteString(": ")
	for i, h := range down {
		if i == maxDownListed {
			fmt.Fprintf(&b, " and %d more", len(down)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(h.addr.String())
	}
	return b.String()
}

// notShown describes collapsed ports as nmap does:
// "997 closed tcp ports (conn-refused)", with a breakdown when there is more
// than one protocol or reason.
func notShown(g stateGroup) string {
	if len(g.reasons) == 1 {
		rg := g.reasons[0]
		return fmt.Sprintf("%d %s %s ports (%s)", g.count, g.state, rg.proto, reasonOrNone(rg.reason))
	}
	var parts []string
	for _, rg := range g.reasons {
		parts = append(parts, fmt.Sprintf("%d %s/%s", len(rg.ports), reasonOrNone(rg.reason), rg.proto))
	}
	return fmt.Sprintf("%s (%s)", plural(g.count, g.state.String()+" port"), strings.Join(parts, ", "))
}

func reasonOrNone(r string) string {
	if r == "" {
		return "no reason"
	}
	return r
}

// formatRTT writes a round-trip time in milliseconds with three significant
// digits or so: "0.183ms", "12.4ms", "153ms". Zero (no answer) is blank.
func formatRTT(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3fms", ms)
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

// truncate cuts s to n runes, ending in "…" when it cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Package report writes a stored scan as one self-contained HTML page: a
// summary, a host x port grid coloured by state, the services and versions
// found, and what changed since the previous scan of the same targets.
// The page needs nothing but itself: its styles, script and data are
// inline, and it loads nothing from the network.
//
// The data goes into the page as JSON and the script draws only the rows
// on screen (tables are paged, sorted and filtered in the browser), so a
// scan of 10,000 hosts makes a page that opens as fast as one of ten.
package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/scandiff"
	"portolan/internal/store"
)

//go:embed report.css
var css string

//go:embed report.js
var js string

// Input is what a report shows.
type Input struct {
	Scan    store.ScanInfo
	Results iter.Seq2[scan.Result, error] // in the store's order (address, protocol, port)
	// Version says what a result's service is; nil means scan.ParseVersion
	// of its service and banner.
	Version func(scan.Result) scan.Version
	// Diff is the change from the previous scan of the same targets; nil
	// when there is none.
	Diff      *scandiff.Diff
	Generated time.Time // when the report was made; shown in the footer
	Tool      string    // "portolan v1.2.3"
}

// MaxGridPorts bounds the columns of the host x port grid: the ports
// found open (or in another state that is not closed or filtered) on the
// most hosts.
const MaxGridPorts = 120

// maxBanner bounds each banner in the page.
const maxBanner = 300

// page is the JSON the script reads. Short keys: a page of 10,000 hosts
// carries them once per host.
type page struct {
	Title     string     `json:"title"`
	Scan      scanJSON   `json:"scan"`
	Counts    countsJSON `json:"counts"`
	Ports     []string   `json:"ports"` // grid columns: "22/tcp"
	Hosts     [][]any    `json:"hosts"` // [addr, name, up, open, closed, filtered, other, grid]
	Services  [][]any    `json:"services"`
	Diff      *diffJSON  `json:"diff,omitempty"`
	Generated string     `json:"generated"`
	Tool      string     `json:"tool"`
	Truncated int        `json:"truncated"` // ports left out of the grid
}

type scanJSON struct {
	ID       int64  `json:"id"`
	Targets  string `json:"targets"`
	Ports    string `json:"ports"`
	Prober   string `json:"prober"`
	Status   string `json:"status"`
	Started  string `json:"started"`
	Duration string `json:"duration"`
	Command  string `json:"command"`
}

type countsJSON struct {
	Hosts      uint64 `json:"hosts"`
	HostsSeen  int    `json:"hosts_seen"`
	HostsUp    int    `json:"hosts_up"`
	Results    int    `json:"results"`
	Open       int    `json:"open"`
	Closed     int    `json:"closed"`
	Filtered   int    `json:"filtered"`
	Other      int    `json:"other"`
	OpenPorts  int    `json:"open_ports"` // distinct port/proto open somewhere
	WithBanner int    `json:"with_banner"`
}

type diffJSON struct {
	A       int64            `json:"a"`
	AStart  string           `json:"a_started"`
	Summary scandiff.Summary `json:"summary"`
	Rows    [][]string       `json:"rows"` // kind, host, port, before, after
}

// stateCode is a grid cell's letter.
func stateCode(s scan.State) byte {
	switch s {
	case scan.Open:
		return 'o'
	case scan.Closed:
		return 'c'
	case scan.Filtered:
		return 'f'
	case scan.OpenFiltered:
		return 'F'
	case scan.Unfiltered:
		return 'u'
	case scan.ClosedFiltered:
		return 'x'
	}
	return '-'
}

type portKey struct {
	port  portspec.Port
	proto portspec.Proto
}

func (k portKey) String() string { return fmt.Sprintf("%d/%s", k.port, k.proto) }

// host is what the report keeps of one address: counts, its ports in the
// states worth a column, and whichever of closed and filtered it has
// fewer of, listed (the other is its default), so memory stays small even
// for -p- scans.
type host struct {
	addr                          netip.Addr
	open, closed, filtered, other int
	up                            bool
	notable                       map[portKey]scan.State
	minority                      map[portKey]bool
	minorityState, majorityState  scan.State
}

// Write renders in as HTML to w.
func Write(w io.Writer, in Input) error {
	p := page{
		Title: fmt.Sprintf("Scan %d: %s", in.Scan.ID, in.Scan.Targets),
		Scan: scanJSON{ID: in.Scan.ID, Targets: in.Scan.Targets, Ports: in.Scan.Ports, Prober: in.Scan.Prober,
			Status: string(in.Scan.Status), Started: stamp(in.Scan.Started), Duration: in.Scan.Duration().Round(time.Millisecond).String(),
			Command: in.Scan.Command},
		Generated: stamp(in.Generated), Tool: in.Tool, Hosts: [][]any{}, Services: [][]any{},
	}
	version := in.Version
	if version == nil {
		version = func(r scan.Result) scan.Version { return scan.ParseVersion(r.Service, r.Banner) }
	}
	var hosts []*host
	var cur *host
	var closedPorts, filteredPorts []portKey
	columnHosts := map[portKey]int{}
	openPorts := map[portKey]bool{}
	flush := func() {
		if cur == nil {
			return
		}
		cur.majorityState, cur.minorityState = scan.Closed, scan.Filtered
		minor := filteredPorts
		if len(filteredPorts) > len(closedPorts) {
			cur.majorityState, cur.minorityState, minor = scan.Filtered, scan.Closed, closedPorts
		}
		if len(minor) > 0 {
			cur.minority = make(map[portKey]bool, len(minor))
			for _, k := range minor {
				cur.minority[k] = true
			}
		}
		for k := range cur.notable {
			columnHosts[k]++
		}
		hosts = append(hosts, cur)
		closedPorts, filteredPorts = closedPorts[:0], filteredPorts[:0]
	}
	for r, err := range in.Results {
		if err != nil {
			return err
		}
		if cur == nil || r.Addr != cur.addr {
			flush()
			cur = &host{addr: r.Addr}
		}
		p.Counts.Results++
		k := portKey{r.Port, r.Proto}
		switch r.State {
		case scan.Open:
			cur.open++
			p.Counts.Open++
			openPorts[k] = true
		case scan.Closed:
			cur.closed++
			p.Counts.Closed++
			closedPorts = append(closedPorts, k)
		case scan.Filtered:
			cur.filtered++
			p.Counts.Filtered++
			filteredPorts = append(filteredPorts, k)
		default:
			cur.other++
			p.Counts.Other++
		}
		if r.State == scan.Open || r.State == scan.Closed || r.State == scan.Unfiltered {
			cur.up = true
		}
		if r.State != scan.Closed && r.State != scan.Filtered {
			if cur.notable == nil {
				cur.notable = map[portKey]scan.State{}
			}
			cur.notable[k] = r.State
			v := version(r)
			banner := r.Banner
			if len(banner) > maxBanner {
				banner = banner[:maxBanner] + "…"
			}
			if banner != "" {
				p.Counts.WithBanner++
			}
			p.Services = append(p.Services, []any{r.Addr.String(), int(r.Port), r.Proto.String(), r.State.String(), r.Service, v.String(), banner})
		}
	}
	flush()

	// Columns: the ports in a notable state on the most hosts, in port order.
	cols := make([]portKey, 0, len(columnHosts))
	for k := range columnHosts {
		cols = append(cols, k)
	}
	slices.SortFunc(cols, func(a, b portKey) int {
		if c := columnHosts[b] - columnHosts[a]; c != 0 {
			return c
		}
		return comparePortKey(a, b)
	})
	if len(cols) > MaxGridPorts {
		p.Truncated = len(cols) - MaxGridPorts
		cols = cols[:MaxGridPorts]
	}
	slices.SortFunc(cols, comparePortKey)
	for _, k := range cols {
		p.Ports = append(p.Ports, k.String())
	}
	names := hostNames(in.Scan)
	grid := make([]byte, len(cols))
	for _, h := range hosts {
		for i, k := range cols {
			switch {
			case h.notable[k] != scan.Unknown:
				grid[i] = stateCode(h.notable[k])
			case h.minority[k]:
				grid[i] = stateCode(h.minorityState)
			case in.Scan.PortSet != nil && !in.Scan.PortSet.Has(k.proto, k.port):
				grid[i] = '-'
			case h.closed+h.filtered == 0:
				grid[i] = '-'
			default:
				grid[i] = stateCode(h.majorityState)
			}
		}
		if h.up {
			p.Counts.HostsUp++
		}
		p.Hosts = append(p.Hosts, []any{h.addr.String(), names[h.addr], h.up, h.open, h.closed, h.filtered, h.other, string(grid)})
	}
	p.Counts.Hosts = in.Scan.Hosts
	p.Counts.HostsSeen = len(hosts)
	p.Counts.OpenPorts = len(openPorts)
	if in.Diff != nil {
		p.Diff = diffRows(in.Diff)
	}

	data, err := json.Marshal(p) // escapes <, > and &: safe inside <script>
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	// No network: a policy that allows only what is inline.
	b.WriteString("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n")
	fmt.Fprintf(&b, "<title>%s</title>\n<style>\n%s</style>\n</head>\n", html.EscapeString(p.Title), css)
	b.WriteString("<body>\n<main id=\"app\"><noscript>This report needs JavaScript to draw its tables.</noscript></main>\n")
	b.WriteString("<script id=\"data\" type=\"application/json\">")
	b.Write(data)
	b.WriteString("</script>\n<script>\n")
	b.WriteString(js)
	b.WriteString("</script>\n</body>\n</html>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func comparePortKey(a, b portKey) int {
	if a.proto != b.proto {
		return strings.Compare(a.proto.String(), b.proto.String())
	}
	return int(a.port) - int(b.port)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// hostNames are the names targets were given as, from the scan's options.
func hostNames(si store.ScanInfo) map[netip.Addr]string {
	var o struct {
		Names map[netip.Addr]string `json:"names"`
	}
	if len(si.Options) > 0 {
		_ = json.Unmarshal(si.Options, &o) // names are a nicety; a scan without them still reports
	}
	return o.Names
}

func diffRows(d *scandiff.Diff) *diffJSON {
	out := &diffJSON{A: d.A.ID, AStart: stamp(d.A.Started), Summary: d.Summary, Rows: [][]string{}}
	for _, h := range d.Hosts {
		out.Rows = append(out.Rows, []string{string(h.Kind), h.Addr.String(), "", "", h.Text()})
	}
	for _, c := range d.Ports {
		before, after := c.A.Describe(), c.B.Describe()
		if c.Kind == scandiff.PortService {
			before, after = "", c.Text()
		}
		out.Rows = append(out.Rows, []string{string(c.Kind), c.Addr.String(), fmt.Sprintf("%d/%s", c.Port, c.Proto), before, after})
	}
	return out
}

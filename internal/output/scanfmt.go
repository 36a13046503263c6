package output

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// ScanFormat is a way to render scan results.
type ScanFormat string

// The scan formats.
const (
	FormatTable    ScanFormat = "table"    // per host PORT STATE SERVICE REASON RTT, for people
	FormatJSON     ScanFormat = "json"     // one document: the scan and its results
	FormatJSONL    ScanFormat = "jsonl"    // one result per line, streamable
	FormatCSV      ScanFormat = "csv"      // one result per row, streamable
	FormatGrepable ScanFormat = "grepable" // nmap -oG
	FormatList     ScanFormat = "list"     // open ports as host:port, streamable
	FormatXML      ScanFormat = "xml"      // nmap -oX, valid against nmap.dtd
)

// ScanFormats lists the formats in the order help text shows them.
var ScanFormats = []ScanFormat{FormatTable, FormatJSON, FormatJSONL, FormatCSV, FormatGrepable, FormatList, FormatXML}

// ParseScanFormat reads a format name.
func ParseScanFormat(s string) (ScanFormat, error) {
	f := ScanFormat(strings.ToLower(s))
	if slices.Contains(ScanFormats, f) {
		return f, nil
	}
	names := make([]string, len(ScanFormats))
	for i, f := range ScanFormats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown format %q (want %s)", s, strings.Join(names, ", "))
}

// ScanMeta describes the scan behind a set of results, for the formats that
// say more than the results: the table's summary, grepable's comments and
// nmap XML. Zero fields are left out or derived from the results.
type ScanMeta struct {
	ID      int64     `json:"id,omitempty"`      // the store's id; 0 when not stored
	Args    string    `json:"args,omitempty"`    // the command line
	Version string    `json:"version,omitempty"` // portolan's version
	Start   time.Time `json:"start,omitzero"`
	End     time.Time `json:"end,omitzero"` // zero: still running
	// ScanType is nmap's name for the TCP scan: "connect" (the zero value),
	// "syn", ... UDP and SCTP ports are always "udp" and "sctpinit".
	ScanType string `json:"scan_type,omitempty"`
	// Ports are the ports probed on every host. Nil means the ports that
	// appear in the results.
	Ports *portspec.Set `json:"ports,omitempty"`
	// Hosts is the number of addresses scanned; hosts without results count
	// as down. Zero means the hosts in the results.
	Hosts int `json:"hosts,omitempty"`
	// AssumeUp is -Pn (--no-host-down): every host is reported up
	// ("user-set"), as nmap -Pn does, even one that never answered. Without
	// it a host none of whose ports was open or closed is down.
	AssumeUp bool `json:"assume_up,omitempty"`
	// Names are the host names targets were given as, by address: the
	// reports show them as nmap does ("Scan report for NAME (ADDR)").
	Names map[netip.Addr]string `json:"names,omitempty"`
	// DiscoveryOnly is nmap's -sn: the results are hosts (port 0, open
	// when up), not ports.
	DiscoveryOnly bool `json:"discovery_only,omitempty"`
	// Error says why the scan stopped early; empty means it completed.
	Error string `json:"error,omitempty"`
	// ServiceVersion says what a result's service is when the scan knows
	// more than its banner says (an imported nmap -sV scan); nil means
	// scan.ParseVersion of its service and banner.
	ServiceVersion func(scan.Result) scan.Version `json:"-"`
	// Verbose and Debugging are nmap's levels: Verbose shows more ports
	// per state before collapsing them (nmap's rule), both go in the XML.
	Verbose   int `json:"-"`
	Debugging int `json:"-"`
}

// WriteScan renders results in format f. Results may come in any order;
// the batch formats sort them by address, protocol and port. color applies
// to the table only.
func WriteScan(w io.Writer, f ScanFormat, meta ScanMeta, results []scan.Result, color bool) error {
	sorted := sortResults(results)
	var err error
	switch f {
	case FormatTable:
		err = writeScanTable(w, meta, sorted, color)
	case FormatJSON:
		err = WriteJSON(w, struct {
			Scan    ScanMeta      `json:"scan"`
			Hosts   []hostJSON    `json:"hosts"`
			Results []scan.Result `json:"results"`
		}{meta, hostsJSON(meta, sorted), nonNil(sorted)})
	case FormatJSONL, FormatCSV, FormatList:
		var sw *StreamWriter
		if sw, err = NewStreamWriter(w, f); err == nil {
			for _, r := range sorted {
				if err = sw.Write(r); err != nil {
					break
				}
			}
			if err == nil {
				err = sw.Close()
			}
		}
	case FormatGrepable:
		err = writeScanGrepable(w, meta, sorted)
	case FormatXML:
		err = writeScanXML(w, meta, sorted)
	default:
		return fmt.Errorf("write scan: unknown format %q", f)
	}
	if err != nil {
		return fmt.Errorf("write scan as %s: %w", f, err)
	}
	return nil
}

// hostJSON is a host's status in the JSON format: up or down, and why, as
// in nmap XML's <status>.
type hostJSON struct {
	Addr   netip.Addr `json:"addr"`
	Name   string     `json:"name,omitempty"` // as given on the command line
	Status string     `json:"status"`
	Reason string     `json:"reason"`
}

func hostsJSON(meta ScanMeta, sorted []scan.Result) []hostJSON {
	out := []hostJSON{}
	for _, h := range groupHosts(sorted, 0) {
		st := hostStatus(meta, h)
		reason := st.Reason
		if st.State == "down" {
			reason = h.downWhy()
		}
		out = append(out, hostJSON{h.addr, meta.Names[h.addr], st.State, reason})
	}
	return out
}

func nonNil(rs []scan.Result) []scan.Result {
	if rs == nil {
		return []scan.Result{}
	}
	return rs
}

// sortResults returns a sorted copy of rs: by address (IPv4 first), then
// protocol, then port, the order nmap prints.
func sortResults(rs []scan.Result) []scan.Result {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b scan.Result) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// host is the results of one address, sorted, with what the table, grepable
// and XML formats show of them.
type host struct {
	addr    netip.Addr
	results []scan.Result
	shown   []scan.Result // ports listed one by one
	hidden  []stateGroup  // ports collapsed by state, most numerous first
	// answered is whether any port was open or closed: the host itself
	// said something. Filtered ports prove nothing about it.
	answered bool
	// givenUp is whether the scanner judged the host down: neither its
	// ports nor host discovery drew an answer (scan.ReasonHostTimeout).
	givenUp bool
	// silent is whether a port was probed and got no answer at all: with
	// no givenUp, host discovery found the host up, or it was never run
	// (-Pn).
	silent bool
}

// up reports whether h is up: it answered, the scan assumed it (-Pn), or
// its ports are dropped but discovery did not give it up; a host whose
// every port drew an ICMP error only (a router for a host not there) is
// down.
func (h host) up(meta ScanMeta) bool {
	return h.answered || meta.AssumeUp || (h.silent && !h.givenUp)
}

// downWhy says why a host is down, for the table.
func (h host) downWhy() string {
	if h.givenUp {
		return "no answer to its ports or to host discovery"
	}
	return "no response"
}

// stateGroup is the collapsed ports of one state on a host.
type stateGroup struct {
	state   scan.State
	count   int
	reasons []reasonGroup // by protocol, then count, largest first
}

// reasonGroup is the ports of one state, protocol and reason.
type reasonGroup struct {
	proto  portspec.Proto
	reason string
	ports  []portspec.Port
}

// maxShown is how many ports of one state nmap lists before it collapses
// them into a "Not shown" line; each -v level adds as many again.
const maxShown = 25

// groupHosts splits sorted results by address and decides, as nmap does,
// which states are collapsed: any but open (and unknown) with more than
// maxShown ports on the host.
func groupHosts(sorted []scan.Result, verbose int) []host {
	limit := maxShown * (max(verbose, 0) + 1)
	var hosts []host
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].Addr == sorted[i].Addr {
			j++
		}
		h := host{addr: sorted[i].Addr, results: sorted[i:j]}
		counts := map[scan.State]int{}
		for _, r := range h.results {
			counts[r.State]++
			h.answered = h.answered || r.State == scan.Open || r.State == scan.Closed
			h.givenUp = h.givenUp || r.Reason == scan.ReasonHostTimeout
			h.silent = h.silent || r.Reason == scan.ReasonNoResponse
		}
		hide := func(s scan.State) bool { return s != scan.Open && s != scan.Unknown && counts[s] > limit }
		byState := map[scan.State]*stateGroup{}
		for _, r := range h.results {
			if !hide(r.State) {
				h.shown = append(h.shown, r)
				continue
			}
			g := byState[r.State]
			if g == nil {
				g = &stateGroup{state: r.State}
				byState[r.State] = g
			}
			g.count++
			k := slices.IndexFunc(g.reasons, func(rg reasonGroup) bool { return rg.proto == r.Proto && rg.reason == r.Reason })
			if k < 0 {
				g.reasons = append(g.reasons, reasonGroup{proto: r.Proto, reason: r.Reason})
				k = len(g.reasons) - 1
			}
			g.reasons[k].ports = append(g.reasons[k].ports, r.Port)
		}
		for _, g := range byState {
			slices.SortStableFunc(g.reasons, func(a, b reasonGroup) int {
				return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(len(b.ports), len(a.ports)))
			})
			h.hidden = append(h.hidden, *g)
		}
		slices.SortFunc(h.hidden, func(a, b stateGroup) int {
			return cmp.Or(cmp.Compare(b.count, a.count), cmp.Compare(a.state, b.state))
		})
		hosts = append(hosts, h)
		i = j
	}
	return hosts
}

// hostCounts returns how many hosts were scanned and how many are up: a
// host with an open or closed port (any host with results under -Pn); the
// others, and hosts without results, are down.
func hostCounts(meta ScanMeta, hosts []host) (total, up int) {
	for _, h := range hosts {
		if h.up(meta) {
			up++
		}
	}
	return max(meta.Hosts, len(hosts)), up
}

// compactPorts writes sorted ports as ranges: "1-21,23,25-79".
func compactPorts(ports []portspec.Port) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ports[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return b.String()
}

// scannedPorts returns the ports probed per protocol: meta.Ports, or those
// in the results when it is nil.
func scannedPorts(meta ScanMeta, sorted []scan.Result) *portspec.Set {
	if meta.Ports != nil {
		return meta.Ports
	}
	set := &portspec.Set{}
	for _, r := range sorted {
		if slices.Contains(portspec.Protos, r.Proto) {
			set.Add(r.Proto, r.Port)
		}
	}
	return set
}

// printable makes a banner safe for one line of text: printable ASCII and
// UTF-8 letters stay, tab, CR and LF become \t \r \n, backslash doubles,
// other bytes become \xNN, so nothing a service says can move a cursor or
// break a line.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\n':
			b.WriteString(`\n`)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		case c >= 0x80:
			r, n := utf8.DecodeRuneInString(s[i:])
			if n > 1 && strconv.IsPrint(r) {
				b.WriteString(s[i : i+n])
				i += n
				continue
			}
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
		i++
	}
	return b.String()
}

// ctime formats t as nmap does in its comments and summaries:
// "Tue Nov 14 22:13:20 2023".
func ctime(t time.Time) string { return t.Format("Mon Jan _2 15:04:05 2006") }

// plural returns "1 port" or "3 ports".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "ss") {
		return fmt.Sprintf("%d %ses", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// doneVerb says how the scan ended, for the closing lines.
func doneVerb(meta ScanMeta) string {
	if meta.Error != "" || meta.End.IsZero() {
		return "stopped early"
	}
	return "done"
}

// doneSummary is nmap's closing line: "1 IP address (1 host up) scanned in
// 0.05 seconds".
func doneSummary(meta ScanMeta, hosts []host) string {
	total, up := hostCounts(meta, hosts)
	s := fmt.Sprintf("%s (%s up)", plural(total, "IP address"), plural(up, "host"))
	if !meta.Start.IsZero() && !meta.End.IsZero() {
		s += fmt.Sprintf(" scanned in %.2f seconds", meta.End.Sub(meta.Start).Seconds())
	}
	return s
}

// version is what meta knows of r's service.
func (m ScanMeta) version(r scan.Result) scan.Version {
	if m.ServiceVersion != nil {
		return m.ServiceVersion(r)
	}
	return scan.ParseVersion(r.Service, r.Banner)
}

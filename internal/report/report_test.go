package report

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
	"portolan/internal/scandiff"
	"portolan/internal/store"
)

var (
	t0      = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	ports80 = func() *portspec.Set { s, _ := portspec.Parse("1-100"); return s }()
)

// results makes a scan of hosts 198.18.0.1-n, ports 1-100: 22 open with an
// SSH banner on every host, 80 open on every third with an HTTP server,
// 443 on every fifth, 53 filtered on every seventh, the rest closed. old
// is the scan before: host 3 had no 80, host n did not answer.
func results(n int, old bool) []scan.Result {
	var rs []scan.Result
	for i := 1; i <= n; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		for p := portspec.Port(1); p <= 100; p++ {
			r := scan.Result{Addr: a, Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
				Service: registry.PortName(p, portspec.TCP), Time: t0.Add(time.Second)}
			switch {
			case old && i == n:
				r.State, r.Reason = scan.Filtered, scan.ReasonNoResponse
			case p == 22:
				r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "SSH-2.0-OpenSSH_9.2p1 Debian-2"
			case p == 80 && i%3 == 0 && !(old && i == 3):
				r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
			case p == 53 && i%7 == 0:
				r.State, r.Reason = scan.Filtered, scan.ReasonNoResponse
			}
			rs = append(rs, r)
		}
		if i%5 == 0 && !(old && i == n) {
			rs = append(rs, scan.Result{Addr: a, Port: 443, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: "https", Time: t0})
		}
	}
	return rs
}

func seq(rs []scan.Result) func(func(scan.Result, error) bool) {
	return func(yield func(scan.Result, error) bool) {
		for _, r := range rs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// fixture is the report of a scan of n hosts with the diff against the
// scan before it.
func fixture(t testing.TB, n int) Input {
	t.Helper()
	cur, old := results(n, false), results(n, true)
	ports := ports80.Clone()
	ports.Add(portspec.TCP, 443)
	si := store.ScanInfo{ID: 2, Started: t0, Finished: t0.Add(42 * time.Second), Status: store.Done,
		Command: "portolan scan " + targets(n) + " -p 1-100,443", Targets: targets(n),
		Ports: "1-100,443", PortSet: ports, Prober: "connect", Hosts: uint64(n)}
	d, err := scandiff.Compare(context.Background(),
		scandiff.FromResults(scandiff.ScanRef{ID: 1, Started: t0.Add(-24 * time.Hour)}, seq(sorted(old))),
		scandiff.FromResults(scandiff.ScanRef{ID: 2, Started: t0}, seq(sorted(cur))))
	if err != nil {
		t.Fatal(err)
	}
	return Input{Scan: si, Results: seq(sorted(cur)), Diff: d, Generated: t0.Add(time.Hour), Tool: "portolan test"}
}

// sorted puts results in the store's order.
func sorted(rs []scan.Result) []scan.Result {
	out := append([]scan.Result(nil), rs...)
	for i := 1; i < len(out); i++ { // insertion sort: the fixtures are nearly sorted
		for j := i; j > 0 && less(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func less(a, b scan.Result) bool {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c < 0
	}
	return a.Port < b.Port
}

func writeReport(t testing.TB, in Input) (string, string) {
	t.Helper()
	var b strings.Builder
	if err := Write(&b, in); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b.String()
}

// TestWrite checks the page's data and that it refers to nothing outside
// itself.
func TestWrite(t *testing.T) {
	_, html := writeReport(t, fixture(t, 40))
	if m := regexp.MustCompile(`(?i)(src|href)\s*=|url\(|@import|https?://`).FindString(html); m != "" {
		t.Errorf("the page refers to something outside itself: %q", m)
	}
	m := regexp.MustCompile(`<script id="data" type="application/json">(.*?)</script>`).FindStringSubmatch(html)
	if m == nil {
		t.Fatal("no data in the page")
	}
	var p page
	if err := json.Unmarshal([]byte(m[1]), &p); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(p.Ports, ","), "22/tcp,80/tcp,443/tcp"; got != want {
		t.Errorf("grid columns %s; want %s", got, want)
	}
	// Columns are the ports open somewhere (53, only filtered, is not one).
	// Host 21: 22 open, 80 open (every 3rd), 443 closed (every 5th has it).
	if h := p.Hosts[20]; h[0] != "198.18.0.21" || h[7] != "ooc" {
		t.Errorf("host 21 = %v; want 198.18.0.21 with grid ooc", h)
	}
	if p.Counts.HostsUp != 40 || p.Counts.Open != 40+13+8 || p.Counts.OpenPorts != 3 {
		t.Errorf("counts %+v; want 40 hosts up, 61 open, 3 distinct open ports", p.Counts)
	}
	if p.Diff == nil || p.Diff.Summary.PortsAdded != 1+2 || p.Diff.Summary.HostsAppeared != 1 {
		t.Errorf("diff %+v; want 3 ports added (80 on host 3; 22 and 443 on host 40), host 40 appeared", p.Diff)
	}
}

// TestReportInBrowser loads the report in headless chromium: no console
// errors, the open ports where they belong, sorting and filtering work,
// and it looks as the kept screenshot does.
func TestReportInBrowser(t *testing.T) {
	b := newBrowser(t)
	path, _ := writeReport(t, fixture(t, 40))
	b.open(path)
	if c := b.console(); hasError(c) {
		t.Errorf("console errors: %v", c)
	}
	text := b.evalString(`return document.body.innerText`)
	for _, want := range []string{"Scan 2: 198.18.0.1-198.18.0.40", "hosts up", "OpenSSH 9.2p1", "nginx 1.22.1", "port-added"} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	// The grid cell of 198.18.0.3 port 80 is open, and green.
	cell := `const row = [...document.querySelectorAll("#grid-table tbody tr")].find(r => r.cells[0].textContent === "198.18.0.3");
		const col = [...document.querySelectorAll("#grid-table thead th")].findIndex(h => h.textContent === "80/tcp");
		const td = row.cells[col];`
	if got := b.evalString(cell + `return td.className + " " + getComputedStyle(td).backgroundColor`); got != "c s-o rgb(46, 158, 68)" {
		t.Errorf("grid cell 198.18.0.3 80/tcp: %q; want open, green", got)
	}
	img, raw := b.screenshot()
	checkScreenshot(t, "report.png", img, raw, 0.02)

	// Filtering the services for nginx leaves the 13 hosts with port 80 open.
	if got := b.evalString(`const f = document.getElementById("services-filter"); f.value = "nginx";
		f.dispatchEvent(new Event("input")); return document.getElementById("services-pager").textContent`); got != "13 of 61 rows, page 1 of 1" {
		t.Errorf("services filtered for nginx: %q", got)
	}
	// Sorting the grid by open ports, twice: most first.
	if got := b.evalString(`const th = [...document.querySelectorAll("#grid-table thead th")].find(h => h.textContent === "open");
		th.click(); th.click(); return document.querySelector("#grid-table tbody tr").cells[2].textContent`); got != "3" {
		t.Errorf("most open ports on one host after sorting: %s; want 3", got)
	}
	if c := b.console(); hasError(c) {
		t.Errorf("console errors after use: %v", c)
	}
}

// TestReportInBrowserLarge loads the report of 10,000 hosts: it draws one
// page of the grid and pages through the rest.
func TestReportInBrowserLarge(t *testing.T) {
	b := newBrowser(t)
	path, _ := writeReport(t, fixture(t, 10000))
	b.open(path)
	if c := b.console(); hasError(c) {
		t.Errorf("console errors: %v", c)
	}
	if got := b.evalString(`return document.getElementById("grid-pager").textContent`); got != "10000 of 10000 rows, page 1 of 100" {
		t.Errorf("grid pager: %q", got)
	}
	if got := b.evalString(`document.getElementById("grid-next").click();
		return document.querySelectorAll("#grid-table tbody tr").length + " " + document.querySelector("#grid-table tbody tr").cells[0].textContent`); got != "100 198.18.0.101" {
		t.Errorf("second page of the grid: %q; want 100 rows from 198.18.0.101", got)
	}
	if got := b.evalString(`const f = document.getElementById("grid-filter"); f.value = "198.18.39.";
		f.dispatchEvent(new Event("input")); return document.getElementById("grid-pager").textContent`); got != "17 of 10000 rows, page 1 of 1" {
		t.Errorf("grid filtered for 198.18.39.: %q", got)
	}
}

func targets(n int) string {
	return "198.18.0.1-" + netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)}).String()
}

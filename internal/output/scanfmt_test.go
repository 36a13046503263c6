package output

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	t0     = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	hostA  = netip.MustParseAddr("198.18.0.2")
	hostB  = netip.MustParseAddr("fd00::2")
	hostC  = netip.MustParseAddr("198.18.0.10") // sorts after .2: numeric, not text order
	ports1 = func() *portspec.Set {
		s, err := portspec.Parse("T:1-40,U:53")
		if err != nil {
			panic(err)
		}
		return s
	}()
)

// fixture is a scan of three hosts (and one down) over T:1-40,U:53: hostA
// with two open ports (one with a banner), three filtered and the rest
// closed; hostB with one open, 53/udp open|filtered and one closed; hostC
// all filtered. The results come in scrambled order, as a permuted scan
// reports them.
func fixture() (ScanMeta, []scan.Result) {
	meta := ScanMeta{
		ID: 7, Args: "portolan scan 198.18.0.0/29,198.18.0.10,fd00::2 -p T:1-40,U:53 --banner", Version: "v0.1.0",
		Start: t0, End: t0.Add(2345 * time.Millisecond), Ports: ports1, Hosts: 4,
	}
	var rs []scan.Result
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }
	for p := portspec.Port(1); p <= 40; p++ {
		r := scan.Result{Addr: hostA, Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
			RTT: 150 * time.Microsecond, Time: at(int(p))}
		switch p {
		case 22:
			r.State, r.Reason, r.Service = scan.Open, scan.ReasonSynAck, "ssh"
			r.Banner = "SSH-2.0-OpenSSH_9.2p1 Debian-2"
		case 23:
			r.State, r.Reason, r.Service, r.RTT = scan.Open, scan.ReasonSynAck, "telnet", 12345*time.Microsecond
		case 31, 32, 33:
			r.State, r.Reason, r.RTT = scan.Filtered, scan.ReasonNoResponse, 0
		}
		rs = append(rs, r)
		c := scan.Result{Addr: hostC, Port: p, Proto: portspec.TCP, State: scan.Filtered, Reason: scan.ReasonNoResponse, Time: at(int(p))}
		if p > 30 {
			c.Reason = scan.ReasonHostTimeout
		}
		rs = append(rs, c)
	}
	rs = append(rs,
		scan.Result{Addr: hostB, Port: 443, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: "https", RTT: 2 * time.Millisecond, Time: at(5)},
		scan.Result{Addr: hostB, Port: 53, Proto: portspec.UDP, State: scan.OpenFiltered, Reason: scan.ReasonNoResponse, Service: "domain", Time: at(6)},
		scan.Result{Addr: hostB, Port: 25, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused, Service: "smtp", RTT: 1900 * time.Microsecond, Time: at(7)},
	)
	// Scramble deterministically: renderers must sort.
	out := make([]scan.Result, 0, len(rs))
	for i := range rs {
		out = append(out, rs[(i*7919)%len(rs)])
	}
	return meta, out
}

func TestWriteScanGolden(t *testing.T) {
	meta, rs := fixture()
	for _, f := range ScanFormats {
		t.Run(string(f), func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteScan(&buf, f, meta, rs, false); err != nil {
				t.Fatalf("WriteScan(%s) = %v", f, err)
			}
			golden(t, "scanfmt."+string(f), buf.Bytes())
		})
	}
}

func TestWriteScanTableColor(t *testing.T) {
	meta, rs := fixture()
	var buf bytes.Buffer
	if err := WriteScan(&buf, FormatTable, meta, rs, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\x1b[32mopen\x1b[0m", "\x1b[31mclosed\x1b[0m", "\x1b[33mopen|filtered\x1b[0m", "\x1b[1mScan report for 198.18.0.2\x1b[0m"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("coloured table lacks %q:\n%s", want, buf.String())
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestWriteScanEmpty(t *testing.T) {
	meta := ScanMeta{Start: t0, End: t0.Add(time.Second), Hosts: 1, Ports: ports1}
	want := map[ScanFormat]string{
		FormatTable:    "portolan done: 1 IP address (0 hosts up) scanned in 1.00 seconds\n",
		FormatJSONL:    "",
		FormatCSV:      "addr,port,proto,state,reason,rtt_ms,service,banner,time,product,version,extrainfo\n",
		FormatList:     "",
		FormatGrepable: "# portolan unknown scan initiated Sat Mar 14 15:09:26 2026 as: \n# portolan done at Sat Mar 14 15:09:27 2026 -- 1 IP address (0 hosts up) scanned in 1.00 seconds\n",
	}
	for f, w := range want {
		var buf bytes.Buffer
		if err := WriteScan(&buf, f, meta, nil, false); err != nil {
			t.Fatal(err)
		}
		if buf.String() != w {
			t.Errorf("WriteScan(%s, no results) = %q; want %q", f, buf.String(), w)
		}
	}
	var buf bytes.Buffer
	WriteScan(&buf, FormatJSON, meta, nil, false)
	if !strings.Contains(buf.String(), `"results": []`) {
		t.Errorf("JSON of no results = %s; want an empty results array", buf.String())
	}
}

func TestWriteScanJSONRoundTrip(t *testing.T) {
	meta, rs := fixture()
	var buf bytes.Buffer
	if err := WriteScan(&buf, FormatJSON, meta, rs, false); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scan    ScanMeta      `json:"scan"`
		Results []scan.Result `json:"results"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sortResults(rs), doc.Results, cmpAddr); diff != "" {
		t.Errorf("JSON results round trip (-want +got):\n%s", diff)
	}
	if doc.Scan.ID != 7 || !doc.Scan.Ports.Equal(ports1) || !doc.Scan.Start.Equal(t0) {
		t.Errorf("JSON scan = %+v; want id 7, ports %v, start %v", doc.Scan, ports1, t0)
	}
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestStreamWriter(t *testing.T) {
	_, rs := fixture()
	for _, f := range []ScanFormat{FormatJSONL, FormatCSV, FormatList} {
		t.Run(string(f), func(t *testing.T) {
			var buf lockedBuffer
			sw, err := NewStreamWriter(&buf, f)
			if err != nil {
				t.Fatal(err)
			}
			// Results arrive from several goroutines; lines must not interleave.
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < len(rs); i += 4 {
						if err := sw.Write(rs[i]); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := sw.Close(); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			switch f {
			case FormatJSONL:
				if len(lines) != len(rs) {
					t.Fatalf("%d lines; want %d", len(lines), len(rs))
				}
				for _, l := range lines {
					var r scan.Result
					if err := json.Unmarshal([]byte(l), &r); err != nil {
						t.Fatalf("line %q: %v", l, err)
					}
					var keys map[string]any
					json.Unmarshal([]byte(l), &keys)
					for _, k := range []string{"addr", "port", "proto", "state", "reason", "rtt_ms"} {
						if _, ok := keys[k]; !ok {
							t.Fatalf("line %q lacks %q", l, k)
						}
					}
				}
			case FormatCSV:
				if len(lines) != len(rs)+1 || lines[0] != strings.Join(csvHeader, ",") {
					t.Fatalf("%d lines, first %q; want %d with the header first", len(lines), lines[0], len(rs)+1)
				}
			case FormatList:
				got := map[string]bool{}
				for _, l := range lines {
					got[l] = true
				}
				want := map[string]bool{"198.18.0.2:22": true, "198.18.0.2:23": true, "[fd00::2]:443": true}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("list (-want +got):\n%s", diff)
				}
			}
		})
	}
	if _, err := NewStreamWriter(&bytes.Buffer{}, FormatXML); err == nil {
		t.Error("NewStreamWriter(xml) = nil error")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func TestParseScanFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    ScanFormat
		wantErr bool
	}{
		{"table", FormatTable, false},
		{"XML", FormatXML, false},
		{"jsonl", FormatJSONL, false},
		{"grepable", FormatGrepable, false},
		{"yaml", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseScanFormat(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseScanFormat(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCollapseRule(t *testing.T) {
	mk := func(closed int) []scan.Result {
		rs := []scan.Result{{Addr: hostA, Port: 1, Proto: portspec.TCP, State: scan.Open}}
		for i := range closed {
			rs = append(rs, scan.Result{Addr: hostA, Port: portspec.Port(i + 2), Proto: portspec.TCP, State: scan.Closed})
		}
		return rs
	}
	tests := []struct {
		name           string
		closed, verb   int
		shown, ignored int
	}{
		{"25 closed are listed", 25, 0, 26, 0},
		{"26 closed collapse", 26, 0, 1, 26},
		{"-v lists 50", 50, 1, 51, 0},
		{"-v collapses 51", 51, 1, 1, 51},
	}
	for _, tt := range tests {
		h := groupHosts(sortResults(mk(tt.closed)), tt.verb)[0]
		ignored := 0
		for _, g := range h.hidden {
			ignored += g.count
		}
		if len(h.shown) != tt.shown || ignored != tt.ignored {
			t.Errorf("%s: shown %d, collapsed %d; want %d, %d", tt.name, len(h.shown), ignored, tt.shown, tt.ignored)
		}
	}
}

func TestCompactPorts(t *testing.T) {
	tests := []struct {
		in   []portspec.Port
		want string
	}{
		{nil, ""},
		{[]portspec.Port{22}, "22"},
		{[]portspec.Port{1, 2, 3, 5, 7, 8}, "1-3,5,7-8"},
		{[]portspec.Port{0, 65535}, "0,65535"},
	}
	for _, tt := range tests {
		if got := compactPorts(tt.in); got != tt.want {
			t.Errorf("compactPorts(%v) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

var printableCases = []struct{ in, want string }{
	{"SSH-2.0-OpenSSH_9.2", "SSH-2.0-OpenSSH_9.2"},
	{"HTTP/1.1 200 OK\r\n", `HTTP/1.1 200 OK\r\n`},
	{"\x00\x1b[2Jcls\xff", `\x00\x1b[2Jcls\xff`},
	{`C:\path`, `C:\\path`},
	{"café ☕", "café ☕"},
	{"\u202ereversed", `\xe2\x80\xaereversed`}, // a bidi override is not printable
}

func TestPrintable(t *testing.T) {
	for _, tt := range printableCases {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzPrintable(f *testing.F) {
	for _, tt := range printableCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := printable(s)
		for _, r := range p {
			if r < 0x20 || r == 0x7f || r == '\uFFFD' && !strings.ContainsRune(s, '\uFFFD') {
				t.Fatalf("printable(%q) = %q holds %U", s, p, r)
			}
		}
	})
}

// TestWriteScanXMLParses decodes our XML with encoding/xml into nmap's
// shape and checks what an importer would read.
func TestWriteScanXMLParses(t *testing.T) {
	meta, rs := fixture()
	var buf bytes.Buffer
	if err := WriteScan(&buf, FormatXML, meta, rs, false); err != nil {
		t.Fatal(err)
	}
	var run struct {
		Scanner  string        `xml:"scanner,attr"`
		ScanInfo []xmlScanInfo `xml:"scaninfo"`
		Hosts    []xmlHost     `xml:"host"`
		RunStats xmlRunStats   `xml:"runstats"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &run); err != nil {
		t.Fatal(err)
	}
	type port struct {
		Addr, Proto, State, Service string
		Port                        int
	}
	var open []port
	extra := map[string]int{}
	for _, h := range run.Hosts {
		for _, p := range h.Ports.Ports {
			if p.State.State == "open" {
				open = append(open, port{h.Address.Addr, p.Protocol, p.State.State, p.Service.Name, p.PortID})
			}
		}
		for _, e := range h.Ports.Extra {
			extra[h.Address.Addr+" "+e.State] += e.Count
		}
	}
	wantOpen := []port{
		{"198.18.0.2", "tcp", "open", "ssh", 22}, {"198.18.0.2", "tcp", "open", "telnet", 23},
		{"fd00::2", "tcp", "open", "https", 443},
	}
	if diff := cmp.Diff(wantOpen, open); diff != "" {
		t.Errorf("open ports (-want +got):\n%s", diff)
	}
	wantExtra := map[string]int{"198.18.0.2 closed": 35, "198.18.0.10 filtered": 40}
	if diff := cmp.Diff(wantExtra, extra); diff != "" {
		t.Errorf("extraports (-want +got):\n%s", diff)
	}
	// 198.18.0.10 only has silent filtered ports: down, as nmap says of a
	// host that never answered; the fourth address has no results at all.
	if got := run.RunStats.Hosts; got != (xmlHosts{Up: 2, Down: 2, Total: 4}) {
		t.Errorf("runstats hosts = %+v; want 2 up, 2 down, 4 total", got)
	}
	status := map[string]xmlState{}
	for _, h := range run.Hosts {
		status[h.Address.Addr] = h.Status
	}
	wantStatus := map[string]xmlState{
		"198.18.0.2":  {State: "up", Reason: "syn-ack"},
		"198.18.0.10": {State: "down", Reason: "no-response"},
		"fd00::2":     {State: "up", Reason: "syn-ack"},
	}
	if diff := cmp.Diff(wantStatus, status); diff != "" {
		t.Errorf("host status (-want +got):\n%s", diff)
	}
	// Under -Pn every host is up, "user-set", as nmap -Pn reports them.
	meta.AssumeUp = true
	buf.Reset()
	if err := WriteScan(&buf, FormatXML, meta, rs, false); err != nil {
		t.Fatal(err)
	}
	run.Hosts, run.ScanInfo = nil, nil
	if err := xml.Unmarshal(buf.Bytes(), &run); err != nil {
		t.Fatal(err)
	}
	if got := run.RunStats.Hosts; got != (xmlHosts{Up: 3, Down: 1, Total: 4}) {
		t.Errorf("-Pn: runstats hosts = %+v; want 3 up, 1 down, 4 total", got)
	}
	for _, h := range run.Hosts {
		if h.Status != (xmlState{State: "up", Reason: "user-set"}) {
			t.Errorf("-Pn: host %s status = %+v; want up, user-set", h.Address.Addr, h.Status)
		}
	}
	if run.Scanner != "nmap" || len(run.ScanInfo) != 2 || run.ScanInfo[0].NumServices != 40 || run.ScanInfo[1].Services != "53" {
		t.Errorf("scanner %q, scaninfo %+v; want nmap, tcp 40 services and udp 53", run.Scanner, run.ScanInfo)
	}
}

func TestWriteScanXMLBadType(t *testing.T) {
	err := WriteScan(&bytes.Buffer{}, FormatXML, ScanMeta{ScanType: "knock", Ports: ports1}, nil, false)
	if err == nil || !strings.Contains(err.Error(), `"knock"`) {
		t.Errorf("WriteScan(xml, type knock) = %v; want an error naming the type", err)
	}
	// The TCP scan type does not matter to a scan without TCP ports.
	udp, _ := portspec.Parse("U:53")
	if err := WriteScan(&bytes.Buffer{}, FormatXML, ScanMeta{ScanType: "udp", Ports: udp}, nil, false); err != nil {
		t.Errorf("WriteScan(xml, UDP only, type udp) = %v", err)
	}
}

func Example_writeScan() {
	rs := []scan.Result{
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: "ssh", RTT: 95 * time.Microsecond},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 23, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused, RTT: 80 * time.Microsecond},
	}
	WriteScan(os.Stdout, FormatTable, ScanMeta{}, rs, false)
	fmt.Println()
	WriteScan(os.Stdout, FormatGrepable, ScanMeta{}, rs, false)
	// Output:
	// Scan report for 127.0.0.1
	// PORT    STATE   SERVICE  REASON            RTT
	// 22/tcp  open    ssh      syn-ack       0.095ms
	// 23/tcp  closed  unknown  conn-refused  0.080ms
	//
	// Host: 127.0.0.1 ()	Status: Up
	// Host: 127.0.0.1 ()	Ports: 22/open/tcp//ssh///, 23/closed/tcp/////
}

// TestHostUpRule: a host is up when a port answered, when it was assumed
// up (-Pn), or when its ports were dropped (no-response) but discovery did
// not give it up; it is down when the scanner gave it up (host-timeout) or
// when every port drew only an ICMP error.
func TestHostUpRule(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.2")
	res := func(st scan.State, reason string) scan.Result {
		return scan.Result{Addr: a, Port: 1, Proto: portspec.TCP, State: st, Reason: reason}
	}
	for _, tc := range []struct {
		name     string
		rs       []scan.Result
		assumeUp bool
		want     xmlState
	}{
		{"closed", []scan.Result{res(scan.Closed, scan.ReasonConnRefused)}, false, xmlState{State: "up", Reason: "conn-refused"}},
		{"dropped, discovery answered", []scan.Result{res(scan.Filtered, scan.ReasonNoResponse)}, false, xmlState{State: "up", Reason: "discovery"}},
		{"given up", []scan.Result{res(scan.Filtered, scan.ReasonNoResponse), res(scan.Filtered, scan.ReasonHostTimeout)}, false, xmlState{State: "down", Reason: "no-response"}},
		{"ICMP only", []scan.Result{res(scan.Filtered, scan.ReasonHostUnreach)}, false, xmlState{State: "down", Reason: "no-response"}},
		{"-Pn", []scan.Result{res(scan.Filtered, scan.ReasonHostTimeout)}, true, xmlState{State: "up", Reason: "user-set"}},
	} {
		meta := ScanMeta{AssumeUp: tc.assumeUp}
		h := groupHosts(tc.rs, 0)[0]
		if got := hostStatus(meta, h); got != tc.want {
			t.Errorf("%s: hostStatus = %+v; want %+v", tc.name, got, tc.want)
		}
	}
}

// TestScanTableDownHosts: a /24 with one live host and 253 that answered
// nothing is one host report and one line for the rest, not a report per
// dead host listing its filtered ports.
func TestScanTableDownHosts(t *testing.T) {
	var rs []scan.Result
	live := netip.MustParseAddr("198.18.0.1")
	rs = append(rs, scan.Result{Addr: live, Port: 22, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck})
	for a, i := live.Next(), 0; i < 253; a, i = a.Next(), i+1 {
		for p := portspec.Port(1); p <= 30; p++ {
			reason := scan.ReasonHostTimeout
			if p < 10 {
				reason = scan.ReasonNoResponse
			}
			rs = append(rs, scan.Result{Addr: a, Port: p, Proto: portspec.TCP, State: scan.Filtered, Reason: reason})
		}
	}
	var b bytes.Buffer
	if err := WriteScan(&b, FormatTable, ScanMeta{Hosts: 254}, rs, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, "\n"); n > 6 {
		t.Errorf("table of 1 live and 253 down hosts: %d lines; want a handful:\n%s", n, out)
	}
	want := "Not shown: 253 hosts down (no answer to their ports or to host discovery; -Pn scans them anyway): 198.18.0.2, 198.18.0.3,"
	if !strings.Contains(out, want) || !strings.Contains(out, " and 245 more") {
		t.Errorf("table:\n%s\nwant a line %q... and 245 more", out, want)
	}
}

// TestScanNames: a target given by name keeps it in every format that has
// a place for it, as nmap writes it.
func TestScanNames(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.80")
	rs := []scan.Result{{Addr: a, Port: 80, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: "http"}}
	meta := ScanMeta{Names: map[netip.Addr]string{a: "web.test"}}
	for f, want := range map[ScanFormat]string{
		FormatTable:    "Scan report for web.test (198.18.0.80)",
		FormatGrepable: "Host: 198.18.0.80 (web.test)\tStatus: Up",
		FormatXML:      `<hostname name="web.test" type="user"></hostname>`,
		FormatJSON:     `"name": "web.test"`,
	} {
		var b bytes.Buffer
		if err := WriteScan(&b, f, meta, rs, false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s: want %q in\n%s", f, want, b.String())
		}
	}
}

package cli

import (
	"encoding/json"
	"encoding/xml"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/scan"
	"portolan/internal/testenv"
)

// firewalledTarget is a server behind an ordinary firewall: everything is
// dropped, pings included, but TCP 22, 443 and 31337, which listen.
func firewalledTarget(t *testing.T, target *netlab.Host) {
	t.Helper()
	nft(t, target, `table inet fw {
 chain input {
  type filter hook input priority 0; policy drop;
  iif lo accept
  ct state established,related accept
  icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
  tcp dport { 22, 443, 31337 } accept
 }
}
`)
	for _, p := range []int{22, 443, 31337} {
		serveTCP(t, target, p)
	}
}

// xmlHost is a host of an nmap XML file (nmap's or portolan's): its
// status and its open ports.
type xmlHost struct {
	status, reason string
	open           []int
}

func xmlHosts(t testing.TB, path string) map[string]xmlHost {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hosts []struct {
			Status struct {
				State  string `xml:"state,attr"`
				Reason string `xml:"reason,attr"`
			} `xml:"status"`
			Addresses []struct {
				Addr string `xml:"addr,attr"`
				Type string `xml:"addrtype,attr"`
			} `xml:"address"`
			Ports []struct {
				PortID int `xml:"portid,attr"`
				State  struct {
					State string `xml:"state,attr"`
				} `xml:"state"`
			} `xml:"ports>port"`
		} `xml:"host"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, b)
	}
	out := map[string]xmlHost{}
	for _, h := range doc.Hosts {
		x := xmlHost{status: h.Status.State, reason: h.Status.Reason}
		for _, p := range h.Ports {
			if p.State.State == "open" {
				x.open = append(x.open, p.PortID)
			}
		}
		slices.Sort(x.open)
		for _, a := range h.Addresses {
			if a.Type != "mac" {
				out[a.Addr] = x
			}
		}
	}
	return out
}

// TestScanFirewalledHost is the pentester's case: a server that drops
// everything but three open ports, scanned with the defaults (no -Pn).
// The first probes of the random order all go unanswered; host discovery
// must still find the host up and all three ports open, over IPv4 and
// IPv6, as nmap -sT does (run alongside as the reference). An address
// where nothing answers is judged down, and every format says so and why.
func TestScanFirewalledHost(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	firewalledTarget(t, target)
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	silent := netip.MustParseAddr("198.18.0.99")
	if out, err := exec.Command("ip", "-n", scanner.Netns(), "neigh", "replace", silent.String(),
		"lladdr", "02:00:00:00:00:99", "dev", lk.ADev, "nud", "permanent").CombinedOutput(); err != nil {
		t.Fatalf("ip neigh replace: %v\n%s", err, out)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "scans.db")
	// The default ports (our top 1000 hold 22, 443 and 31337), a seed whose
	// first probes miss all three.
	r := runChild(t, portolanIn(t, scanner, "scan", lk.B4.String(), lk.B6.String(), silent.String(),
		"--seed", "7", "--db", db, "--format", "jsonl"))
	if r.code != ExitOK {
		t.Fatalf("scan: %v", r)
	}
	want := []int{22, 443, 31337}
	open := map[netip.Addr][]int{}
	for _, res := range jsonlResults(t, r.stdout) {
		if res.State == scan.Open {
			open[res.Addr] = append(open[res.Addr], int(res.Port))
		}
	}
	for _, a := range []netip.Addr{lk.B4, lk.B6} {
		slices.Sort(open[a])
		if !slices.Equal(open[a], want) {
			t.Errorf("%s: open %v; want %v", a, open[a], want)
		}
	}
	if !strings.Contains(r.stderr, "1 host judged down") || !strings.Contains(r.stderr, "host discovery") {
		t.Errorf("stderr does not say a host was judged down and why:\n%s", r.stderr)
	}

	// Every format says which host is down, and why.
	for _, tc := range []struct{ format, want string }{
		{"table", "Not shown: 1 host down (no answer to their ports or to host discovery; -Pn scans them anyway): 198.18.0.99"},
		{"grepable", "Host: 198.18.0.99 ()\tStatus: Down"},
		{"xml", `<status state="down" reason="no-response"`},
		{"jsonl", `"addr":"198.18.0.99","port":`},
		{"csv", "198.18.0.99,"},
	} {
		out := runChild(t, portolanCmd(t, t.Context(), "show", "1", "--db", db, "--format", tc.format))
		if out.code != ExitOK || !strings.Contains(out.stdout, tc.want) {
			t.Errorf("show --format %s: want %q in\n%v", tc.format, tc.want, out)
		}
		if (tc.format == "jsonl" || tc.format == "csv") && !strings.Contains(out.stdout, scan.ReasonHostTimeout) {
			t.Errorf("show --format %s: no %s reason for the down host", tc.format, scan.ReasonHostTimeout)
		}
	}
	js := runChild(t, portolanCmd(t, t.Context(), "show", "1", "--db", db, "--format", "json"))
	var doc struct {
		Hosts []struct{ Addr, Status, Reason string } `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &doc); err != nil {
		t.Fatalf("show --format json: %v\n%s", err, js.stdout)
	}
	status := map[string]string{}
	for _, h := range doc.Hosts {
		status[h.Addr] = h.Status + " " + h.Reason
	}
	if status[silent.String()] != "down no answer to its ports or to host discovery" || !strings.HasPrefix(status[lk.B4.String()], "up ") {
		t.Errorf("json hosts %v; want %s down with the reason, %s up", status, silent, lk.B4)
	}

	// -sn: discovery only, one result per host.
	sn := runChild(t, portolanIn(t, scanner, "scan", "-sn", lk.B4.String(), lk.B6.String(), silent.String(), "--no-store", "--format", "table"))
	if sn.code != ExitOK || !strings.Contains(sn.stdout, "Scan report for "+lk.B4.String()+"\nHost is up (syn-ack") ||
		!strings.Contains(sn.stdout, "Scan report for "+lk.B6.String()+"\nHost is up (") ||
		!strings.Contains(sn.stdout, "Not shown: 1 host down") || strings.Contains(sn.stdout, "PORT") {
		t.Errorf("scan -sn: want two hosts up, one down, no ports:\n%v", sn)
	}
	if r := runChild(t, portolanIn(t, scanner, "scan", "-sn", lk.B4.String(), "-p", "22", "--no-store")); r.code != ExitUsage {
		t.Errorf("scan -sn -p 22: %v; want exit %d", r, ExitUsage)
	}

	// nmap -sT with its default host discovery is the reference.
	nmap := testenv.RequireCommand(t, "nmap")
	for _, a := range []netip.Addr{lk.B4, lk.B6} {
		ports := "22,80,443,1000-1100,31337"
		ours := filepath.Join(dir, "ours-"+a.String()+".xml")
		theirs := filepath.Join(dir, "nmap-"+a.String()+".xml")
		if r := runChild(t, portolanIn(t, scanner, "scan", a.String(), "-p", ports, "--no-store", "--format", "xml", "-o", ours)); r.code != ExitOK {
			t.Fatalf("scan: %v", r)
		}
		args := []string{"-sT", "-n", "-T4", "-p", ports, "-oX", theirs, a.String()}
		if a.Is6() {
			args = append([]string{"-6"}, args...)
		}
		if out, err := scanner.Command(t.Context(), nmap, args...).CombinedOutput(); err != nil {
			t.Fatalf("nmap: %v\n%s", err, out)
		}
		o, n := xmlHosts(t, ours)[a.String()], xmlHosts(t, theirs)[a.String()]
		if o.status != n.status || !slices.Equal(o.open, n.open) {
			t.Errorf("%s: portolan %+v; nmap %+v", a, o, n)
		}
	}
}

// TestScanXMLNdiff scans the same target with nmap -sT and portolan, and
// compares the two XML files with ndiff, as a user comparing the tools
// would: open, closed and dropped ports, registered and unregistered, over
// IPv4. ndiff must see no difference in the ports. (Ports whose names
// differ between nmap's table and IANA's, such as 31337, "Elite" against
// "eldim", are left out: the tables truly disagree.)
func TestScanXMLNdiff(t *testing.T) {
	nmap := testenv.RequireCommand(t, "nmap")
	ndiff := testenv.RequireCommand(t, "ndiff")
	scanner, target, lk := netlab.NewPair(t)
	for _, p := range []int{22, 80, 4315, 4321} { // 4315: in neither nmap's table nor IANA's
		serveTCP(t, target, p)
	}
	nft(t, target, `table inet fw {
 chain input {
  type filter hook input priority 0;
  tcp dport { 25, 4000-4099 } drop
 }
}
`)
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "portolan.xml"), filepath.Join(dir, "nmap.xml")
	const ports = "1-1024,4000-4400"
	if r := runChild(t, portolanIn(t, scanner, "scan", lk.B4.String(), "-p", ports, "--no-store", "-oX", ours, "--format", "list")); r.code != ExitOK {
		t.Fatalf("scan: %v", r)
	}
	if out, err := scanner.Command(t.Context(), nmap, "-sT", "-n", "-T4", "-p", ports, "-oX", theirs, lk.B4.String()).CombinedOutput(); err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	out, _ := exec.Command(ndiff, theirs, ours).CombinedOutput() // exit 1 when they differ
	var diffs []string
	for _, l := range strings.Split(string(out), "\n") {
		// ndiff's header names each file's scanner and time, and the
		// host line has the MAC address nmap (root, on the link) learns
		// from ARP and a connect scan cannot: the rest, the host's status
		// and its ports, is what both scanners found.
		header := strings.HasPrefix(l[min(1, len(l)):], "Nmap ") || strings.HasPrefix(l[min(1, len(l)):], lk.B4.String())
		if (strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+")) && !header {
			diffs = append(diffs, l)
		}
	}
	if len(diffs) > 0 {
		t.Errorf("ndiff nmap.xml portolan.xml: %d differences:\n%s", len(diffs), out)
	}
}

// TestScanPingScanRaw: privileged, -sn sends raw discovery probes as nmap
// does, so a host whose firewall lets in only an ICMP timestamp request,
// or only bare ACKs to port 80, is reported up, not down.
func TestScanPingScanRaw(t *testing.T) {
	testenv.RequireRoot(t)
	scanner, target, lk := netlab.NewPair(t)
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ rule, want string }{
		{"icmp type timestamp-request accept", "Host is up (timestamp-reply"},
		{"tcp dport 80 tcp flags & (fin|syn|rst|ack) == ack accept", "Host is up (reset"},
	} {
		nft(t, target, "flush ruleset\ntable inet fw {\n chain input {\n  type filter hook input priority 0; policy drop;\n  "+tc.rule+"\n }\n}\n")
		r := runChild(t, portolanIn(t, scanner, "scan", "-sn", lk.B4.String(), "--no-store", "--format", "table"))
		if r.code != ExitOK || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("scan -sn behind %q: want %q in\n%v", tc.rule, tc.want, r)
		}
		// nmap -sn, without the ARP ping that would find any host on
		// the link, is the reference.
		nmap := testenv.RequireCommand(t, "nmap")
		out, err := scanner.Command(t.Context(), nmap, "-sn", "-n", "--disable-arp-ping", lk.B4.String()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Host is up") {
			t.Errorf("nmap -sn behind %q: %v; want the host up\n%s", tc.rule, err, out)
		}
	}
}

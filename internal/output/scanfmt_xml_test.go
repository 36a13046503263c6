package output

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/testenv"
)

// nmapDTD is where Debian's nmap-common package puts nmap's DTD; we
// validate against it rather than keep a copy.
const nmapDTD = "/usr/share/nmap/nmap.dtd"

func requireDTD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(nmapDTD); err != nil {
		if testenv.InCI() {
			t.Fatalf("%s missing (CI=true: scripts/deps.sh installs nmap-common)", nmapDTD)
		}
		t.Skipf("%s missing: install nmap-common", nmapDTD)
	}
}

// xmlCases are scans whose XML must validate: the fixture, and the corners
// an importer chokes on.
func xmlCases() map[string]struct {
	meta ScanMeta
	rs   []scan.Result
} {
	meta, rs := fixture()
	a := netip.MustParseAddr("198.18.0.3")
	zoned := netip.MustParseAddr("fe80::1%veth0")
	hostile := "<b>\"quoted\" & 'single' -- --- ]]> \x00\x07\x1b[31m\r\n\xff\xfe é"
	interrupted := meta
	assumeUp := meta
	assumeUp.AssumeUp = true
	interrupted.End, interrupted.Error = time.Time{}, "interrupted: resume with portolan scan --resume 7"
	syn := ScanMeta{ScanType: "syn", Args: `portolan scan "a b" --top-ports 10`}
	return map[string]struct {
		meta ScanMeta
		rs   []scan.Result
	}{
		"fixture":     {meta, rs},
		"fixture -Pn": {assumeUp, rs},
		"no results":  {ScanMeta{Start: t0, End: t0.Add(time.Second), Hosts: 256, Ports: ports1}, nil},
		"zero meta":   {ScanMeta{}, nil},
		"interrupted": {interrupted, rs[:50]},
		"hostile banner and args": {ScanMeta{Args: hostile, Version: "--" + hostile, Start: t0}, []scan.Result{
			{Addr: a, Port: 8080, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: hostile, Banner: hostile, RTT: time.Millisecond},
		}},
		"ipv6 zone, sctp, syn": {syn, []scan.Result{
			{Addr: zoned, Port: 22, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck},
			{Addr: zoned, Port: 2905, Proto: portspec.SCTP, State: scan.Closed, Reason: "abort"},
			{Addr: zoned, Port: 161, Proto: portspec.UDP, State: scan.OpenFiltered, Reason: scan.ReasonNoResponse},
			{Addr: zoned, Port: 9, Proto: portspec.UDP, State: scan.Unknown},
		}},
	}
}

func TestWriteScanXMLValidates(t *testing.T) {
	xmllint := testenv.RequireCommand(t, "xmllint")
	requireDTD(t)
	dir := t.TempDir()
	for name, c := range xmlCases() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteScan(&buf, FormatXML, c.meta, c.rs, false); err != nil {
				t.Fatalf("WriteScan(xml) = %v", err)
			}
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".xml")
			os.WriteFile(path, buf.Bytes(), 0o644)
			out, err := exec.Command(xmllint, "--noout", "--dtdvalid", nmapDTD, path).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("xmllint --dtdvalid %s: %v\n%s\n--- document:\n%s", nmapDTD, err, out, buf.String())
			}
		})
	}
}

// TestWriteScanXMLPython reads the XML with Python's standard parser, the
// one python-libnmap and most importer scripts build on.
func TestWriteScanXMLPython(t *testing.T) {
	python := lookOrSkip(t, "python3")
	meta, rs := fixture()
	path := writeXMLFile(t, meta, rs)
	script := `
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for h in root.iter("host"):
    addr = h.find("address").get("addr")
    for p in h.iter("port"):
        if p.find("state").get("state") == "open":
            print(addr, p.get("portid"), p.get("protocol"), p.find("service").get("name"))
print("up", root.find("runstats/hosts").get("up"), "down", root.find("runstats/hosts").get("down"))
`
	out, err := exec.Command(python, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	want := "198.18.0.2 22 tcp ssh\n198.18.0.2 23 tcp telnet\nfd00::2 443 tcp https\nup 2 down 2\n"
	if string(out) != want {
		t.Errorf("python3 read:\n%s\nwant:\n%s", out, want)
	}
}

// TestWriteScanXMLNdiff compares two of our files with nmap's own ndiff:
// it must parse both and report the port that changed.
func TestWriteScanXMLNdiff(t *testing.T) {
	ndiff := lookOrSkip(t, "ndiff")
	meta, rs := fixture()
	before := writeXMLFile(t, meta, rs)
	var changed []scan.Result
	for _, r := range rs {
		if r.Addr == hostA && r.Port == 23 {
			r.State, r.Reason, r.Service = scan.Closed, scan.ReasonConnRefused, "telnet"
		}
		changed = append(changed, r)
	}
	after := writeXMLFile(t, meta, changed)
	out, err := exec.Command(ndiff, before, after).CombinedOutput()
	// ndiff exits 1 when the scans differ, 2 on error.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("ndiff: %v\n%s", err, out)
	}
	// 23/tcp is now closed like 35 others, so it joins the "Not shown" line.
	if !regexp.MustCompile(`(?m)^-23/tcp +open +telnet`).Match(out) || !strings.Contains(string(out), "+Not shown: 36 closed ports") {
		t.Errorf("ndiff output lacks the change of 23/tcp on 198.18.0.2:\n%s", out)
	}
}

func lookOrSkip(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: an extra consumer check", name)
	}
	return p
}

func writeXMLFile(t *testing.T, meta ScanMeta, rs []scan.Result) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteScan(&buf, FormatXML, meta, rs, false); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "*.xml")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(buf.Bytes())
	f.Close()
	return f.Name()
}

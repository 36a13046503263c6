package cli

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/testenv"
)

// TestScanUDP runs portolan scan -sU as a user would, from one namespace
// into another, over IPv4 and IPv6: a UDP service (open), a port with
// nothing (closed), nftables reject with ICMP administratively prohibited
// (filtered) and drop (open|filtered). The streamed results, the stored
// scan, nmap XML (valid against nmap's DTD) and the grepable format all
// say the same.
func TestScanUDP(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	for _, a := range []netip.Addr{lk.B4, lk.B6} {
		pc, err := target.ListenPacket("udp", netip.AddrPortFrom(a, 53).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go answerUDP(pc)
	}
	nft(t, target, `table inet portolantest {
 chain input {
  type filter hook input priority 0;
  udp dport 55 reject with icmpx type admin-prohibited
  udp dport 56 drop
 }
}
`)
	dir := t.TempDir()
	db := filepath.Join(dir, "scans.db")
	r := runChild(t, portolanIn(t, scanner, "scan", lk.B4.String(), lk.B6.String(), "-sU",
		"-p", "53-56", "--db", db, "--format", "jsonl", "--stats-every", "1m"))
	if r.code != ExitOK {
		t.Fatalf("scan -sU: %v", r)
	}
	got := resultSet(t, "scan", jsonlResults(t, r.stdout))
	diffSets(t, "stored", resultSet(t, "stored", func() []scan.Result { _, rs := storedScan(t, db, 1); return rs }()), got)
	for _, a := range []netip.Addr{lk.B4, lk.B6} {
		for p, w := range map[portspec.Port]resultOutcome{
			53: {"open", scan.ReasonUDPResponse},
			54: {"closed", scan.ReasonPortUnreach},
			55: {"filtered", scan.ReasonAdminProhibited},
			56: {"open|filtered", scan.ReasonNoResponse},
		} {
			k := resultKey{a, p, portspec.UDP}
			if g, ok := got[k]; !ok || g != w {
				t.Errorf("%s = %v; want %v", k, g, w)
			}
		}
	}
	if len(got) != 8 {
		t.Errorf("%d results; want 8", len(got))
	}
	si, _ := storedScan(t, db, 1)
	if si.Counts.Open != 2 {
		t.Errorf("stored counts %+v; want 2 open ports", si.Counts)
	}

	xmlFile := filepath.Join(dir, "udp.xml")
	if r := runChild(t, portolanCmd(t, t.Context(), "show", "1", "--db", db, "--format", "xml", "-o", xmlFile)); r.code != ExitOK {
		t.Fatalf("show --format xml: %v", r)
	}
	validateXML(t, xmlFile)
	x, err := os.ReadFile(xmlFile)
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(x)), " ")
	for _, want := range []string{`<scaninfo type="udp" protocol="udp"`, `<port protocol="udp" portid="56"> <state state="open|filtered" reason="no-response"`,
		`<port protocol="udp" portid="54"> <state state="closed" reason="port-unreach"`} {
		if !strings.Contains(flat, want) {
			t.Errorf("XML lacks %s:\n%s", want, x)
		}
	}
	for format, wants := range map[string][]string{
		"grepable": {"53/open/udp//domain", "54/closed/udp", "55/filtered/udp", "56/open|filtered/udp"},
		"csv":      {",53,udp,open,udp-response,", ",54,udp,closed,port-unreach,", ",56,udp,open|filtered,no-response,"},
		"table":    {"53/udp", "open|filtered"},
		"json":     {`"state": "open|filtered"`, `"proto": "udp"`},
	} {
		out := runChild(t, portolanCmd(t, t.Context(), "show", "1", "--db", db, "--format", format))
		for _, want := range wants {
			if !strings.Contains(out.stdout, want) {
				t.Errorf("show --format %s lacks %s:\n%s", format, want, out.stdout)
			}
		}
	}
}

// answerUDP answers every datagram with a line, until pc is closed.
func answerUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte("hello\n"), from)
	}
}

// TestScanUDPUnprivileged runs scan -sU as nobody with no capabilities at
// all: the ICMP errors come through IP_RECVERR on ordinary sockets, so a
// closed port is still closed and an answering one open.
func TestScanUDPUnprivileged(t *testing.T) {
	setpriv := testenv.RequireCommand(t, "setpriv")
	scanner, target, lk := netlab.NewPair(t)
	pc, err := target.ListenPacket("udp", netip.AddrPortFrom(lk.B4, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go answerUDP(pc)
	// A copy of the binary that nobody may run.
	dir, err := os.MkdirTemp("", "portolan-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "portolan")
	b, err := os.ReadFile(portolanExe(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := scanner.Command(t.Context(), setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
		exe, "scan", lk.B4.String(), "-sU", "-p", "53,54", "--no-store", "--format", "jsonl")
	cmd.Env = portolanEnv(dir)
	r := runChild(t, cmd)
	if r.code != ExitOK {
		t.Fatalf("scan -sU as nobody: %v", r)
	}
	got := resultSet(t, "scan", jsonlResults(t, r.stdout))
	for p, w := range map[portspec.Port]resultOutcome{
		53: {"open", scan.ReasonUDPResponse},
		54: {"closed", scan.ReasonPortUnreach},
	} {
		k := resultKey{lk.B4, p, portspec.UDP}
		if g := got[k]; g != w {
			t.Errorf("%s = %v; want %v\n%s", k, g, w, r.stderr)
		}
	}
}

package scandiff

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/output"
	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
	"portolan/internal/testenv"
)

// ndiffPair is two scans of five hosts, ports 1-100, with a change of every
// kind between them.
func ndiffPair() (a, b []scan.Result) {
	host := func(addr string) []scan.Result { return closedHost(addr, 1, 100) }
	filtered := func(addr string) []scan.Result {
		var rs []scan.Result
		for p := portspec.Port(1); p <= 100; p++ {
			rs = append(rs, res(addr, p, scan.Filtered, ""))
		}
		return rs
	}
	const h1, h2, h3, h4, h5 = "198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"
	a = slices.Concat(
		// h1: 22 same, 80 goes, 443 comes, 25's banner changes, 8080 is filtered later.
		with(host(h1), res(h1, 22, scan.Open, "SSH-2.0-OpenSSH_9.2p1"), res(h1, 80, scan.Open, ""),
			res(h1, 25, scan.Open, "220 mail ESMTP Postfix"), res(h1, 99, scan.Open, "")),
		// h2 vanishes: everything filtered in b.
		with(host(h2), res(h2, 22, scan.Open, "")),
		// h4 is the same in both.
		with(host(h4), res(h4, 53, scan.Open, "")),
		// h5: 30 closed ports become filtered (collapsed counts change).
		host(h5),
	)
	h5b := host(h5)
	for i := range 30 {
		h5b[i] = res(h5, h5b[i].Port, scan.Filtered, "")
	}
	b = slices.Concat(
		with(host(h1), res(h1, 22, scan.Open, "SSH-2.0-OpenSSH_9.2p1"), res(h1, 443, scan.Open, ""),
			res(h1, 25, scan.Open, "220 mail ESMTP Exim 4.96"), res(h1, 99, scan.Filtered, "")),
		filtered(h2),
		// h3 appears: not scanned in a.
		with(host(h3), res(h3, 80, scan.Open, "")),
		with(host(h4), res(h4, 53, scan.Open, "")),
		h5b,
	)
	return a, b
}

// storeScan stores rs as a finished scan of ports 1-100 and returns it.
func storeScan(t *testing.T, st *store.Store, start time.Time, targets string, rs []scan.Result) store.ScanInfo {
	t.Helper()
	ctx := context.Background()
	ports, err := portspec.Parse("1-100")
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		rs[i].Pos = uint64(i)
		rs[i].Time = start.Add(time.Millisecond)
	}
	id, err := st.CreateScan(ctx, store.ScanInfo{Started: start, Targets: targets, Ports: "1-100", PortSet: ports, Prober: "connect"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddResults(ctx, id, rs); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishScan(ctx, id, store.Done, store.Counts{}); err != nil {
		t.Fatal(err)
	}
	si, err := st.Scan(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return si
}

// writeXML writes the stored scan as nmap XML, as portolan show -oX does.
func writeXML(t *testing.T, st *store.Store, si store.ScanInfo, path string) {
	t.Helper()
	rs, err := st.Results(context.Background(), si.ID, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	meta := output.ScanMeta{ID: si.ID, Args: "portolan scan " + si.Targets, Start: si.Started, End: si.Finished,
		ScanType: "connect", Ports: si.PortSet}
	if err := output.WriteScan(&b, output.FormatXML, meta, rs, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ndiffChanges runs ndiff --xml on two files and returns the hosts it
// reports and, for hosts in both scans, the ports ("ADDR PORT/PROTO").
func ndiffChanges(t *testing.T, a, b string) (hosts, ports []string) {
	t.Helper()
	ndiff := testenv.RequireCommand(t, "ndiff")
	out, err := exec.Command(ndiff, "--xml", a, b).Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: differences
		t.Fatalf("ndiff %s %s: %v\n%s", a, b, err, out)
	}
	hosts, ports, err = parseNdiff(strings.NewReader(string(out)))
	if err != nil {
		t.Fatalf("ndiff output: %v\n%s", err, out)
	}
	return hosts, ports
}

// parseNdiff reads ndiff's XML: <hostdiff> per changed host, holding the
// host whole under <a> or <b> when it is in one scan only, else a <host>
// with <portdiff>s.
func parseNdiff(r io.Reader) (hosts, ports []string, err error) {
	dec := xml.NewDecoder(r)
	var stack []string
	var addr string
	inPortdiff, portSeen, whole := false, false, false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		switch e := tok.(type) {
		case xml.StartElement:
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			stack = append(stack, e.Name.Local)
			attr := func(n string) string {
				for _, a := range e.Attr {
					if a.Name.Local == n {
						return a.Value
					}
				}
				return ""
			}
			switch e.Name.Local {
			case "hostdiff":
				addr, whole = "", false
			case "host":
				whole = parent == "a" || parent == "b"
			case "address":
				if addr == "" && attr("addrtype") != "mac" {
					addr = attr("addr")
					hosts = append(hosts, addr)
				}
			case "portdiff":
				inPortdiff, portSeen = true, false
			case "port":
				if inPortdiff && !portSeen && !whole {
					ports = append(ports, fmt.Sprintf("%s %s/%s", addr, attr("portid"), attr("protocol")))
					portSeen = true
				}
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if e.Name.Local == "portdiff" {
				inPortdiff = false
			}
		}
	}
	sort.Strings(hosts)
	sort.Strings(ports)
	return slices.Compact(hosts), ports, nil
}

// changes lists d's hosts (any change) and its port changes on hosts in
// both scans, as ndiffChanges does.
func changes(d *Diff) (hosts, ports []string) {
	onlyOne := map[string]bool{}
	for _, h := range d.Hosts {
		hosts = append(hosts, h.Addr.String())
		if h.Kind == HostAppeared && h.A == (Hidden{}) || h.Kind == HostVanished && h.B == (Hidden{}) {
			onlyOne[h.Addr.String()] = true
		}
	}
	for _, p := range d.Ports {
		hosts = append(hosts, p.Addr.String())
		if !onlyOne[p.Addr.String()] {
			ports = append(ports, fmt.Sprintf("%s %d/%s", p.Addr, p.Port, p.Proto))
		}
	}
	sort.Strings(hosts)
	sort.Strings(ports)
	return slices.Compact(hosts), ports
}

// TestNdiffAgreement compares two stored scans and has ndiff compare the
// same scans written as nmap XML: both must name the same hosts and ports.
func TestNdiffAgreement(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ra, rb := ndiffPair()
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	sa := storeScan(t, st, start, "198.18.0.1-5", ra)
	sb := storeScan(t, st, start.Add(time.Hour), "198.18.0.1-5", rb)
	fa, fb := filepath.Join(dir, "a.xml"), filepath.Join(dir, "b.xml")
	writeXML(t, st, sa, fa)
	writeXML(t, st, sb, fb)

	for _, pair := range [][2]store.ScanInfo{{sa, sb}, {sb, sa}, {sa, sa}} {
		x, y := fa, fb
		switch {
		case pair[0].ID == pair[1].ID:
			y = fa
		case pair[0].ID == sb.ID:
			x, y = fb, fa
		}
		d, err := CompareStored(ctx, st, pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		wantHosts, wantPorts := ndiffChanges(t, x, y)
		gotHosts, gotPorts := changes(d)
		t.Logf("diff %d %d: hosts %v ports %v", pair[0].ID, pair[1].ID, gotHosts, gotPorts)
		if diff := cmp.Diff(wantHosts, gotHosts); diff != "" {
			t.Errorf("diff %d %d: hosts differ from ndiff's (-ndiff +ours)\n%s", pair[0].ID, pair[1].ID, diff)
		}
		if diff := cmp.Diff(wantPorts, gotPorts); diff != "" {
			t.Errorf("diff %d %d: ports differ from ndiff's (-ndiff +ours)\n%s", pair[0].ID, pair[1].ID, diff)
		}
		if pair[0].ID != pair[1].ID && len(wantHosts) < 4 {
			t.Errorf("diff %d %d: ndiff saw only %v; the pair should differ on 4 hosts", pair[0].ID, pair[1].ID, wantHosts)
		}
	}
}

package scandiff

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/importer"
	"portolan/internal/netlab"
	"portolan/internal/store"
	"portolan/internal/testenv"
)

// TestNdiffAgreementNmap scans a netlab host twice with real nmap -sV,
// changing its services in between (80 closes, 25 opens, the SSH server
// is upgraded), imports both files, and checks that diff and ndiff name
// the same hosts and ports.
func TestNdiffAgreementNmap(t *testing.T) {
	testenv.RequireCommand(t, "nmap")
	testenv.RequireCommand(t, "ndiff")
	a, b, lk := netlab.NewPair(t)
	listen := func(port int, reply string) net.Listener {
		ln, err := b.Listen("tcp", netip.AddrPortFrom(lk.B4, uint16(port)).String())
		if err != nil {
			t.Fatal(err)
		}
		go testenv.Serve(ln, func(c net.Conn) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte(reply))
			c.Read(make([]byte, 1024))
		})
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	dir := t.TempDir()
	nmap := func(out string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := a.Command(ctx, "nmap", "-n", "-Pn", "-sT", "-sV", "--version-light", "-p", "1-100", "-oX", out, lk.B4.String())
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nmap: %v\n%s", err, b)
		}
	}
	ssh := listen(22, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
	web := listen(80, "HTTP/1.0 200 OK\r\nServer: nginx/1.22.1\r\n\r\n")
	fa, fb := filepath.Join(dir, "a.xml"), filepath.Join(dir, "b.xml")
	nmap(fa)
	ssh.Close()
	web.Close()
	listen(22, "SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")
	listen(25, "220 mx.example ESMTP Postfix (Debian/GNU)\r\n")
	nmap(fb)

	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var scans []store.ScanInfo
	for _, f := range []string{fa, fb} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := importer.Parse(f, data, "")
		if err != nil {
			t.Fatal(err)
		}
		id, err := st.ImportScan(ctx, s.Info, s.Results)
		if err != nil {
			t.Fatal(err)
		}
		si, err := st.Scan(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		scans = append(scans, si)
	}
	d, err := CompareStored(ctx, st, scans[0], scans[1])
	if err != nil {
		t.Fatal(err)
	}
	wantHosts, wantPorts := ndiffChanges(t, fa, fb)
	gotHosts, gotPorts := changes(d)
	t.Logf("ndiff: %v %v", wantHosts, wantPorts)
	if diff := cmp.Diff(wantHosts, gotHosts); diff != "" {
		t.Errorf("hosts differ from ndiff's (-ndiff +ours)\n%s", diff)
	}
	if diff := cmp.Diff(wantPorts, gotPorts); diff != "" {
		t.Errorf("ports differ from ndiff's (-ndiff +ours)\n%s", diff)
	}
	if len(wantPorts) != 3 {
		t.Errorf("ndiff saw %v; the scans should differ on 22, 25 and 80", wantPorts)
	}
	kinds := map[string]Kind{}
	for _, p := range d.Ports {
		kinds[p.Addr.String()+" "+strconv.Itoa(int(p.Port))] = p.Kind
	}
	want := map[string]Kind{lk.B4.String() + " 22": PortService, lk.B4.String() + " 25": PortAdded, lk.B4.String() + " 80": PortRemoved}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("kinds of change (-want +got)\n%s", diff)
	}
}

package importer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/testenv"
)

// serveLab makes a scanner and a target host; the target answers on 22/tcp
// with an SSH greeting and on 80/tcp with an HTTP response.
func serveLab(t *testing.T) (scanner *netlab.Host, lk *netlab.Link) {
	t.Helper()
	a, b, lk := netlab.NewPair(t)
	if err := lk.PinNeighbors(); err != nil { // raw senders (masscan) do no ARP
		t.Fatal(err)
	}
	serve := func(port int, reply string) {
		ln, err := b.Listen("tcp", netip.AddrPortFrom(lk.B4, uint16(port)).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go testenv.Serve(ln, func(c net.Conn) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if port == 80 {
				c.Read(make([]byte, 4096)) // the request, or nothing before the deadline
			}
			c.Write([]byte(reply))
		})
	}
	serve(22, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
	serve(80, "HTTP/1.0 200 OK\r\nServer: nginx/1.22.1\r\nContent-Length: 2\r\n\r\nok")
	return a, lk
}

// TestImportNmap imports what real nmap (-sV) writes about a netlab host.
func TestImportNmap(t *testing.T) {
	testenv.RequireCommand(t, "nmap")
	scanner, lk := serveLab(t)
	out := filepath.Join(t.TempDir(), "nmap.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := scanner.Command(ctx, "nmap", "-n", "-Pn", "-sT", "-sV", "--version-light", "-p", "1-100", "-oX", out, lk.B4.String())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nmap: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(out, data, "")
	if err != nil {
		t.Fatal(err)
	}
	si := s.Info
	if si.Targets != lk.B4.String() || si.Ports != "1-100" || si.Prober != "connect" || si.Hosts != 1 || si.Space != 100 {
		t.Errorf("scan = targets %q ports %q prober %q hosts %d space %d; want %s, 1-100, connect, 1, 100",
			si.Targets, si.Ports, si.Prober, si.Hosts, si.Space, lk.B4)
	}
	if si.Started.IsZero() || si.Finished.Before(si.Started) || si.Status != "done" || si.Version[:5] != "nmap " {
		t.Errorf("scan = started %v finished %v status %s version %q", si.Started, si.Finished, si.Status, si.Version)
	}
	if len(s.Results) != 100 || si.Counts.Open != 2 || si.Counts.Closed != 98 || si.Counts.HostsUp != 1 {
		t.Fatalf("%d results, counts %+v; want 100 results, 2 open, 98 closed, 1 host up", len(s.Results), si.Counts)
	}
	vs, err := si.Versions()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		port    portspec.Port
		service string
		product string
	}{{22, "ssh", "OpenSSH"}, {80, "http", "nginx"}} {
		r := s.Results[want.port-1]
		if r.Port != want.port || r.State != scan.Open || r.Service != want.service || r.Reason != "syn-ack" {
			t.Errorf("result %d = %d/%s %s %s %s; want open %s syn-ack", want.port, r.Port, r.Proto, r.State, r.Service, r.Reason, want.service)
		}
		v := vs[versionKey(r)]
		if v.Product != want.product {
			t.Errorf("port %d: version %+v; want product %s", want.port, v, want.product)
		}
	}
	if r := s.Results[0]; r.State != scan.Closed || r.Reason != "conn-refused" || r.Service != "tcpmux" {
		t.Errorf("port 1 = %s %s %s; want closed conn-refused tcpmux", r.State, r.Reason, r.Service)
	}
}

// TestImportMasscan imports what real masscan writes, as JSON and as a
// list, about a netlab host.
func TestImportMasscan(t *testing.T) {
	testenv.RequireCommand(t, "masscan")
	scanner, lk := serveLab(t)
	dir := t.TempDir()
	for _, f := range []struct {
		flag   string
		format Format
	}{{"-oJ", MasscanJSON}, {"-oL", MasscanList}} {
		out := filepath.Join(dir, "masscan"+f.flag)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		// No default route in a lab: name the adapter and the target's MAC
		// as the router's, so masscan sends straight to it.
		cmd := scanner.Command(ctx, "masscan", "-p", "1-100", lk.B4.String(), "--rate", "500", "--wait", "2", "--retries", "2",
			"--adapter", lk.ADev, "--adapter-ip", lk.A4.String(), "--router-mac", lk.BMAC.String(), f.flag, out)
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("masscan: %v\n%s", err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Parse(out, data, "")
		if err != nil {
			t.Fatalf("Parse(%s): %v\n%s", out, err, data)
		}
		got := fmt.Sprintf("%d %d %s", len(s.Results), s.Info.Counts.Open, s.Info.Targets)
		if want := fmt.Sprintf("2 2 %s", lk.B4); got != want {
			t.Errorf("%s: results, open, targets = %s; want %s\n%s", f.format, got, want, data)
		}
		for _, r := range s.Results {
			if r.State != scan.Open || (r.Port != 22 && r.Port != 80) || r.Time.IsZero() {
				t.Errorf("%s: result %+v; want 22 or 80 open, with a time", f.format, r)
			}
		}
		if s.Info.Options == nil || s.Info.Prober != "syn" {
			t.Errorf("%s: options %s prober %s", f.format, s.Info.Options, s.Info.Prober)
		}
	}
}

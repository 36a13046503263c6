package cli

import (
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

func TestLsQueries(t *testing.T) {
	listen, unconn := sockets.States(sockets.Listen), sockets.States(sockets.Close)
	tcp := func(q sockets.Query) sockQuery { q.Proto = portspec.TCP; return sockQuery{q: q} }
	udp := func(q sockets.Query) sockQuery { q.Proto = portspec.UDP; return sockQuery{q: q} }
	p := func(lo, hi portspec.Port) []sockets.PortRange { return []sockets.PortRange{{Lo: lo, Hi: hi}} }
	for _, tc := range []struct {
		name string
		opts LsOptions
		want []sockQuery
		err  string
	}{
		{"default: listening TCP, unconnected UDP", LsOptions{},
			[]sockQuery{tcp(sockets.Query{States: listen}), udp(sockets.Query{States: unconn})}, ""},
		{"-a", LsOptions{All: true},
			[]sockQuery{tcp(sockets.Query{States: sockets.AllStates}), udp(sockets.Query{States: sockets.AllStates})}, ""},
		{"-t --port 80", LsOptions{TCP: true, Ports: "80"},
			[]sockQuery{tcp(sockets.Query{States: listen, Ports: p(80, 80)})}, ""},
		{"--port U:53 leaves TCP out", LsOptions{Ports: "U:53"},
			[]sockQuery{udp(sockets.Query{States: unconn, Ports: p(53, 53)})}, ""},
		{"--port 8000-8100: both protocols", LsOptions{Ports: "8000-8100"},
			[]sockQuery{tcp(sockets.Query{States: listen, Ports: p(8000, 8100)}), udp(sockets.Query{States: unconn, Ports: p(8000, 8100)})}, ""},
		{"-6", LsOptions{IPv6: true, UDP: true},
			[]sockQuery{udp(sockets.Query{Family: sockets.IPv6, States: unconn})}, ""},
		{"-4 adds dual-stack IPv6", LsOptions{IPv4: true, TCP: true},
			[]sockQuery{tcp(sockets.Query{Family: sockets.IPv4, States: listen}), {q: sockets.Query{Proto: portspec.TCP, Family: sockets.IPv6, States: listen}, dualStackFor: true}}, ""},
		{"--state listen: UDP servers too", LsOptions{States: []string{"listen"}},
			[]sockQuery{tcp(sockets.Query{States: listen}), udp(sockets.Query{States: listen | unconn})}, ""},
		{"--state list", LsOptions{States: []string{"estab,time-wait"}, TCP: true},
			[]sockQuery{tcp(sockets.Query{States: sockets.States(sockets.Established, sockets.TimeWait)})}, ""},
		{"bad state", LsOptions{States: []string{"open"}}, nil, `--state: unknown socket state "open"`},
		{"open range", LsOptions{Ports: "60000-", UDP: true}, []sockQuery{udp(sockets.Query{States: unconn, Ports: p(60000, 65535)})}, ""},
		{"bad port spec", LsOptions{Ports: "x y z"}, nil, "--port:"},
	} {
		got, err := lsQueries(tc.opts)
		if tc.err != "" || err != nil {
			if tc.err == "" || err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: lsQueries(%+v) error %v; want %q", tc.name, tc.opts, err, tc.err)
			}
			continue
		}
		if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(sockQuery{}), cmpopts.EquateComparable(sockets.Query{}.Local)); d != "" {
			t.Errorf("%s: lsQueries(%+v) (-want +got):\n%s", tc.name, tc.opts, d)
		}
	}
}

// TestLsNetns lists a namespace made with netlab, by name: its listener
// shows, with this process as owner; our own namespace does not have it.
func TestLsNetns(t *testing.T) {
	lab := netlab.NewT(t)
	h, err := lab.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.Listen("tcp4", "198.18.0.1:0")
	if err != nil {
		// The host has no address yet: listen on its loopback instead.
		l, err = h.Listen("tcp4", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	code, out, errOut := run("ls", "--netns", h.Netns(), "--port", port)
	if code != ExitOK || !strings.Contains(out, " "+port+" ") || !strings.Contains(out, " "+strconv.Itoa(os.Getpid())+" ") {
		t.Errorf("ls --netns %s --port %s = %d\n%s%s; want the listener, owned by us", h.Netns(), port, code, out, errOut)
	}
	// Our own namespace must not show the lab's listener. Another
	// process's socket may happen to have the same port here, so the test
	// looks for the listener itself: LISTEN on that port, held by us.
	code, out, _ = run("ls", "--port", port, "-t", "--state", "listen", "--json")
	var socks []struct {
		Port      int `json:"port"`
		Processes []struct {
			PID int `json:"pid"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(out), &socks); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	for _, s := range socks {
		if strconv.Itoa(s.Port) == port && len(s.Processes) > 0 && s.Processes[0].PID == os.Getpid() {
			t.Errorf("ls --port %s in our namespace = %d, shows the lab's listener:\n%s", port, code, out)
		}
	}
	if code, out, _ := run("who", port+"/tcp", "--netns", h.Path()); code != ExitOK || !strings.Contains(out, "127.0.0.1:"+port) {
		t.Errorf("who %s --netns %s = %d\n%s; want held", port, h.Path(), code, out)
	}
}

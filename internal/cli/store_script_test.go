package cli

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
)

// seedStart is when the first seeded scan started; the scripts run with
// TZ=UTC so history prints it as 2026-03-14 15:09:26.
var seedStart = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// cmdSeedScans writes three scans into a store through the store API, as
// the scan command will:
//
//	seedscans [FILE]    FILE defaults to $XDG_DATA_HOME/portolan/portolan.db
//
// 1: done, 127.0.0.1 -p 1-100: 22 (ssh, with a banner) and 80 open, the rest closed.
// 2: interrupted, 198.18.0.1-2,fd00::2 -p 443,8443: two open, two closed,
// two filtered, checkpoint 6 of 6.
// 3: running, 198.18.0.0/16 -p 22, nothing found yet.
func cmdSeedScans(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) > 1 {
		ts.Fatalf("usage: seedscans [FILE]")
	}
	path := ts.Getenv("XDG_DATA_HOME") + "/portolan/portolan.db"
	if len(args) == 1 {
		path = ts.MkAbs(args[0])
	}
	ts.Check(seedScans(path))
}

func seedScans(path string) error {
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	now := seedStart
	st.Now = func() time.Time { return now }
	tcp := func(spec string) *portspec.Set {
		s, err := portspec.Parse(spec)
		if err != nil {
			panic(err)
		}
		return s
	}

	// 1: a finished scan of loopback.
	id, err := st.CreateScan(ctx, store.ScanInfo{
		Started: seedStart, Command: "portolan scan 127.0.0.1 -p 1-100", Version: "v0.1.0",
		Targets: "127.0.0.1", Ports: "1-100", PortSet: tcp("1-100"), Prober: "connect",
		Seed: 42, Hosts: 1, Space: 100,
	})
	if err != nil {
		return err
	}
	lo := netip.MustParseAddr("127.0.0.1")
	var rs []scan.Result
	for p := portspec.Port(1); p <= 100; p++ {
		r := scan.Result{Addr: lo, Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
			RTT: 100 * time.Microsecond, Time: seedStart.Add(time.Duration(p) * time.Millisecond), Pos: uint64(p - 1)}
		switch p {
		case 22:
			r.State, r.Reason, r.Service, r.Banner = scan.Open, scan.ReasonSynAck, "ssh", "SSH-2.0-OpenSSH_9.2p1"
		case 80:
			r.State, r.Reason, r.Service, r.RTT = scan.Open, scan.ReasonSynAck, "http", 250*time.Microsecond
		}
		rs = append(rs, r)
	}
	if err := st.AddResults(ctx, id, rs); err != nil {
		return err
	}
	now = seedStart.Add(2345 * time.Millisecond)
	if err := st.FinishScan(ctx, id, store.Done, store.Counts{Probes: 100, Open: 2, Closed: 98, HostsUp: 1}); err != nil {
		return err
	}

	// 2: an interrupted scan over IPv4 and IPv6.
	start2 := seedStart.Add(time.Hour)
	id, err = st.CreateScan(ctx, store.ScanInfo{
		Started: start2, Command: "portolan scan 198.18.0.1-2,fd00::2 -p 443,8443", Version: "v0.1.0",
		Targets: "198.18.0.1-2,fd00::2", Ports: "443,8443", PortSet: tcp("443,8443"), Prober: "connect",
		Seed: 7, Hosts: 3, Space: 6,
	})
	if err != nil {
		return err
	}
	a1, a2, v6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("fd00::2")
	at := func(i int) time.Time { return start2.Add(time.Duration(i) * time.Millisecond) }
	rs = []scan.Result{
		{Addr: v6, Port: 443, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: "https", RTT: 310 * time.Microsecond, Time: at(1), Pos: 0},
		{Addr: a1, Port: 8443, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused, Service: "pcsync-https", RTT: 200 * time.Microsecond, Time: at(2), Pos: 1},
		{Addr: a2, Port: 443, Proto: portspec.TCP, State: scan.Filtered, Reason: scan.ReasonNoResponse, Service: "https", Time: at(900), Pos: 2},
		{Addr: a1, Port: 443, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, Service: "https", RTT: 180 * time.Microsecond, Time: at(3), Pos: 3},
		{Addr: v6, Port: 8443, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused, Service: "pcsync-https", RTT: 290 * time.Microsecond, Time: at(4), Pos: 4},
		{Addr: a2, Port: 8443, Proto: portspec.TCP, State: scan.Filtered, Reason: scan.ReasonHostTimeout, Service: "pcsync-https", Time: at(950), Pos: 5},
	}
	if err := st.AddResults(ctx, id, rs); err != nil {
		return err
	}
	now = start2.Add(61 * time.Second)
	counts := store.Counts{Probes: 6, Open: 2, Closed: 2, Filtered: 2, HostsUp: 2}
	if err := st.Checkpoint(ctx, id, 6, counts); err != nil {
		return err
	}
	if err := st.FinishScan(ctx, id, store.Interrupted, counts); err != nil {
		return err
	}

	// 3: a scan still running (or whose process died) with no checkpoint yet.
	_, err = st.CreateScan(ctx, store.ScanInfo{
		Started: seedStart.Add(2 * time.Hour), Command: "portolan scan 198.18.0.0/16 -p 22", Version: "v0.1.0",
		Targets: "198.18.0.0/16", Ports: "22", PortSet: tcp("22"), Prober: "connect", Hosts: 65536, Space: 65536,
	})
	return err
}

// TestStoreScripts runs history.txtar and show.txtar with seedscans, which
// fills a store through the store API until the scan command can. Like
// TestSocketScripts, it puts a marker on PATH that the scripts look for
// (`[!exec:$STORE_CMDS] skip`), so TestScripts, which has no seedscans,
// skips them.
func TestStoreScripts(t *testing.T) {
	marker := t.TempDir()
	if err := os.WriteFile(filepath.Join(marker, "portolan-store-cmds"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Files: []string{"testdata/script/history.txtar", "testdata/script/show.txtar"},
		Cmds:  map[string]func(*testscript.TestScript, bool, []string){"seedscans": cmdSeedScans},
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			env.Setenv("TZ", "UTC")
			env.Setenv("PATH", marker+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("STORE_CMDS", "portolan-store-cmds")
			env.Setenv("NMAP_DTD", "/usr/share/nmap/nmap.dtd")
			return nil
		},
	})
}

package cli

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"portolan/internal/firewall"
	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// The firewall scripts (testdata/script/firewall*.txtar) run against a
// netlab pair made for each script: the firewall goes on host srv
// ($NS, at $SRV4 and $SRV6), connections come from host cli. Nothing
// touches the machine's own ruleset. These commands drive it:
//
//	serve tcp|udp PORT                  accept or echo on PORT in srv, all addresses
//	connect tcp|udp v4|v6 PORT OUTCOME  connect from cli; OUTCOME is open, dropped or refused
//	waitgone GLOB                       wait (up to a minute) until no file matches GLOB
var firewallCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"serve":    cmdServe,
	"connect":  cmdConnect,
	"waitgone": cmdWaitGone,
}

type fwLab struct {
	srv, cli *netlab.Host
	link     *netlab.Link
}

func labOf(ts *testscript.TestScript) *fwLab { return ts.Value("lab").(*fwLab) }

func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: serve tcp|udp PORT")
	}
	l := labOf(ts)
	for _, fam := range []string{"4", "6"} {
		addr := net.JoinHostPort("", args[1])
		switch args[0] {
		case "tcp":
			ln, err := l.srv.Listen("tcp"+fam, addr)
			ts.Check(err)
			ts.Defer(func() { ln.Close() })
			go testenv.Serve(ln, testenv.Drain)
		case "udp":
			pc, err := l.srv.ListenPacket("udp"+fam, addr)
			ts.Check(err)
			ts.Defer(func() { pc.Close() })
			go testenv.EchoUDP(pc)
		default:
			ts.Fatalf("serve: protocol %q: want tcp or udp", args[0])
		}
	}
}

// dropWait is how long connect waits before calling a port dropped; an
// accepted connection answers in microseconds over veth.
const dropWait = 1500 * time.Millisecond

func cmdConnect(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: connect tcp|udp v4|v6 PORT open|dropped|refused")
	}
	l := labOf(ts)
	addr := l.link.A4
	if args[1] == "v6" {
		addr = l.link.A6
	}
	port, err := strconv.Atoi(args[2])
	ts.Check(err)
	ap := netip.AddrPortFrom(addr, uint16(port)).String()
	var got string
	switch args[0] {
	case "tcp":
		ctx, cancel := context.WithTimeout(context.Background(), dropWait)
		defer cancel()
		c, err := l.cli.DialContext(ctx, "tcp", ap)
		if err == nil {
			c.Close()
		}
		got = outcomeOf(err)
	case "udp":
		c, err := l.cli.DialContext(context.Background(), "udp", ap)
		ts.Check(err)
		defer c.Close()
		_, err = c.Write([]byte("ping"))
		ts.Check(err)
		c.SetReadDeadline(time.Now().Add(dropWait))
		_, err = c.Read(make([]byte, 16))
		got = outcomeOf(err)
	default:
		ts.Fatalf("connect: protocol %q: want tcp or udp", args[0])
	}
	if got != args[3] {
		ts.Fatalf("connect %s %s: %s; want %s", args[0], ap, got, args[3])
	}
	ts.Logf("connect %s %s: %s", args[0], ap, got)
}

func outcomeOf(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "open"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "dropped"
	}
	return "error: " + err.Error()
}

func cmdWaitGone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitgone GLOB")
	}
	pattern := ts.MkAbs(args[0])
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if m, err := filepath.Glob(pattern); err == nil && len(m) == 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s still exists after a minute", args[0])
		}
	}
}

// TestFirewallScripts runs the firewall scripts, each in a fresh netlab
// pair. TestScripts skips them: they start with
// `[!exec:$FIREWALL_CMDS] skip` (see TestSocketScripts for why).
func TestFirewallScripts(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "nft")
	marker := t.TempDir()
	if err := os.WriteFile(filepath.Join(marker, "portolan-firewall-cmds"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Every command in the scripts names a lab namespace; make sure none
	// slipped through to the machine's own ruleset (read only).
	rootHas := func() bool {
		tab, err := (&firewall.Firewall{}).Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return tab.Exists
	}
	if !rootHas() {
		t.Cleanup(func() {
			if rootHas() {
				t.Error("a script wrote table inet portolan in the root network namespace")
			}
		})
	}
	files, err := filepath.Glob("testdata/script/firewall*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no firewall scripts: %v", err)
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Cmds:  firewallCmds,
		Setup: func(env *testscript.Env) error {
			lab, err := netlab.New()
			if err != nil {
				return err
			}
			env.Defer(func() { lab.Close() })
			srv, err := lab.AddHost("srv")
			if err != nil {
				return err
			}
			cli, err := lab.AddHost("cli")
			if err != nil {
				return err
			}
			lk, err := lab.Link(srv, cli)
			if err != nil {
				return err
			}
			env.Values["lab"] = &fwLab{srv: srv, cli: cli, link: lk}
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			env.Setenv("PORTOLAN_RUNTIME_DIR", env.WorkDir+"/run")
			env.Setenv("PATH", marker+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("FIREWALL_CMDS", "portolan-firewall-cmds")
			env.Setenv("NS", srv.Netns())
			env.Setenv("NSPATH", srv.Path())
			env.Setenv("SRV4", lk.A4.String())
			env.Setenv("SRV6", lk.A6.String())
			env.Setenv("CLI4", lk.B4.String())
			return nil
		},
	})
}

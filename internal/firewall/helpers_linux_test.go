package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// lab is the usual test network: the firewall on srv (198.18.0.1,
// fd00::1), connections from cli (198.18.0.2, fd00::2).
type lab struct {
	srv, cli *netlab.Host
	link     *netlab.Link
	fw       *Firewall
}

func newLab(t *testing.T) *lab {
	t.Helper()
	srv, cli, lk := netlab.NewPair(t)
	return &lab{srv: srv, cli: cli, link: lk, fw: &Firewall{NetNS: srv.FD()}}
}

// nft runs nft with args inside host and returns its stdout.
func nft(t *testing.T, h *netlab.Host, args ...string) string {
	t.Helper()
	testenv.RequireCommand(t, "nft")
	out, err := h.Command(context.Background(), "nft", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("nft %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// chainLines returns the body of portolan's input chain as nft lists it,
// one trimmed line per rule, the chain header first.
func chainLines(t *testing.T, h *netlab.Host) []string {
	t.Helper()
	return namedChainLines(t, h, ChainName)
}

// namedChainLines is chainLines for the chain called name.
func namedChainLines(t *testing.T, h *netlab.Host, name string) []string {
	t.Helper()
	out := nft(t, h, "list", "chain", "inet", TableName, name)
	var lines []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "chain "+name+" {"):
			in = true
		case l == "}":
			in = false
		case in && l != "":
			lines = append(lines, l)
		}
	}
	return lines
}

// rulesetJSON returns `nft -j list ruleset` inside h with the parts that
// change on every write (handles) or with time (expiries) removed, for
// comparing rulesets.
func rulesetJSON(t *testing.T, h *netlab.Host) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(nft(t, h, "-j", "list", "ruleset")), &v); err != nil {
		t.Fatalf("nft -j list ruleset: %v", err)
	}
	var strip func(any) any
	strip = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "handle")
			delete(x, "expires")
			delete(x, "metainfo")
			for k, e := range x {
				x[k] = strip(e)
			}
		case []any:
			for i, e := range x {
				x[i] = strip(e)
			}
		}
		return v
	}
	b, _ := json.MarshalIndent(strip(v), "", " ")
	return string(b)
}

// outcome is what a client sees when it connects.
type outcome string

const (
	open     outcome = "open"    // connected (TCP) or answered (UDP)
	dropped  outcome = "dropped" // no answer before the timeout
	refused  outcome = "refused" // RST or ICMP port unreachable
	unexpect outcome = "error"
)

// dropWait is how long a probe waits before calling a port dropped. An
// accepted connection over a veth pair answers in microseconds; a busy
// machine could only make a dropped port look dropped, never the reverse.
const dropWait = 1500 * time.Millisecond

// serveTCP listens on port of srv (all addresses) and accepts until the
// test ends.
func serveTCP(t *testing.T, h *netlab.Host, port int) {
	t.Helper()
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := h.Listen(network, net.JoinHostPort("", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go testenv.Serve(ln, nil)
	}
}

// serveUDP echoes datagrams on port of srv until the test ends.
func serveUDP(t *testing.T, h *netlab.Host, port int) {
	t.Helper()
	for _, network := range []string{"udp4", "udp6"} {
		pc, err := h.ListenPacket(network, net.JoinHostPort("", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go testenv.EchoUDP(pc)
	}
}

// probe connects from h to addr:port over proto and says what happened.
func probe(t *testing.T, h *netlab.Host, proto portspec.Proto, addr netip.Addr, port int) outcome {
	t.Helper()
	ap := netip.AddrPortFrom(addr, uint16(port)).String()
	switch proto {
	case portspec.TCP:
		ctx, cancel := context.WithTimeout(context.Background(), dropWait)
		defer cancel()
		c, err := h.DialContext(ctx, "tcp", ap)
		switch {
		case err == nil:
			c.Close()
			return open
		case errors.Is(err, syscall.ECONNREFUSED):
			return refused
		case isTimeout(err):
			return dropped
		}
		t.Logf("dial %s: %v", ap, err)
		return unexpect
	case portspec.UDP:
		c, err := h.DialContext(context.Background(), "udp", ap)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(dropWait))
		buf := make([]byte, 16)
		_, err = c.Read(buf)
		switch {
		case err == nil:
			return open
		case errors.Is(err, syscall.ECONNREFUSED):
			return refused
		case isTimeout(err):
			return dropped
		}
		t.Logf("udp %s: %v", ap, err)
		return unexpect
	}
	t.Fatalf("probe: protocol %v", proto)
	return unexpect
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.ETIMEDOUT) || (errors.As(err, &ne) && ne.Timeout())
}

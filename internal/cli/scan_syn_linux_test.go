package cli

import (
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// exeForNobody copies the test binary where user nobody can run it.
func exeForNobody(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "portolan-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.Open(portolanExe(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "portolan")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestScanSYN runs portolan scan from a lab namespace: as root a SYN scan
// (asked for, and by default) sees resets where connect sees refusals; as
// user nobody -sS fails with the fix named, --fallback and the default
// scan with connect, and CAP_NET_RAW alone is enough for -sS.
func TestScanSYN(t *testing.T) {
	testenv.RequireRoot(t)
	scanner, target, lk := netlab.NewPair(t)
	ln, err := target.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, nil)
	ports := "8080,8081"
	want := func(t *testing.T, r childResult, closedReason string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("scan: %v", r)
		}
		got := resultSet(t, "scan", jsonlResults(t, r.stdout))
		for _, a := range []netip.Addr{lk.B4, lk.B6} {
			for port, w := range map[portspec.Port]string{8080: "open syn-ack", 8081: "closed " + closedReason} {
				k := resultKey{a, port, portspec.TCP}
				if g := got[k]; g.State+" "+g.Reason != w {
					t.Errorf("%s = %s %s; want %s\n%v", k, g.State, g.Reason, w, r)
				}
			}
		}
	}
	args := []string{lk.B4.String(), lk.B6.String(), "-p", ports, "--no-store", "--format", "jsonl"}
	t.Run("root", func(t *testing.T) {
		want(t, runChild(t, portolanIn(t, scanner, append([]string{"scan", "-sS"}, args...)...)), "reset")
		want(t, runChild(t, portolanIn(t, scanner, append([]string{"scan"}, args...)...)), "reset")
	})

	bin := exeForNobody(t)
	nobody := func(caps []uintptr, a ...string) childResult {
		cmd := &exec.Cmd{Path: bin, Args: append([]string{"portolan", "scan"}, append(a, args...)...), Dir: filepath.Dir(bin),
			Env: portolanEnv(filepath.Dir(bin)),
			SysProcAttr: &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
				AmbientCaps: caps,
			}}
		var r childResult
		// Started from a thread inside the scanner's namespace, the
		// process runs there.
		if err := scanner.Do(func() error {
			r = runChild(t, cmd)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("unprivileged", func(t *testing.T) {
		r := nobody(nil, "-sS")
		if r.code != ExitError || !strings.Contains(r.stderr, "needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep "+bin) ||
			!strings.Contains(r.stderr, "--fallback") || r.stdout != "" {
			t.Errorf("-sS as nobody: %v\nwant exit %d and the fix named", r, ExitError)
		}
		r = nobody(nil, "-sS", "--fallback")
		want(t, r, "conn-refused")
		if !strings.Contains(r.stderr, "--fallback: scanning with TCP connect") {
			t.Errorf("--fallback says nothing of it: %v", r)
		}
		want(t, nobody(nil), "conn-refused")
	})
	t.Run("cap_net_raw", func(t *testing.T) {
		want(t, nobody([]uintptr{unix.CAP_NET_RAW}, "-sS", "-v"), "reset")
	})
}

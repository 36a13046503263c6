package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

func TestParseWhoTarget(t *testing.T) {
	tcp, udp, both := []portspec.Proto{portspec.TCP}, []portspec.Proto{portspec.UDP}, []portspec.Proto{portspec.TCP, portspec.UDP}
	for _, tc := range []struct {
		in     string
		port   uint16
		protos []portspec.Proto
		err    string
	}{
		{"8080", 8080, both, ""},
		{"8080/tcp", 8080, tcp, ""},
		{"53/udp", 53, udp, ""},
		{"U:53", 53, udp, ""},
		{"tcp/443", 443, tcp, ""},
		{"ssh", 22, both, ""},
		{"80-90", 0, nil, `"80-90" is 11 ports; who takes one`},
		{"80,443", 0, nil, `is 2 ports`},
		{"99999", 0, nil, "99999"},
		{"S:80", 0, nil, "names no TCP or UDP port"},
		{"", 0, nil, "empty"},
	} {
		got, err := parseWhoTarget(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseWhoTarget(%q) = %+v, %v; want error with %q", tc.in, got, err, tc.err)
			}
		case err != nil || got.port != tc.port || !slices.Equal(got.protos, tc.protos):
			t.Errorf("parseWhoTarget(%q) = %d %v, %v; want %d %v", tc.in, got.port, got.protos, err, tc.port, tc.protos)
		}
	}
}

// run calls Main in process and returns the exit code and both streams.
func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestWhoExitCodes: 0 when held, 1 when free, 2 for bad input.
func TestWhoExitCodes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	if code, out, errOut := run("who", port); code != ExitOK || !strings.Contains(out, "pid       "+strconv.Itoa(os.Getpid())) {
		t.Errorf("who %s (held by us) = %d\n%s%s; want 0 and our pid", port, code, out, errOut)
	}
	l.Close()
	if code, out, errOut := run("who", port+"/tcp"); code != ExitError || out != "" || errOut != "port "+port+"/tcp is free\n" {
		t.Errorf("who %s/tcp (closed) = %d, %q, %q; want 1 and the port free on stderr", port, code, out, errOut)
	}
	if code, _, errOut := run("who", "1-2"); code != ExitUsage || !strings.Contains(errOut, "who takes one") {
		t.Errorf("who 1-2 = %d, %q; want 2", code, errOut)
	}
	if code, _, _ := run("who"); code != ExitUsage {
		t.Errorf("who without a port = %d; want 2", code)
	}
}

// TestWhoAsNobody runs portolan as uid 65534: a port held by root still
// gets an answer (held, exit 0) that names the user and says why the
// process cannot be shown.
func TestWhoAsNobody(t *testing.T) {
	testenv.RequireRoot(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)

	// This test binary runs as portolan under that name (testscript.Main);
	// copy it out of the root-only build directory.
	dir, err := os.MkdirTemp("", "portolan-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	exe, _ := os.Executable()
	bin := filepath.Join(dir, "portolan")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(dst, src)
	src.Close()
	dst.Close()

	nobody := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errOut.String()
	}
	code, out, errOut := nobody("who", port)
	if code != 0 || !strings.Contains(out, "owner     unknown: owned by uid 0 (root): its process is visible to root only") ||
		!strings.Contains(out, "user      root (0)") || strings.Contains(out, "pid ") {
		t.Errorf("who %s as nobody = %d\n%s%s; want held, the owner unknown with the reason and user", port, code, out, errOut)
	}
	code, out, errOut = nobody("ls", "--port", port)
	if code != 0 || !strings.Contains(out, " ?  ") || !strings.Contains(errOut, "note: 1 socket of other users: their processes are visible to root only (run with sudo)") {
		t.Errorf("ls --port %s as nobody = %d\n%s%s; want the row with ? and a note", port, code, out, errOut)
	}
}

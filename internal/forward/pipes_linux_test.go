package forward

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"portolan/internal/testenv"
)

// smallPipesEnv marks the unprivileged child of TestSmallPipesUnprivileged.
const smallPipesEnv = "PORTOLAN_SMALL_PIPES_CHILD"

// unprivilegedUID runs the child: an id no account uses, so that no other
// process's pipes count against its limit.
const unprivilegedUID = "64123"

// TestSmallPipesUnprivileged runs the relay as a user without privileges
// who already holds more pipe pages than fs.pipe-user-pages-soft, so that
// the kernel gives every new pipe 8 KiB: connections whose client reads
// slowly must still get every byte. The relay assumed its pipes were
// larger than its 16 KiB copy buffer and cut them ("write pipe:
// input/output error"). As root the test runs itself again as an unused
// uid (setpriv), as the documented systemd unit's DynamicUser would.
func TestSmallPipesUnprivileged(t *testing.T) {
	if os.Getenv(smallPipesEnv) != "" {
		smallPipesChild(t)
		return
	}
	if os.Geteuid() != 0 {
		// Already unprivileged: run here.
		smallPipesChild(t)
		return
	}
	setpriv := testenv.RequireCommand(t, "setpriv")
	// The test binary may sit in a directory only root can enter.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "forward.test")
	testenv.CopyExecutable(t, os.Args[0], bin)
	cmd := exec.Command(setpriv, "--reuid="+unprivilegedUID, "--regid="+unprivilegedUID, "--clear-groups", "--inh-caps=-all",
		bin, "-test.run=^TestSmallPipesUnprivileged$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), smallPipesEnv+"=1")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("unprivileged child:\n%s", out)
	if err != nil {
		t.Fatalf("unprivileged child: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestSmallPipesUnprivileged")) {
		t.Fatal("the unprivileged child did not pass")
	}
}

func smallPipesChild(t *testing.T) {
	// Hold 1 MiB pipes until the kernel refuses to grow another: this
	// user is then over its soft limit, as a relay holding ~64 busy
	// connections would be.
	var held [][2]int
	defer func() {
		for _, p := range held {
			unix.Close(p[0])
			unix.Close(p[1])
		}
	}()
	over := false
	for range 400 {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		held = append(held, fds)
		if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			if !errors.Is(err, unix.EPERM) {
				t.Fatal(err)
			}
			over = true
			break
		}
	}
	if !over {
		t.Fatal("400 pipes of 1 MiB and still under fs.pipe-user-pages-soft: is this process privileged (CAP_SYS_RESOURCE)?")
	}
	var fds [2]int
	unix.Pipe2(fds[:], unix.O_CLOEXEC)
	size, _ := unix.FcntlInt(uintptr(fds[0]), unix.F_GETPIPE_SZ, 0)
	unix.Close(fds[0])
	unix.Close(fds[1])
	if size >= copyBuf {
		t.Fatalf("a new pipe holds %d bytes over the soft limit; want less than %d for this test", size, copyBuf)
	}
	t.Logf("new pipes hold %d bytes", size)

	// Messages of 12,000 bytes, read through the copy buffer, into a
	// destination that fills: a send takes part of one, and the rest is
	// more than a small pipe holds.
	moveThroughFullSocket(t, 12000, 300)
}

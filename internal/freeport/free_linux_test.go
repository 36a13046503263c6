package freeport

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

const netnsChildEnv = "PORTOLAN_FREE_NETNS_CHILD"

// TestFreeKernelPolicy runs TestFreeKernelPolicyChild in a network
// namespace of its own, where it may set the ephemeral and reserved port
// ranges without touching the machine's.
func TestFreeKernelPolicy(t *testing.T) {
	testenv.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFreeKernelPolicyChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child in a new network namespace: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Skipf("child skipped:\n%s", out)
	}
}

func TestFreeKernelPolicyChild(t *testing.T) {
	if os.Getenv(netnsChildEnv) == "" {
		t.Skip("runs only as a child of TestFreeKernelPolicy")
	}
	setLoopbackUp(t)
	write := func(name, v string) {
		if err := os.WriteFile("/proc/sys/net/ipv4/"+name, []byte(v), 0); err != nil {
			t.Skipf("cannot set %s in a namespace here: %v", name, err)
		}
	}
	write("ip_local_port_range", "40000 40999")
	write("ip_local_reserved_ports", "20000-20009")

	k := readKernelPortPolicy()
	if k.ephLo != 40000 || k.ephHi != 40999 || k.reserved.String() != "T:20000-20009" {
		t.Fatalf("readKernelPortPolicy() = %d-%d reserved %q; want 40000-40999 reserved T:20000-20009", k.ephLo, k.ephHi, k.reserved.String())
	}
	ctx := context.Background()
	rng := new(portspec.Set)
	rng.AddRange(portspec.TCP, 20000, 20010)
	got, err := FindN(ctx, 1, Options{Range: rng, Dir: t.TempDir()})
	if err != nil || got[0] != 20010 {
		t.Errorf("FindN(20000-20010 with 20000-20009 reserved) = %v, %v; want [20010]", got, err)
	}
	_, err = FindN(ctx, 2, Options{Range: rng, Dir: t.TempDir()})
	var nf *NoFreePortError
	if !errors.As(err, &nf) || nf.Kernel != 10 {
		t.Errorf("FindN(2) = %v; want 10 reserved by the kernel", err)
	}
	ports, err := FindN(ctx, 500, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("FindN(500) = %v", err)
	}
	for _, p := range ports {
		if p >= 40000 && p <= 40999 || p >= 20000 && p <= 20009 || p < 1024 {
			t.Errorf("FreePorts in the default range gave %d: ephemeral, reserved or privileged", p)
		}
	}
}

// setLoopbackUp brings lo up in a fresh namespace (it starts down, without
// 127.0.0.1), with the SIOCSIFFLAGS ioctl.
func setLoopbackUp(t *testing.T) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var ifr [40]byte // struct ifreq: name[16], then flags (short)
	copy(ifr[:], "lo")
	ioctl := func(req uintptr) error {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
			return e
		}
		return nil
	}
	if err := ioctl(syscall.SIOCGIFFLAGS); err != nil {
		t.Fatalf("SIOCGIFFLAGS lo: %v", err)
	}
	*(*uint16)(unsafe.Pointer(&ifr[16])) |= syscall.IFF_UP
	if err := ioctl(syscall.SIOCSIFFLAGS); err != nil {
		t.Fatalf("SIOCSIFFLAGS lo: %v", err)
	}
}

const unprivChildEnv = "PORTOLAN_FREE_UNPRIV_CHILD"

// TestFreeUnprivileged runs TestFreeUnprivilegedChild as user nobody: ports
// below ip_unprivileged_port_start are reported as not permitted, and a
// registry directory owned by someone else is refused.
func TestFreeUnprivileged(t *testing.T) {
	testenv.RequireRoot(t)
	// The test binary may sit in a directory only root can enter.
	dir, err := os.MkdirTemp("", "portolan-free-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sockets.test")
	if err := freeCopyFile(os.Args[0], bin, 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "registry")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mine, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	rootOwned := filepath.Join(dir, "root-registry")
	if err := os.Mkdir(rootOwned, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestFreeUnprivilegedChild$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), unprivChildEnv+"="+mine+"|"+rootOwned)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Skipf("child skipped:\n%s", out)
	}
}

func TestFreeUnprivilegedChild(t *testing.T) {
	env := os.Getenv(unprivChildEnv)
	if env == "" {
		t.Skip("runs only as a child of TestFreeUnprivileged")
	}
	mine, rootOwned, _ := strings.Cut(env, "|")
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Skip(err)
	}
	start, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if start < 11 {
		t.Skipf("ip_unprivileged_port_start is %d: ports 1-10 are not privileged here", start)
	}
	rng := new(portspec.Set)
	rng.AddRange(portspec.TCP, 1, 10)
	_, err = FindN(context.Background(), 1, Options{Range: rng, Dir: mine})
	var nf *NoFreePortError
	if !errors.As(err, &nf) || nf.Denied+nf.InUse != 10 || nf.Denied == 0 {
		t.Fatalf("FindN(1-10) as uid %d = %v; want not permitted", os.Getuid(), err)
	}
	if !strings.Contains(err.Error(), "not permitted (privileged: below net.ipv4.ip_unprivileged_port_start)") {
		t.Errorf("error %q does not explain the privileged ports", err)
	}
	r, err := Reserve(context.Background(), 1, time.Minute, Options{Dir: mine})
	if err != nil {
		t.Fatalf("Reserve in our own registry = %v", err)
	}
	r.Release()
	_, err = Reserve(context.Background(), 1, time.Minute, Options{Dir: rootOwned})
	if err == nil || !strings.Contains(err.Error(), "owned by uid 0, not by us") {
		t.Errorf("Reserve in a registry owned by root = %v; want it refused", err)
	}
}

func freeCopyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

package sockets

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
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
	got, err := FreePorts(ctx, 1, FreeOptions{Range: rng, Dir: t.TempDir()})
	if err != nil || got[0] != 20010 {
		t.Errorf("FreePorts(20000-20010 with 20000-20009 reserved) = %v, %v; want [20010]", got, err)
	}
	_, err = FreePorts(ctx, 2, FreeOptions{Range: rng, Dir: t.TempDir()})
	var nf *NoFreePortError
	if !errors.As(err, &nf) || nf.Kernel != 10 {
		t.Errorf("FreePorts(2) = %v; want 10 reserved by the kernel", err)
	}
	ports, err := FreePorts(ctx, 500, FreeOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("FreePorts(500) = %v", err)
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

package wait

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWaitAcceptQueueFull: a listener that never accepts, with its
// backlog used up, makes the kernel drop new SYNs, so a connect times out
// as if filtered. The reason must say what portolan can see: the accept
// queue is full.
func TestWaitAcceptQueueFull(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // room for one connection
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	o := fast
	o.AttemptTimeout = 300 * time.Millisecond
	st, _ := waitFail(t, addr, o)
	if !strings.Contains(st.Reason, "accept queue full (1 waiting, backlog 0)") || strings.Contains(st.Reason, "filtered") {
		t.Errorf("Wait(%s) with the accept queue full: reason %q; want it to say the accept queue is full", addr, st.Reason)
	}
}

// TestWaitUnixAbstract: an abstract socket name has no file; the reason
// must not speak of one.
func TestWaitUnixAbstract(t *testing.T) {
	name := fmt.Sprintf("@portolan-wait-test-%d", os.Getpid())
	st, _ := waitFail(t, "unix:"+name, fast)
	if !strings.Contains(st.Reason, "abstract name "+name) || strings.Contains(st.Reason, "file") {
		t.Errorf("Wait(unix:%s) with nothing there: reason %q; want it to name the abstract socket, no file", name, st.Reason)
	}
	if _, err := tryListen(t, "unix", name); err != nil {
		t.Fatal(err)
	}
	if st, err := waitOne(t, "unix:"+name, fast); err != nil || !st.Ready {
		t.Errorf("Wait(unix:%s) listening = %+v, %v; want ready", name, st, err)
	}
}

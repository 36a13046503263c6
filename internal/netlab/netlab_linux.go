package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"portolan/internal/procstat"
)

// hostSys is the Linux state of a host.
type hostSys struct {
	nl *netlink.Handle // route netlink socket living inside the namespace
}

// threadNetns is the calling thread's namespace; /proc/self would name the
// main thread's instead.
const threadNetns = "/proc/thread-self/ns/net"

// doIn runs fn on the calling goroutine's thread switched into the
// namespace nsfd, and switches back.
func doIn(nsfd int, fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open(threadNetns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open %s: %w", threadNetns, err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the runtime retires the thread when this
			// goroutine ends, instead of reusing it in the wrong namespace.
			panic(fmt.Sprintf("netlab: cannot restore network namespace: %v", err))
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// createHost makes the namespace of h, bind-mounted at h.Path(), and sets
// it up.
func createHost(h *Host) error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	if err := createNetns(h.Path()); err != nil {
		return err
	}
	fd, err := unix.Open(h.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	h.fd = fd
	h.sys.nl, err = netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket in namespace: %w", err)
	}
	lo, err := h.sys.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.sys.nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	// DAD would hold new IPv6 addresses back for a second or more; the
	// nodad flag covers our own addresses, these cover link-local ones.
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := h.SetSysctl(k, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// createNetns makes a network namespace and bind-mounts it at path, the way
// `ip netns add` does, on a thread of its own that it then switches back.
func createNetns(path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(threadNetns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open %s: %w", threadNetns, err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		err = bindThreadNetns(path)
		if e := unix.Setns(orig, unix.CLONE_NEWNET); e != nil {
			// Left locked on purpose: the thread dies with this goroutine.
			errc <- errors.Join(err, fmt.Errorf("restore network namespace: %w", e))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// bindThreadNetns pins the calling thread's namespace at path.
func bindThreadNetns(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	f.Close()
	if err := unix.Mount(threadNetns, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("bind-mount namespace at %s: %w", path, err)
	}
	return nil
}

// closeHost kills the processes inside h's namespace and removes it. It
// copes with hosts that were only partly made.
func closeHost(h *Host) error {
	var errs []error
	var st unix.Stat_t
	known := h.fd >= 0 && unix.Fstat(h.fd, &st) == nil
	if known {
		errs = append(errs, killInside(st.Dev, st.Ino))
	}
	errs = append(errs, removeNetns(h.Path()))
	// Once more after the unmount, for a process that was entering just
	// then (`ip netns exec` between open and setns). The open fd keeps the
	// namespace, and so its inode number, from being reused meanwhile.
	if known {
		errs = append(errs, killInside(st.Dev, st.Ino))
	}
	if h.sys.nl != nil {
		h.sys.nl.Close()
		h.sys.nl = nil
	}
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
	return errors.Join(errs...)
}

// removeNetns unmounts and deletes a namespace's bind mount. The namespace
// itself goes once nothing holds it: no mount, no open file, no process.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// killInside sends SIGKILL to every other process whose network namespace
// is the one with inode ino on device dev. A process that is killed dies
// out of the namespace at once, even if it stays a zombie until reaped.
func killInside(dev, ino uint64) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	self := os.Getpid()
	var errs []error
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil || st.Dev != dev || st.Ino != ino {
			continue
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("kill pid %d in lab namespace: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

func sweepStale() error {
	ents, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep stale namespaces: %w", err)
	}
	var errs []error
	for _, e := range ents {
		pid, start, ok := parseName(e.Name())
		if !ok {
			continue
		}
		if s, err := procStart(pid); err == nil && s == start {
			continue // its lab is alive
		}
		path := filepath.Join(RunDir, e.Name())
		errs = append(errs, killInsidePath(path), removeNetns(path))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep stale namespaces: %w", err)
	}
	return nil
}

// killInsidePath kills the processes inside the namespace mounted at path,
// if one is. It holds the namespace open meanwhile, so that its inode
// number cannot pass to a new namespace while /proc is scanned.
func killInsidePath(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // gone already, or never mounted
	}
	defer unix.Close(fd)
	var fs unix.Statfs_t
	var st unix.Stat_t
	if unix.Fstatfs(fd, &fs) != nil || fs.Type != unix.NSFS_MAGIC || unix.Fstat(fd, &st) != nil {
		return nil // a plain file left between create and mount
	}
	return killInside(st.Dev, st.Ino)
}

// self returns this process's pid and start time.
func self() (int, uint64, error) {
	pid := os.Getpid()
	start, err := procStart(pid)
	return pid, start, err
}

// procStart returns a process's start time in clock ticks after boot,
// which with the pid names it uniquely.
func procStart(pid int) (uint64, error) {
	st, err := procstat.Read(pid)
	return st.StartTicks, err
}

// createLink makes the veth pair number n of a lab from inside A's
// namespace, with the B end created directly in B's, then addresses both
// ends, sets them up and waits until they pass packets.
func createLink(lk *Link, n int) error {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         lk.ADev,
			HardwareAddr: lk.AMAC,
			// Both ends would otherwise get the same small ifindex in
			// their fresh namespaces, and the kernel treats a device
			// whose ifindex equals its peer's (iflink) as not urgent:
			// it starts the queue only after a linkwatch delay of up to
			// a second, dropping what is sent meanwhile.
			Index: linkIndexBase + n,
		},
		PeerName:         lk.BDev,
		PeerHardwareAddr: lk.BMAC,
		PeerNamespace:    netlink.NsFd(lk.B.fd),
	}
	if err := lk.A.sys.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", lk.ADev, lk.BDev, err)
	}
	ends := []struct {
		h      *Host
		dev    string
		a4, a6 netip.Addr
	}{{lk.A, lk.ADev, lk.A4, lk.A6}, {lk.B, lk.BDev, lk.B4, lk.B6}}
	for _, e := range ends {
		if err := addAddr(e.h, e.dev, netip.PrefixFrom(e.a4, lk.Net4.Bits())); err != nil {
			return err
		}
		if err := addAddr(e.h, e.dev, netip.PrefixFrom(e.a6, lk.Net6.Bits())); err != nil {
			return err
		}
		l, err := e.h.sys.nl.LinkByName(e.dev)
		if err != nil {
			return fmt.Errorf("find %s on %s: %w", e.dev, e.h.name, err)
		}
		if err := e.h.sys.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up on %s: %w", e.dev, e.h.name, err)
		}
	}
	for _, e := range ends {
		if err := waitOperUp(e.h, e.dev); err != nil {
			return err
		}
		if err := waitSolicited(e.h, e.dev, e.a6); err != nil {
			return err
		}
	}
	return nil
}

// waitSolicited waits until dev on h listens to the solicited-node
// multicast group of a, which the kernel joins a moment after the address
// becomes usable; before that, a neighbour solicitation for a is dropped
// and the sender's first packets wait a second for the retry.
func waitSolicited(h *Host, dev string, a netip.Addr) error {
	b := a.As16()
	group := fmt.Sprintf("ff0200000000000000000001ff%02x%02x%02x", b[13], b[14], b[15])
	deadline := time.Now().Add(operUpWait)
	for {
		var joined bool
		err := h.Do(func() error {
			igmp6, err := os.ReadFile("/proc/thread-self/net/igmp6")
			if err != nil {
				return err
			}
			joined = hasGroup(igmp6, dev, group)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read multicast groups on %s: %w", h.name, err)
		}
		if joined {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s: address %s not ready after %v", dev, h.name, a, operUpWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// linkIndexBase numbers the A ends of links (B ends get small automatic
// indexes).
const linkIndexBase = 10000

// operUpWait bounds the wait for a new link to become operational; the
// kernel usually takes microseconds, at worst about a second.
const operUpWait = 10 * time.Second

// waitOperUp waits until dev on h is operationally up, so that the caller's
// first packets are not dropped.
func waitOperUp(h *Host, dev string) error {
	deadline := time.Now().Add(operUpWait)
	for {
		l, err := h.sys.nl.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("find %s on %s: %w", dev, h.name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s: not up after %v (state %s)", dev, h.name, operUpWait, l.Attrs().OperState)
		}
		time.Sleep(time.Millisecond)
	}
}

// addAddr adds p to dev and, for an IPv6 address on an interface that is
// up, waits until it answers neighbour solicitations.
func addAddr(h *Host, dev string, p netip.Prefix) error {
	l, err := h.sys.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s on %s: %w", dev, h.name, err)
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.sys.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s on %s: %w", p, dev, h.name, err)
	}
	if p.Addr().Is6() && l.Attrs().OperState == netlink.OperUp {
		return waitSolicited(h, dev, p.Addr())
	}
	return nil
}

func addRoute(h *Host, dst netip.Prefix, via netip.Addr) error {
	return h.sys.nl.RouteAdd(&netlink.Route{Dst: ipNet(dst), Gw: net.IP(via.AsSlice())})
}

func pinNeighbors(lk *Link) error {
	sides := []struct {
		h      *Host
		dev    string
		v4, v6 netip.Addr // the far end
		mac    net.HardwareAddr
	}{{lk.A, lk.ADev, lk.B4, lk.B6, lk.BMAC}, {lk.B, lk.BDev, lk.A4, lk.A6, lk.AMAC}}
	for _, s := range sides {
		l, err := s.h.sys.nl.LinkByName(s.dev)
		if err != nil {
			return fmt.Errorf("find %s on %s: %w", s.dev, s.h.name, err)
		}
		for _, ip := range []netip.Addr{s.v4, s.v6} {
			fam := netlink.FAMILY_V4
			if ip.Is6() {
				fam = netlink.FAMILY_V6
			}
			n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: s.mac}
			if err := s.h.sys.nl.NeighSet(n); err != nil {
				return fmt.Errorf("neighbour %s on %s: %w", ip, s.h.name, err)
			}
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

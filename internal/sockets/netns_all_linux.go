package sockets

import (
	"bytes"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"portolan/internal/owners"
)

// Namespaces lists every network namespace it can see: the named ones
// under /run/netns and those of every process in /proc (once each, by
// inode), the caller's first. Seeing other users' processes' namespaces
// needs root.
func Namespaces() ([]Namespace, error) {
	byIno := map[uint64]*Namespace{}
	var order []uint64
	add := func(ino uint64) *Namespace {
		if n, ok := byIno[ino]; ok {
			return n
		}
		n := &Namespace{Inode: ino}
		byIno[ino] = n
		order = append(order, ino)
		return n
	}
	var st unix.Stat_t
	if unix.Stat("/proc/thread-self/ns/net", &st) == nil {
		n := add(st.Ino)
		n.Self, n.Path = true, "/proc/thread-self/ns/net"
	}
	if ents, err := os.ReadDir(RunDirNetns); err == nil {
		for _, e := range ents {
			p := RunDirNetns + "/" + e.Name()
			if unix.Stat(p, &st) != nil || st.Dev == 0 {
				continue
			}
			var fs unix.Statfs_t
			if unix.Statfs(p, &fs) != nil || fs.Type != unix.NSFS_MAGIC {
				continue // a file left behind, not a mounted namespace
			}
			n := add(st.Ino)
			if n.Name == "" || e.Name() < n.Name {
				n.Name = e.Name()
				if !n.Self {
					n.Path = p
				}
			}
		}
	}
	procFD, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(procFD)
	pids, err := owners.PIDs(procFD)
	if err != nil {
		return nil, err
	}
	for _, pid := range pids { // ascending: the first seen is the lowest
		p := "/proc/" + strconv.Itoa(int(pid)) + "/ns/net"
		if unix.Stat(p, &st) != nil {
			continue
		}
		n := add(st.Ino)
		if n.PID != 0 {
			continue
		}
		n.PID = int(pid)
		if n.Path == "" {
			n.Path = p
		}
	}
	out := make([]Namespace, 0, len(order))
	for _, ino := range order {
		n := byIno[ino]
		if n.PID != 0 {
			base := "/proc/" + strconv.Itoa(n.PID) + "/"
			if b, err := os.ReadFile(base + "comm"); err == nil {
				n.Comm = string(bytes.TrimSpace(b))
			}
			if b, err := os.ReadFile(base + "cgroup"); err == nil {
				if path, err := owners.ParseProcCgroup(b); err == nil && path != "" {
					n.Cgroup = owners.ParseCgroupPath(path)
				}
			}
		}
		if n.Path != "" {
			out = append(out, *n)
		}
	}
	slices.SortFunc(out, sortNamespaces(out))
	return out, nil
}

package sockets

// Every network namespace of the machine: those named under /run/netns
// (ip netns) and those only a process holds (containers), for --all-netns.

import (
	"cmp"
	"fmt"

	"portolan/internal/owners"
)

// RunDirNetns is where ip netns mounts named network namespaces.
const RunDirNetns = "/run/netns"

// Namespace is a network namespace.
type Namespace struct {
	// Path opens it: /run/netns/NAME, or /proc/PID/ns/net of its lowest pid.
	Path string
	// Name is its name under /run/netns; empty for one only processes hold.
	Name string
	// PID is the lowest pid of a process in it (0 when none is).
	PID int
	// Comm is that process's command name.
	Comm string
	// Inode is the namespace's inode number (what ip netns identify shows
	// as net:[INODE]).
	Inode uint64
	// Self says it is the caller's own namespace.
	Self bool
	// Cgroup is the cgroup of PID, which names the container when the
	// path shows one (docker, podman, containerd, CRI-O, Kubernetes, LXC).
	Cgroup *owners.Cgroup
}

// Label names the namespace for people: its name, "host" for the
// caller's own, else the container (runtime and short id, or pod) or the
// process in it.
func (n *Namespace) Label() string {
	switch {
	case n.Name != "":
		return n.Name
	case n.Self:
		return "host"
	case n.Cgroup != nil && n.Cgroup.Container != "":
		return n.Cgroup.Runtime + ":" + owners.ShortID(n.Cgroup.Container)
	case n.Cgroup != nil && n.Cgroup.Pod != "":
		return "pod:" + n.Cgroup.Pod
	case n.PID != 0:
		return fmt.Sprintf("pid:%d(%s)", n.PID, n.Comm)
	}
	return fmt.Sprintf("net:[%d]", n.Inode)
}

// sortNamespaces puts the caller's first, then named ones by name, then
// the others by pid.
func sortNamespaces(ns []Namespace) func(a, b Namespace) int {
	return func(a, b Namespace) int {
		if a.Self != b.Self {
			if a.Self {
				return -1
			}
			return 1
		}
		if (a.Name == "") != (b.Name == "") {
			if a.Name != "" {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.PID, b.PID))
	}
}

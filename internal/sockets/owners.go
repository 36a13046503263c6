package sockets

// The owners of the table's sockets, found by package owners from their
// inodes.

import (
	"context"
	"fmt"

	"portolan/internal/owners"
)

// FindOwners fills Procs, Unseen and Cgroup of each socket in socks with
// what owners.Find learns of it.
func FindOwners(ctx context.Context, socks []Socket, opt owners.Options) error {
	qs := make([]owners.Query, len(socks))
	for i := range socks {
		s := &socks[i]
		qs[i] = owners.Query{Inode: s.Inode, UID: s.UID, CgroupID: s.CgroupID}
	}
	res, err := owners.Find(ctx, qs, opt)
	for i := range res {
		socks[i].Procs, socks[i].Unseen, socks[i].Cgroup = res[i].Procs, res[i].Unseen, res[i].Cgroup
	}
	return err
}

// FindUnixOwners fills Procs and Unseen of each unix socket, as
// FindOwners does for TCP and UDP.
func FindUnixOwners(ctx context.Context, socks []UnixSocket, opt owners.Options) error {
	qs := make([]owners.Query, len(socks))
	for i := range socks {
		qs[i] = owners.Query{Inode: socks[i].Inode, UID: socks[i].UID}
	}
	res, err := owners.Find(ctx, qs, opt)
	for i := range res {
		socks[i].Procs, socks[i].Unseen = res[i].Procs, res[i].Unseen
	}
	return err
}

// ExplainUnseen says in a sentence why the owner of s is not shown.
func ExplainUnseen(s *Socket) string {
	switch s.Unseen {
	case owners.NoProcess:
		if s.State == TimeWait {
			return "TIME_WAIT: the connection is closed; the kernel keeps the port until the timer ends"
		}
		return "no process: the kernel holds it (pending or closed connection)"
	case owners.Denied:
		return fmt.Sprintf("owned by uid %d (%s): its process is visible to root only", s.UID, owners.LookupUser(s.UID))
	case owners.Hidden:
		return fmt.Sprintf("owned by uid %d (%s): /proc is mounted with hidepid, other users' processes are hidden", s.UID, owners.LookupUser(s.UID))
	case owners.NotFound:
		return "no visible process holds it: a kernel socket, a process outside this PID namespace, or one that exited"
	case owners.Skipped:
		return "owner not searched"
	}
	return ""
}

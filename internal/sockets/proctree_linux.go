package sockets

import (
	"portolan/internal/procstat"
)

// HolderTree returns the process tree of holders: each holder under its
// nearest ancestor that is a holder too (a pre-forked server's workers
// under their master), or under the ancestor that joins it with other
// holders, from /proc.
func HolderTree(holders []*Process) []*TreeNode {
	return buildTree(holders, func(pid int) (int, string, bool) {
		st, err := procstat.Read(pid)
		if err != nil {
			return 0, "", false
		}
		return st.PPID, st.Comm, true
	})
}

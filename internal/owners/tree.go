package owners

// The process tree of a port's holders: a pre-forked server's master with
// its workers under it, up to the process that started it all.

import (
	"cmp"
	"slices"

	"portolan/internal/procstat"
)

// TreeNode is a process in the tree of a socket's holders.
type TreeNode struct {
	PID  int
	Comm string
	// Holds says the process holds one of the sockets asked about; the
	// others are ancestors, shown to tie the holders together.
	Holds    bool
	Children []*TreeNode
}

// Tree returns the process tree of holders: each holder under its nearest
// ancestor that is a holder too (a pre-forked server's workers under their
// master), or under the ancestor that joins it with other holders, from
// /proc. Off Linux the holders stand alone.
func Tree(holders []*Process) []*TreeNode {
	return buildTree(holders, func(pid int) (int, string, bool) {
		st, err := procstat.Read(pid)
		if err != nil {
			return 0, "", false
		}
		return st.PPID, st.Comm, true
	})
}

// procInfo is what building a tree needs of a process: its parent and
// name; ok false when it cannot be read (gone, or not visible).
type procInfo func(pid int) (ppid int, comm string, ok bool)

// buildTree returns the holders and their ancestors as a forest, each
// level ordered by pid. The ancestors stop below pid 1 (init, or a
// container's first process, is the root of nearly everything and says
// nothing) unless init itself holds a socket.
func buildTree(holders []*Process, info procInfo) []*TreeNode {
	nodes := map[int]*TreeNode{}
	parent := map[int]int{}
	for _, h := range holders {
		if n, ok := nodes[h.PID]; ok {
			n.Holds = true
			continue
		}
		nodes[h.PID] = &TreeNode{PID: h.PID, Comm: h.Comm, Holds: true}
	}
	// Walk up from each holder, at most 64 levels (a loop in what /proc
	// said, as pids are reused while reading, must not hang us).
	for _, h := range holders {
		pid := h.PID
		for range 64 {
			if _, done := parent[pid]; done {
				break
			}
			ppid, comm, ok := info(pid)
			if n := nodes[pid]; n != nil && n.Comm == "" {
				n.Comm = comm
			}
			if !ok || ppid <= 1 {
				parent[pid] = 0
				break
			}
			parent[pid] = ppid
			if _, ok := nodes[ppid]; !ok {
				_, pcomm, _ := info(ppid)
				nodes[ppid] = &TreeNode{PID: ppid, Comm: pcomm}
			}
			pid = ppid
		}
	}
	var roots []*TreeNode
	for pid, n := range nodes {
		if p, ok := nodes[parent[pid]]; ok && parent[pid] != 0 {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	byPID := func(a, b *TreeNode) int { return cmp.Compare(a.PID, b.PID) }
	for _, n := range nodes {
		slices.SortFunc(n.Children, byPID)
	}
	slices.SortFunc(roots, byPID)
	return pruneTree(roots)
}

// pruneTree drops the ancestors above the first one that joins two or
// more holders (or is a holder): the chain from init down to a server's
// master says little.
func pruneTree(roots []*TreeNode) []*TreeNode {
	var out []*TreeNode
	for _, r := range roots {
		for !r.Holds && len(r.Children) == 1 {
			r = r.Children[0]
		}
		out = append(out, r)
	}
	return out
}

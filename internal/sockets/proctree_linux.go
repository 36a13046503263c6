package sockets

import (
	"bytes"
	"os"
	"strconv"
)

// HolderTree returns the process tree of holders: each holder under its
// nearest ancestor that is a holder too (a pre-forked server's workers
// under their master), or under the ancestor that joins it with other
// holders, from /proc.
func HolderTree(holders []*Process) []*TreeNode {
	return buildTree(holders, func(pid int) (int, string, bool) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, "", false
		}
		f, err := parseStatFacts(string(b))
		if err != nil {
			return 0, "", false
		}
		comm := ""
		if i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')'); i >= 0 && j > i {
			comm = string(b[i+1 : j])
		}
		return f.ppid, comm, true
	})
}

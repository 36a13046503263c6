package owners

import (
	"fmt"
	"strings"
	"testing"
)

// treeString writes a forest as "pid(comm)*[children]", * marking holders.
func treeString(ns []*TreeNode) string {
	var parts []string
	for _, n := range ns {
		s := fmt.Sprintf("%d(%s)", n.PID, n.Comm)
		if n.Holds {
			s += "*"
		}
		if len(n.Children) > 0 {
			s += "[" + treeString(n.Children) + "]"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestBuildTree(t *testing.T) {
	// pid -> ppid, comm: 1 init; 10 sh under 1; 20 master under 10;
	// 21, 22 workers under 20; 30 another server under 1; 40 a daemon
	// whose parent is gone (reparented to 1).
	procs := map[int]struct {
		ppid int
		comm string
	}{1: {0, "init"}, 10: {1, "sh"}, 20: {10, "master"}, 21: {20, "worker"}, 22: {20, "worker"}, 30: {1, "other"}, 40: {1, "daemon"}, 50: {10, "sidecar"}}
	info := func(pid int) (int, string, bool) {
		p, ok := procs[pid]
		return p.ppid, p.comm, ok
	}
	cases := []struct {
		name    string
		holders []int
		want    string
	}{
		{"pre-fork", []int{20, 21, 22}, "20(master)*[21(worker)* 22(worker)*]"},
		{"workers only", []int{21, 22}, "20(master)[21(worker)* 22(worker)*]"},
		{"one", []int{30}, "30(other)*"},
		{"joined by the shell", []int{21, 50}, "10(sh)[20(master)[21(worker)*] 50(sidecar)*]"},
		{"unrelated", []int{30, 40}, "30(other)* 40(daemon)*"},
		{"gone", []int{99}, "99()*"},
	}
	for _, c := range cases {
		var hs []*Process
		for _, pid := range c.holders {
			hs = append(hs, &Process{PID: pid})
		}
		if got := treeString(buildTree(hs, info)); got != c.want {
			t.Errorf("buildTree(%s %v) = %s; want %s", c.name, c.holders, got, c.want)
		}
	}
}

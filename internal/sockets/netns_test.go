package sockets

import (
	"testing"

	"portolan/internal/owners"
)

func TestNamespaceLabel(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		ns   Namespace
		want string
	}{
		{Namespace{Name: "blue", PID: 9}, "blue"},
		{Namespace{Self: true, PID: 1}, "host"},
		{Namespace{PID: 77, Comm: "nginx", Cgroup: owners.ParseCgroupPath("/system.slice/docker-" + id + ".scope")}, "docker:0123456789ab"},
		{Namespace{PID: 78, Comm: "app", Cgroup: owners.ParseCgroupPath("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c3d4e_0000_1111_2222_333344445555.slice")}, "pod:1b2c3d4e-0000-1111-2222-333344445555"},
		{Namespace{PID: 79, Comm: "sleep", Cgroup: owners.ParseCgroupPath("/user.slice")}, "pid:79(sleep)"},
		{Namespace{Inode: 4026531840}, "net:[4026531840]"},
	}
	for _, c := range cases {
		if got := c.ns.Label(); got != c.want {
			t.Errorf("Label(%+v) = %q; want %q", c.ns, got, c.want)
		}
	}
}

package owners

import (
	"testing"

	"portolan/internal/portspec"
)

func TestStopAdvice(t *testing.T) {
	nginxUnit := &Cgroup{Path: "/system.slice/nginx.service", Unit: "nginx.service"}
	cases := []struct {
		name  string
		procs []*Process
		want  string
	}{
		{"plain", []*Process{{PID: 9, Comm: "node"}}, "stop pid 9 (node): portolan kill 3000/tcp"},
		{"unit", []*Process{{PID: 9, Comm: "nginx", Cgroup: nginxUnit}}, "stop pid 9 (nginx, unit nginx.service): systemctl stop nginx.service"},
		{"container", []*Process{{PID: 9, Comm: "redis", Cgroup: &Cgroup{Runtime: "podman", Container: "abc"}}}, "stop the podman container abc that runs pid 9 (redis): podman stop abc"},
		{"user unit", []*Process{{PID: 9, Comm: "bash", Cgroup: &Cgroup{Path: "/user.slice/user-1000.slice/user@1000.service", Unit: "user@1000.service"}}}, "stop pid 9 (bash): portolan kill 3000/tcp"},
		{"forked", []*Process{{PID: 7043, Comm: "srv"}, {PID: 7044, Comm: "srv"}, {PID: 7045, Comm: "worker"}},
			"stop pids 7043, 7044 and 7045 (srv, worker): each holds the socket open, so the port is free only when all have exited: portolan kill 3000/tcp signals every one"},
		{"forked in a unit", []*Process{{PID: 9, Comm: "nginx", Cgroup: nginxUnit}, {PID: 10, Comm: "nginx", Cgroup: nginxUnit}},
			"stop pids 9 and 10 (nginx), all in unit nginx.service: systemctl stop nginx.service"},
		{"forked, one outside the unit", []*Process{{PID: 9, Comm: "nginx", Cgroup: nginxUnit}, {PID: 10, Comm: "sh"}},
			"stop pids 9 and 10 (nginx, sh): each holds the socket open, so the port is free only when all have exited: portolan kill 3000/tcp signals every one"},
	}
	for _, c := range cases {
		if got := StopAdvice(c.procs, 3000, portspec.TCP); got != c.want {
			t.Errorf("StopAdvice(%s) = %q; want %q", c.name, got, c.want)
		}
	}
}

package sockets

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/procstat"
)

func TestRefusal(t *testing.T) {
	svc := &Cgroup{Path: "/system.slice/nginx.service", Unit: "nginx.service"}
	userSvc := &Cgroup{Path: "/user.slice/user-1000.slice/user@1000.service/app.slice/vite.service", Unit: "vite.service"}
	docker := &Cgroup{Path: "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope", Unit: "docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope", Runtime: "docker", Container: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	session := &Cgroup{Path: "/user.slice/user-1000.slice/session-2.scope", Unit: "session-2.scope"}
	cases := []struct {
		name          string
		p             Process
		f             procFacts
		force         bool
		selfCgroup    string
		wantRefused   string // substring; empty: allowed
		wantInsteadOf string
	}{
		{"plain", Process{PID: 4000, Cgroup: session}, procFacts{ppid: 3000}, false, "", "", ""},
		{"pid 1", Process{PID: 1}, procFacts{}, false, "", "pid 1", ""},
		{"pid 1 forced", Process{PID: 1}, procFacts{}, true, "", "pid 1", ""},
		{"kernel thread", Process{PID: 50}, procFacts{ppid: 2, kthread: true}, true, "", "kernel thread", ""},
		{"self", Process{PID: 777}, procFacts{}, false, "", "portolan itself", ""},
		{"self forced", Process{PID: 777}, procFacts{}, true, "", "", ""},
		{"service", Process{PID: 4000, Cgroup: svc}, procFacts{ppid: 1}, false, "", "systemd unit nginx.service", "systemctl stop nginx.service"},
		{"service forced", Process{PID: 4000, Cgroup: svc}, procFacts{ppid: 1}, true, "", "", ""},
		{"our own service", Process{PID: 4000, Cgroup: svc}, procFacts{ppid: 1}, false, "/system.slice/nginx.service", "", ""},
		{"user service", Process{PID: 4000, Cgroup: userSvc}, procFacts{}, false, "", "vite.service", "systemctl --user stop vite.service"},
		{"container", Process{PID: 4000, Cgroup: docker}, procFacts{}, false, "", "docker container 0123456789ab", "docker stop 0123456789ab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			refused, instead := refusal(&c.p, c.f, 777, c.selfCgroup, c.force)
			if c.wantRefused == "" && refused != "" || !strings.Contains(refused, c.wantRefused) {
				t.Errorf("refusal(%+v) = %q; want %q", c.p, refused, c.wantRefused)
			}
			if instead != c.wantInsteadOf {
				t.Errorf("refusal(%+v) instead = %q; want %q", c.p, instead, c.wantInsteadOf)
			}
		})
	}
}

func TestBuildPlan(t *testing.T) {
	ap := netip.MustParseAddrPort
	master := &Process{PID: 100, Comm: "nginx"}
	worker := &Process{PID: 101, Comm: "nginx"}
	client := &Process{PID: 200, Comm: "curl"}
	socks := []Socket{
		{Proto: portspec.TCP, State: Listen, Local: ap("0.0.0.0:80"), Inode: 1, Procs: []*Process{master, worker}},
		{Proto: portspec.TCP, State: Established, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5000"), Inode: 2, Procs: []*Process{worker}},
		{Proto: portspec.TCP, State: CloseWait, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:9000"), Inode: 3, Procs: []*Process{client}},
		{Proto: portspec.TCP, State: TimeWait, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5001")},
		{Proto: portspec.UDP, State: Close, Local: ap("0.0.0.0:80"), Inode: 4, UID: 1000, Unseen: Denied},
	}
	facts := map[int]procFacts{100: {ppid: 1}, 101: {ppid: 100}, 200: {ppid: 50}}
	type target struct {
		PID       int
		ViaParent bool
		Sockets   int
	}
	summary := func(p *KillPlan) (ts []target, sel, passed, unowned int) {
		for _, t := range p.Targets {
			ts = append(ts, target{t.Process.PID, t.ViaParent, len(t.Sockets)})
		}
		return ts, len(p.Sockets), len(p.Passed), len(p.Unowned)
	}

	plan := buildPlan(&KillRequest{Port: 80}, socks, facts, 1, "")
	ts, sel, passed, unowned := summary(plan)
	if want := []target{{100, false, 1}, {101, true, 1}}; !cmp.Equal(ts, want) || sel != 2 || passed != 3 || unowned != 1 {
		t.Errorf("listeners only: targets %v selected %d passed %d unowned %d; want %v, 2, 3, 1", ts, sel, passed, unowned, want)
	}
	if s := plan.Signalled(); len(s) != 1 || s[0].Process.PID != 100 {
		t.Errorf("signalled %v; want the master only", s)
	}

	plan = buildPlan(&KillRequest{Port: 80, AllStates: true, Protos: []portspec.Proto{portspec.TCP}}, socks, facts, 1, "")
	ts, sel, passed, _ = summary(plan)
	if want := []target{{100, false, 1}, {200, false, 1}, {101, true, 2}}; !cmp.Equal(ts, want) || sel != 3 || passed != 2 {
		t.Errorf("all states, TCP: targets %v selected %d passed %d; want %v, 3, 2", ts, sel, passed, want)
	}
}

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

// TestFactsOf: the refusal rules' facts from /proc/PID/stat lines (parsed,
// errors included, by procstat).
func TestFactsOf(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     procFacts
	}{
		{"plain", "1234 (nginx) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5555 1000 100", procFacts{ppid: 1, start: 5555}},
		{"kthread", "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0", procFacts{ppid: 0, kthread: true, start: 2}},
		{"odd name", "77 (a) b (c) R 5 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", procFacts{ppid: 5, start: 99}},
	} {
		st, err := procstat.Parse([]byte(c.in))
		if got := factsOf(st); err != nil || got != c.want {
			t.Errorf("factsOf(%s) = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

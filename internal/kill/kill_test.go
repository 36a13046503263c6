package kill

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/procstat"
	"portolan/internal/sockets"
)

func TestRefusal(t *testing.T) {
	svc := &owners.Cgroup{Path: "/system.slice/nginx.service", Unit: "nginx.service"}
	userSvc := &owners.Cgroup{Path: "/user.slice/user-1000.slice/user@1000.service/app.slice/vite.service", Unit: "vite.service"}
	docker := &owners.Cgroup{Path: "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope", Unit: "docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope", Runtime: "docker", Container: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	session := &owners.Cgroup{Path: "/user.slice/user-1000.slice/session-2.scope", Unit: "session-2.scope"}
	cases := []struct {
		name          string
		p             owners.Process
		f             procFacts
		force         bool
		selfCgroup    string
		wantRefused   string // substring; empty: allowed
		wantInsteadOf string
	}{
		{"plain", owners.Process{PID: 4000, Cgroup: session}, procFacts{ppid: 3000}, false, "", "", ""},
		{"pid 1", owners.Process{PID: 1}, procFacts{}, false, "", "pid 1", ""},
		{"pid 1 forced", owners.Process{PID: 1}, procFacts{}, true, "", "pid 1", ""},
		{"kernel thread", owners.Process{PID: 50}, procFacts{ppid: 2, kthread: true}, true, "", "kernel thread", ""},
		{"self", owners.Process{PID: 777}, procFacts{}, false, "", "portolan itself", ""},
		{"self forced", owners.Process{PID: 777}, procFacts{}, true, "", "", ""},
		{"service", owners.Process{PID: 4000, Cgroup: svc}, procFacts{ppid: 1}, false, "", "systemd unit nginx.service", "systemctl stop nginx.service"},
		{"service forced", owners.Process{PID: 4000, Cgroup: svc}, procFacts{ppid: 1}, true, "", "", ""},
		{"our own service", owners.Process{PID: 4000, Cgroup: svc}, procFacts{ppid: 1}, false, "/system.slice/nginx.service", "", ""},
		{"user service", owners.Process{PID: 4000, Cgroup: userSvc}, procFacts{}, false, "", "vite.service", "systemctl --user stop vite.service"},
		{"container", owners.Process{PID: 4000, Cgroup: docker}, procFacts{}, false, "", "docker container 0123456789ab", "docker stop 0123456789ab"},
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
	master := &owners.Process{PID: 100, Comm: "nginx"}
	worker := &owners.Process{PID: 101, Comm: "nginx"}
	client := &owners.Process{PID: 200, Comm: "curl"}
	socks := []sockets.Socket{
		{Proto: portspec.TCP, State: sockets.Listen, Local: ap("0.0.0.0:80"), Inode: 1, Procs: []*owners.Process{master, worker}},
		{Proto: portspec.TCP, State: sockets.Established, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5000"), Inode: 2, Procs: []*owners.Process{worker}},
		{Proto: portspec.TCP, State: sockets.CloseWait, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:9000"), Inode: 3, Procs: []*owners.Process{client}},
		{Proto: portspec.TCP, State: sockets.TimeWait, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5001")},
		{Proto: portspec.UDP, State: sockets.Close, Local: ap("0.0.0.0:80"), Inode: 4, UID: 1000, Unseen: owners.Denied},
	}
	facts := map[int]procFacts{100: {ppid: 1}, 101: {ppid: 100}, 200: {ppid: 50}}
	type target struct {
		PID       int
		ViaParent bool
		Sockets   int
	}
	summary := func(p *Plan) (ts []target, sel, passed, unowned int) {
		for _, t := range p.Targets {
			ts = append(ts, target{t.Process.PID, t.ViaParent, len(t.Sockets)})
		}
		return ts, len(p.Sockets), len(p.Passed), len(p.Unowned)
	}

	plan := buildPlan(&Request{Port: 80}, socks, facts, 1, "")
	ts, sel, passed, unowned := summary(plan)
	if want := []target{{100, false, 1}, {101, true, 1}}; !cmp.Equal(ts, want) || sel != 2 || passed != 3 || unowned != 1 {
		t.Errorf("listeners only: targets %v selected %d passed %d unowned %d; want %v, 2, 3, 1", ts, sel, passed, unowned, want)
	}
	if s := plan.Signalled(); len(s) != 1 || s[0].Process.PID != 100 {
		t.Errorf("signalled %v; want the master only", s)
	}

	plan = buildPlan(&Request{Port: 80, AllStates: true, Protos: []portspec.Proto{portspec.TCP}}, socks, facts, 1, "")
	ts, sel, passed, _ = summary(plan)
	if want := []target{{100, false, 1}, {200, false, 1}, {101, true, 2}}; !cmp.Equal(ts, want) || sel != 3 || passed != 2 {
		t.Errorf("all states, TCP: targets %v selected %d passed %d; want %v, 3, 2", ts, sel, passed, want)
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

package sockets

// Stopping the holder of a port. PlanKill (kill_linux.go) finds the
// sockets and their processes; this file holds the decisions that need no
// kernel: whom to signal, whom to refuse, and what to do instead.

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/procstat"
)

// KillRequest says whose port to free and how.
type KillRequest struct {
	// Port is the local port, matched exactly.
	Port portspec.Port
	// Protos are the protocols; nil means TCP and UDP.
	Protos []portspec.Proto
	// AllStates also takes the processes of connections whose local port
	// is Port (a client in CLOSE_WAIT, say). Zero: only the listener, that
	// is TCP LISTEN and unconnected UDP. Connections that merely have Port
	// as their remote port are never taken.
	AllStates bool
	// Netns is the network namespace whose table is read; empty means
	// ours. (Processes are the same in every namespace.)
	Netns string
	// Signal is sent first; zero means SIGTERM.
	Signal syscall.Signal
	// Grace is how long to wait for the port to be freed before sending
	// SIGKILL; zero means 5 s, negative means never escalate.
	Grace time.Duration
	// Force also signals this process itself and the processes of systemd
	// services and containers (which otherwise are pointed to). Pid 1 and
	// kernel threads are refused regardless.
	Force bool
	// Logger receives debug records; nil discards them.
	Logger *slog.Logger
}

func (r *KillRequest) protos() []portspec.Proto {
	if len(r.Protos) == 0 {
		return []portspec.Proto{portspec.TCP, portspec.UDP}
	}
	return r.Protos
}

func (r *KillRequest) signal() syscall.Signal {
	if r.Signal == 0 {
		return syscall.SIGTERM
	}
	return r.Signal
}

func (r *KillRequest) grace() time.Duration {
	if r.Grace == 0 {
		return 5 * time.Second
	}
	return r.Grace
}

func (r *KillRequest) logger() *slog.Logger { return orDiscard(r.Logger) }

// selects reports whether the request takes socket s: one of its
// protocols, local port Port, and a listener unless AllStates. Sockets no
// file refers to (TIME_WAIT, pending and orphaned connections) belong to
// the kernel, not to a process: they are never taken.
func (r *KillRequest) selects(s *Socket) bool {
	if s.Local.Port() != uint16(r.Port) || s.Inode == 0 {
		return false
	}
	ok := false
	for _, p := range r.protos() {
		ok = ok || p == s.Proto
	}
	if !ok {
		return false
	}
	return r.AllStates || RoleOf(s) == RoleListening
}

// KillTarget is a process holding the port.
type KillTarget struct {
	Process *Process
	PPID    int
	// Sockets are the selected sockets on the port it holds.
	Sockets []Socket
	// Refused says why it will not be signalled; empty when it will.
	Refused string
	// Instead is what to run instead when the process belongs to a
	// systemd service or a container ("systemctl stop nginx.service").
	Instead string
	// ViaParent marks a worker whose parent also holds the socket: the
	// parent gets the first signal (it stops its workers itself), the
	// worker only the escalation.
	ViaParent bool

	startTicks uint64 // to tell the process from a later one with its pid
}

// KillPlan is what Kill would do.
type KillPlan struct {
	Port   portspec.Port
	Protos []portspec.Proto
	Signal syscall.Signal
	Grace  time.Duration
	// Sockets are the selected sockets: what has to go for the port to be
	// free.
	Sockets []Socket
	// Targets are their processes, parents before their workers.
	Targets []KillTarget
	// Unowned are selected sockets without a visible process (Unseen says
	// why).
	Unowned []Socket
	// Passed are the other sockets on the port, left alone: connections
	// (without AllStates), TIME_WAIT.
	Passed []Socket

	req *KillRequest
}

// Held reports whether anything selected holds the port.
func (p *KillPlan) Held() bool { return len(p.Sockets) > 0 }

// Signalled returns the targets that get the first signal.
func (p *KillPlan) Signalled() []*KillTarget {
	var out []*KillTarget
	for i := range p.Targets {
		t := &p.Targets[i]
		if t.Refused == "" && !t.ViaParent {
			out = append(out, t)
		}
	}
	return out
}

// KillStep is one signal sent.
type KillStep struct {
	PID    int            `json:"pid"`
	Signal syscall.Signal `json:"signal"`
	After  time.Duration  `json:"after"` // since the first signal
	Err    string         `json:"error,omitempty"`
	Gone   bool           `json:"gone"` // the process had already exited
}

// KillResult is what Kill did.
type KillResult struct {
	// Freed reports whether no selected socket holds the port any more.
	Freed bool
	// Escalated reports whether SIGKILL was sent.
	Escalated bool
	Steps     []KillStep
	// Remaining are the selected sockets still on the port at the end.
	Remaining []Socket
	// Waited is how long the whole run took.
	Waited time.Duration
}

// procFacts are what the refusal rules need to know about a process
// beyond Process.
type procFacts struct {
	ppid    int
	kthread bool
	start   uint64
}

// refusal decides whether process p may be signalled: never pid 1 or a
// kernel thread; not ourselves, a systemd service's process, or a
// container's, unless forced. For a service or container it returns the
// command to run instead. self and selfCgroup describe this process: a
// process in our own cgroup is not redirected (killing a sibling in one's
// own unit is what was asked).
func refusal(p *Process, f procFacts, self int, selfCgroup string, force bool) (refused, instead string) {
	switch {
	case p.PID == 1:
		return "pid 1 (init) is never signalled: it would take the system (or container) down", ""
	case f.kthread || p.PID == 2 || f.ppid == 2:
		return "a kernel thread: it cannot be killed, and holds the port for the kernel", ""
	case p.PID == self && !force:
		return "this is portolan itself (--force to do it anyway)", ""
	}
	if force || p.Cgroup == nil || p.Cgroup.Path == selfCgroup {
		return "", ""
	}
	c := p.Cgroup
	if c.Container != "" {
		return fmt.Sprintf("it runs in %s container %s: stop the container, or it may be restarted (--force to kill anyway)", c.Runtime, shortID(c.Container)), containerStop(c)
	}
	if strings.HasSuffix(c.Unit, ".service") && !strings.HasPrefix(c.Unit, "user@") {
		return fmt.Sprintf("it belongs to systemd unit %s: systemd would restart it or mark it failed (--force to kill anyway)", c.Unit), unitStop(c)
	}
	return "", ""
}

// unitStop is the systemctl command that stops c's unit; a unit under
// user@UID.service is a user unit.
func unitStop(c *Cgroup) string {
	if strings.Contains(c.Path, "/user@") {
		return "systemctl --user stop " + c.Unit
	}
	return "systemctl stop " + c.Unit
}

// containerStop is the command that stops c's container.
func containerStop(c *Cgroup) string {
	id := shortID(c.Container)
	switch c.Runtime {
	case "docker":
		return "docker stop " + id
	case "podman":
		return "podman stop " + id
	case "containerd":
		return "nerdctl stop " + id
	case "lxc":
		return "lxc-stop -n " + c.Container
	case "kubernetes", "cri-o":
		if c.Pod != "" {
			return "kubectl delete pod (the pod with uid " + c.Pod + "; find it with kubectl get pods -A -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name,UID:.metadata.uid)"
		}
		return "crictl stop " + id
	}
	return "stop container " + id
}

// StopAdvice says how to stop the processes procs (the holders of one
// port, lowest pid first) to free port/proto: through their container or
// systemd unit when they all share one, else with portolan kill, which
// signals every holder. Naming one process of several would not free the
// port: each holds the socket open.
func StopAdvice(procs []*Process, port portspec.Port, proto portspec.Proto) string {
	if len(procs) == 0 {
		return fmt.Sprintf("stop the process holding the port: portolan kill %d/%v", port, proto)
	}
	p := procs[0]
	label := procsLabel(procs)
	if c := p.Cgroup; c != nil && sameStopper(procs) {
		if c.Container != "" {
			return fmt.Sprintf("stop the %s container %s that runs %s: %s", c.Runtime, shortID(c.Container), label, containerStop(c))
		}
		if strings.HasSuffix(c.Unit, ".service") && !strings.HasPrefix(c.Unit, "user@") {
			if len(procs) == 1 {
				return fmt.Sprintf("stop pid %d (%s, unit %s): %s", p.PID, p.Comm, c.Unit, unitStop(c))
			}
			return fmt.Sprintf("stop %s, all in unit %s: %s", label, c.Unit, unitStop(c))
		}
	}
	if len(procs) == 1 {
		return fmt.Sprintf("stop %s: portolan kill %d/%v", label, port, proto)
	}
	return fmt.Sprintf("stop %s: each holds the socket open, so the port is free only when all have exited: portolan kill %d/%v signals every one", label, port, proto)
}

// procsLabel names processes: "pid 9 (node)", "pids 9, 10 and 11 (nginx)".
func procsLabel(procs []*Process) string {
	if len(procs) == 1 {
		return fmt.Sprintf("pid %d (%s)", procs[0].PID, procs[0].Comm)
	}
	var pids, comms []string
	for _, p := range procs {
		pids = append(pids, strconv.Itoa(p.PID))
		if !slices.Contains(comms, p.Comm) {
			comms = append(comms, p.Comm)
		}
	}
	n := len(pids)
	return fmt.Sprintf("pids %s and %s (%s)", strings.Join(pids[:n-1], ", "), pids[n-1], strings.Join(comms, ", "))
}

// sameStopper reports whether procs all run in one container or unit, so
// stopping that stops them all.
func sameStopper(procs []*Process) bool {
	c0 := procs[0].Cgroup
	for _, p := range procs[1:] {
		c := p.Cgroup
		if c == nil || c.Container != c0.Container || c.Unit != c0.Unit {
			return false
		}
	}
	return true
}

// buildPlan groups the sockets of the port by process and decides about
// each. facts holds what /proc says of each pid.
func buildPlan(req *KillRequest, socks []Socket, facts map[int]procFacts, self int, selfCgroup string) *KillPlan {
	plan := &KillPlan{Port: req.Port, Protos: req.protos(), Signal: req.signal(), Grace: req.grace(), req: req}
	index := map[int]int{}
	for i := range socks {
		s := &socks[i]
		if !req.selects(s) {
			plan.Passed = append(plan.Passed, *s)
			continue
		}
		plan.Sockets = append(plan.Sockets, *s)
		if len(s.Procs) == 0 {
			plan.Unowned = append(plan.Unowned, *s)
			continue
		}
		for _, p := range s.Procs {
			j, ok := index[p.PID]
			if !ok {
				f := facts[p.PID]
				t := KillTarget{Process: p, PPID: f.ppid, startTicks: f.start}
				t.Refused, t.Instead = refusal(p, f, self, selfCgroup, req.Force)
				j = len(plan.Targets)
				index[p.PID] = j
				plan.Targets = append(plan.Targets, t)
			}
			plan.Targets[j].Sockets = append(plan.Targets[j].Sockets, *s)
		}
	}
	// A worker whose parent holds the socket too waits for its parent to
	// stop it. Parents come first.
	for i := range plan.Targets {
		t := &plan.Targets[i]
		if j, ok := index[t.PPID]; ok && plan.Targets[j].Refused == "" {
			t.ViaParent = true
		}
	}
	order := make([]KillTarget, 0, len(plan.Targets))
	for _, via := range []bool{false, true} {
		for _, t := range plan.Targets {
			if t.ViaParent == via {
				order = append(order, t)
			}
		}
	}
	plan.Targets = order
	return plan
}

// factsOf takes the refusal rules' facts from /proc/PID/stat: parent pid,
// kernel-thread flag, start time.
func factsOf(st procstat.Stat) procFacts {
	return procFacts{ppid: st.PPID, kthread: st.Flags&procstat.FlagKthread != 0, start: st.StartTicks}
}

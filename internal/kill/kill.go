// Package kill stops the holders of a port: NewPlan (kill_linux.go) finds the
// sockets and their processes; this file holds the decisions that need no
// kernel: whom to signal, whom to refuse, and what to do instead.
package kill

import (
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/procstat"
	"portolan/internal/sockets"
)

// Request says whose port to free and how.
type Request struct {
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

func (r *Request) protos() []portspec.Proto {
	if len(r.Protos) == 0 {
		return []portspec.Proto{portspec.TCP, portspec.UDP}
	}
	return r.Protos
}

func (r *Request) signal() syscall.Signal {
	if r.Signal == 0 {
		return syscall.SIGTERM
	}
	return r.Signal
}

func (r *Request) grace() time.Duration {
	if r.Grace == 0 {
		return 5 * time.Second
	}
	return r.Grace
}

func (r *Request) logger() *slog.Logger { return orDiscard(r.Logger) }

// selects reports whether the request takes socket s: one of its
// protocols, local port Port, and a listener unless AllStates. Sockets no
// file refers to (TIME_WAIT, pending and orphaned connections) belong to
// the kernel, not to a process: they are never taken.
func (r *Request) selects(s *sockets.Socket) bool {
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
	return r.AllStates || sockets.RoleOf(s) == sockets.RoleListening
}

// Target is a process holding the port.
type Target struct {
	Process *owners.Process
	PPID    int
	// Sockets are the selected sockets on the port it holds.
	Sockets []sockets.Socket
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

// Plan is what Kill would do.
type Plan struct {
	Port   portspec.Port
	Protos []portspec.Proto
	Signal syscall.Signal
	Grace  time.Duration
	// Sockets are the selected sockets: what has to go for the port to be
	// free.
	Sockets []sockets.Socket
	// Targets are their processes, parents before their workers.
	Targets []Target
	// Unowned are selected sockets without a visible process (Unseen says
	// why).
	Unowned []sockets.Socket
	// Passed are the other sockets on the port, left alone: connections
	// (without AllStates), TIME_WAIT.
	Passed []sockets.Socket

	req *Request
}

// Held reports whether anything selected holds the port.
func (p *Plan) Held() bool { return len(p.Sockets) > 0 }

// Signalled returns the targets that get the first signal.
func (p *Plan) Signalled() []*Target {
	var out []*Target
	for i := range p.Targets {
		t := &p.Targets[i]
		if t.Refused == "" && !t.ViaParent {
			out = append(out, t)
		}
	}
	return out
}

// Step is one signal sent.
type Step struct {
	PID    int            `json:"pid"`
	Signal syscall.Signal `json:"signal"`
	After  time.Duration  `json:"after"` // since the first signal
	Err    string         `json:"error,omitempty"`
	Gone   bool           `json:"gone"` // the process had already exited
}

// Result is what Kill did.
type Result struct {
	// Freed reports whether no selected socket holds the port any more.
	Freed bool
	// Escalated reports whether SIGKILL was sent.
	Escalated bool
	Steps     []Step
	// Remaining are the selected sockets still on the port at the end.
	Remaining []sockets.Socket
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
func refusal(p *owners.Process, f procFacts, self int, selfCgroup string, force bool) (refused, instead string) {
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
		return fmt.Sprintf("it runs in %s container %s: stop the container, or it may be restarted (--force to kill anyway)", c.Runtime, owners.ShortID(c.Container)), owners.ContainerStop(c)
	}
	if strings.HasSuffix(c.Unit, ".service") && !strings.HasPrefix(c.Unit, "user@") {
		return fmt.Sprintf("it belongs to systemd unit %s: systemd would restart it or mark it failed (--force to kill anyway)", c.Unit), owners.UnitStop(c)
	}
	return "", ""
}

// buildPlan groups the sockets of the port by process and decides about
// each. facts holds what /proc says of each pid.
func buildPlan(req *Request, socks []sockets.Socket, facts map[int]procFacts, self int, selfCgroup string) *Plan {
	plan := &Plan{Port: req.Port, Protos: req.protos(), Signal: req.signal(), Grace: req.grace(), req: req}
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
				t := Target{Process: p, PPID: f.ppid, startTicks: f.start}
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
	order := make([]Target, 0, len(plan.Targets))
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

// orDiscard is l, or a logger that discards when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

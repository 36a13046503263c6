package owners

// How to stop the holders of a port, for the advice of why and kill.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"portolan/internal/portspec"
)

// UnitStop is the systemctl command that stops c's unit; a unit under
// user@UID.service is a user unit.
func UnitStop(c *Cgroup) string {
	if strings.Contains(c.Path, "/user@") {
		return "systemctl --user stop " + c.Unit
	}
	return "systemctl stop " + c.Unit
}

// ContainerStop is the command that stops c's container.
func ContainerStop(c *Cgroup) string {
	id := ShortID(c.Container)
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
			return fmt.Sprintf("stop the %s container %s that runs %s: %s", c.Runtime, ShortID(c.Container), label, ContainerStop(c))
		}
		if strings.HasSuffix(c.Unit, ".service") && !strings.HasPrefix(c.Unit, "user@") {
			if len(procs) == 1 {
				return fmt.Sprintf("stop pid %d (%s, unit %s): %s", p.PID, p.Comm, c.Unit, UnitStop(c))
			}
			return fmt.Sprintf("stop %s, all in unit %s: %s", label, c.Unit, UnitStop(c))
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

// ShortID is a container id as docker and podman print it: 12 digits of a
// 64-digit id, any other id whole.
func ShortID(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}

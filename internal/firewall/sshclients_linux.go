package firewall

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/procstat"
	"portolan/internal/sockets"
)

// maxAncestors bounds the walk up the process tree.
const maxAncestors = 64

// FindSSHClients finds the SSH clients a change to the namespace ns (nil:
// this process's own) must not lock out.
//
// SSH_CONNECTION (sshConnection) names the client when it is set. sudo's
// env_reset (and su -, doas) drop it, so otherwise the client is the peer
// of the established connection held by an sshd process among this
// process's ancestors. When no sshd is among them (tmux, screen, a
// console) but SSH clients are connected to the namespace, which of them
// is ours cannot be told: all of them are guarded and Unknown is set.
func FindSSHClients(ctx context.Context, sshConnection string, ns *Netns) (*SSHClients, error) {
	if strings.TrimSpace(sshConnection) != "" {
		return clientsFromEnv(sshConnection)
	}
	var sshd []int
	pid := os.Getppid()
	for range maxAncestors {
		if pid <= 1 {
			break
		}
		name := "/proc/" + strconv.Itoa(pid) + "/stat"
		b, err := os.ReadFile(name)
		if err != nil {
			break // it exited, or /proc hides it
		}
		st, err := procstat.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		if isSSHDName(st.Comm) {
			sshd = append(sshd, pid)
		}
		pid = st.PPID
	}

	table := sockets.Table{}
	if ns != nil && ns.Spec != "" {
		table.Netns = ns.Spec
	}
	socks, err := table.List(ctx, sockets.Query{Proto: portspec.TCP, States: sockets.States(sockets.Established)})
	if err == nil {
		err = sockets.FindOwners(ctx, socks, owners.Options{})
	}
	if err != nil {
		return &SSHClients{Unknown: true, Source: unknownSource("read the SSH connections: " + err.Error())}, nil
	}
	var mine, all []Packet
	for i := range socks {
		s := &socks[i]
		for _, p := range s.Procs {
			if !isSSHDName(p.Comm) {
				continue
			}
			pk := Packet{Src: s.Remote.Addr().Unmap(), Dst: s.Local.Addr().Unmap(), Proto: portspec.TCP, Port: portspec.Port(s.Local.Port())}
			all = appendPacket(all, pk)
			if slices.Contains(sshd, p.PID) {
				mine = appendPacket(mine, pk)
			}
		}
	}
	switch {
	case len(mine) > 0:
		return &SSHClients{Packets: mine, Source: fmt.Sprintf("the connection of sshd (pid %d), an ancestor of this process", sshd[0])}, nil
	case len(sshd) > 0 && !sameNetns(sshd[0], ns):
		return &SSHClients{Source: fmt.Sprintf("this runs over SSH (sshd pid %d) in another network namespace than the one changed", sshd[0])}, nil
	case len(sshd) > 0:
		return &SSHClients{Packets: all, Unknown: true, Source: unknownSource(fmt.Sprintf("sshd (pid %d) is among this process's ancestors, but its connection was not found", sshd[0]))}, nil
	case len(all) > 0:
		return &SSHClients{Packets: all, Unknown: true, Source: unknownSource("no SSH_CONNECTION and no sshd among this process's ancestors; under tmux or screen?")}, nil
	}
	return &SSHClients{Source: "not over SSH: no SSH_CONNECTION, no sshd among this process's ancestors, no SSH connection into the namespace"}, nil
}

func appendPacket(ps []Packet, p Packet) []Packet {
	if slices.Contains(ps, p) {
		return ps
	}
	return append(ps, p)
}

// sameNetns reports whether process pid is in ns (nil: this process's
// own). When it cannot tell, it says yes, which keeps the guard on.
func sameNetns(pid int, ns *Netns) bool {
	want := "/proc/self/ns/net"
	if ns != nil && ns.File != nil {
		want = ns.File.Name()
	}
	a, errA := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/net")
	b, errB := os.Stat(want)
	if errA != nil || errB != nil {
		return true
	}
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return !okA || !okB || (sa.Dev == sb.Dev && sa.Ino == sb.Ino)
}

package firewall

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// SSHClients is what the SSH guard protects: the new connections that must
// stay possible after a change, and how they were found.
type SSHClients struct {
	// Packets are the first packets of new connections from the clients
	// to protect. Empty: nothing to guard (see Source for why).
	Packets []Packet
	// Source says where Packets come from: "SSH_CONNECTION", the sshd
	// process among this process's ancestors, or why there is nothing
	// to guard.
	Source string
	// Unknown is set when it could not be told whether this process runs
	// over SSH (for example under tmux, or with SSH_CONNECTION dropped by
	// sudo and no sshd among its ancestors); Packets then hold every SSH
	// client connected to the namespace now.
	Unknown bool
}

// String describes the clients in a line, for -v.
func (c *SSHClients) String() string {
	if len(c.Packets) == 0 {
		return "nothing to guard: " + c.Source
	}
	ps := make([]string, len(c.Packets))
	for i, p := range c.Packets {
		ps[i] = p.String()
	}
	return "protecting new SSH connections " + strings.Join(ps, ", ") + " (" + c.Source + ")"
}

// sshdNames are the command names (/proc/PID/comm) of OpenSSH's server
// processes: sshd, and since OpenSSH 9.8 the per-session sshd-session (and
// sshd-auth in 10.0).
func isSSHDName(comm string) bool {
	return comm == "sshd" || strings.HasPrefix(comm, "sshd-")
}

// clientsFromEnv reads SSH_CONNECTION.
func clientsFromEnv(sshConnection string) (*SSHClients, error) {
	p, err := ParseSSHConnection(sshConnection)
	if err != nil {
		return nil, err
	}
	return &SSHClients{Packets: []Packet{p}, Source: "from SSH_CONNECTION"}, nil
}

// Check returns a *LockoutError when rs would not let one of c's clients
// open a new connection. If rs lets them in only through rules that
// expire, later says so.
func (c *SSHClients) Check(rs *Ruleset, now time.Time) (later string, err error) {
	var errs []error
	for _, p := range c.Packets {
		l, err := checkPacket(p, rs, now)
		if err != nil {
			var le *LockoutError
			if errors.As(err, &le) {
				le.Unknown = c.Unknown
			}
			errs = append(errs, err)
			continue
		}
		if later == "" {
			later = l
		}
	}
	if len(errs) > 0 {
		return "", errs[0]
	}
	return later, nil
}

// unknownSource explains why every connected SSH client is guarded.
func unknownSource(why string) string {
	return fmt.Sprintf("could not tell whether this runs over SSH (%s): guarding every SSH client connected now", why)
}

package sockets

import (
	"fmt"
	"strings"

	"portolan/internal/owners"
)

// DescribeSocket is a socket in a few words: "tcp LISTEN 0.0.0.0:80",
// with "(dual-stack)", "(bound, not listening)" or "-> REMOTE" where they
// apply.
func DescribeSocket(s *Socket) string {
	l := fmt.Sprintf("%v %s %v", s.Proto, s.StateName(), s.Local)
	if RoleOf(s) == RoleBound {
		l += " (bound, not listening)"
	}
	if s.Family == IPv6 && s.Local.Addr().IsUnspecified() {
		if s.DualStack() {
			l += " (dual-stack)"
		} else if s.V6Only {
			l += " (v6only)"
		}
	}
	if s.Remote.Port() != 0 {
		l += fmt.Sprintf(" -> %v", s.Remote)
	}
	return l
}

// DescribeOwner names who holds s: "pid 1234 (nginx, user www-data, unit
// nginx.service)", or why no process can be named.
func DescribeOwner(s *Socket) string {
	if len(s.Procs) > 0 {
		p := s.Procs[0]
		parts := []string{p.Comm}
		if p.User != "" {
			parts = append(parts, "user "+p.User)
		}
		if c := p.Cgroup; c != nil {
			if c.Container != "" {
				parts = append(parts, c.Runtime+" container "+owners.ShortID(c.Container))
			} else if c.Unit != "" {
				parts = append(parts, "unit "+c.Unit)
			}
		}
		l := fmt.Sprintf("pid %d (%s)", p.PID, strings.Join(parts, ", "))
		if n := len(s.Procs) - 1; n > 0 {
			l += fmt.Sprintf(" and %d more", n)
		}
		return l
	}
	switch s.Unseen {
	case owners.NoProcess:
		return "no process (the kernel holds it)"
	case owners.Seen, owners.Skipped:
		return "an unknown process"
	}
	return fmt.Sprintf("uid %d (%s), process not visible", s.UID, owners.LookupUser(s.UID))
}

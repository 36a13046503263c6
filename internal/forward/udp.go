package forward

import (
	"log/slog"
	"net/netip"
	"time"
)

// admitUDP takes a session slot for a new client, counting the refusals;
// false means the client is denied or a limit is reached.
func (rs *ruleState) admitUDP(src netip.Addr) bool {
	st := rs.stats
	if !rs.permits(src) {
		st.denied.Add(1)
		return false
	}
	max := rs.MaxConns
	if max == 0 {
		max = DefaultMaxSessions
	}
	if !st.acquire(src, max, rs.MaxConnsPerSource) {
		st.limited.Add(1)
		return false
	}
	return true
}

// udpIdle is the idle time of sessions started under rs.
func (rs *ruleState) udpIdle() time.Duration {
	if rs.IdleTimeout > 0 {
		return rs.IdleTimeout
	}
	return DefaultUDPIdle
}

// endUDP releases a finished session's slot and writes its log line;
// its bytes are in the rule's counters already.
func (s *Server) endUDP(rs *ruleState, src netip.Addr, client netip.AddrPort, target string, toTarget, toClient int64, start time.Time, reason string) {
	st := rs.stats
	st.release(src, rs.MaxConnsPerSource > 0)
	s.logConnLine(rs, "udp", slog.LevelInfo, unmapPort(client), target, toTarget, toClient, start, reason)
}

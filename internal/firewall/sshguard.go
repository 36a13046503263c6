package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"portolan/internal/portspec"
)

// Packet is the first packet of a new incoming connection, for Evaluate.
type Packet struct {
	Src, Dst netip.Addr
	Proto    portspec.Proto
	Port     portspec.Port
	// Iface is the incoming interface; empty means unknown, and then rules
	// naming an interface are assumed to match if they block and not to
	// match if they accept, so the answer errs on the side of "blocked".
	Iface string
}

func (p Packet) String() string {
	return fmt.Sprintf("%s -> %s/%v", p.Src, netip.AddrPortFrom(p.Dst, uint16(p.Port)), p.Proto)
}

// Decision is what a ruleset does with a Packet.
type Decision struct {
	Verdict string // "accept", "drop" or "reject"
	Rule    int    // the deciding rule's number (1-based); 0 for the policy or a base rule
}

// Accepted reports whether the packet gets through.
func (d Decision) Accepted() bool { return d.Verdict == "accept" }

// Evaluate says what the compiled ruleset does with the first packet of a
// new connection, rule by rule as the kernel would, ignoring rules expired
// by now.
func (rs *Ruleset) Evaluate(p Packet, now time.Time) Decision {
	src, dst := p.Src.Unmap().WithZone(""), p.Dst.Unmap().WithZone("")
	if p.Iface == "lo" || src.IsLoopback() {
		return Decision{Verdict: "accept"} // iif "lo" accept
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Dir != In || r.Expired(now) || !r.matches(src, dst, p) { // the others are in other chains
			continue
		}
		switch r.Action {
		case Allow, Limit:
			return Decision{"accept", i + 1}
		case Deny:
			return Decision{"drop", i + 1}
		case Reject:
			return Decision{"reject", i + 1}
		}
	}
	switch rs.Policy {
	case PolicyDrop:
		return Decision{Verdict: "drop"}
	case PolicyReject:
		return Decision{Verdict: "reject"}
	}
	return Decision{Verdict: "accept"}
}

func (r *Rule) matches(src, dst netip.Addr, p Packet) bool {
	if r.Ports != nil && !r.Ports.Has(p.Proto, p.Port) {
		return false
	}
	if !inPrefixes(r.From, src) || !inPrefixes(r.To, dst) {
		return false
	}
	if r.Iface != "" {
		if p.Iface == "" {
			return r.Action == Deny || r.Action == Reject
		}
		if name, wild := strings.CutSuffix(r.Iface, "*"); wild {
			return strings.HasPrefix(p.Iface, name)
		}
		return p.Iface == r.Iface
	}
	return true
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseSSHConnection reads the SSH_CONNECTION variable sshd sets
// ("CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT") as the packet that
// opens a new connection from the same client to the same server port.
func ParseSSHConnection(s string) (Packet, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return Packet{}, fmt.Errorf("SSH_CONNECTION %q: want 4 fields (client address and port, server address and port), have %d", s, len(f))
	}
	addr := func(i int) (netip.Addr, error) {
		a, err := netip.ParseAddr(f[i])
		if err != nil {
			return netip.Addr{}, fmt.Errorf("SSH_CONNECTION %q: field %d %q is not an IP address", s, i+1, f[i])
		}
		return a.Unmap().WithZone(""), nil
	}
	src, err := addr(0)
	if err != nil {
		return Packet{}, err
	}
	dst, err := addr(2)
	if err != nil {
		return Packet{}, err
	}
	for _, i := range []int{1, 3} {
		if n, err := strconv.ParseUint(f[i], 10, 16); err != nil || n == 0 {
			return Packet{}, fmt.Errorf("SSH_CONNECTION %q: field %d %q is not a port", s, i+1, f[i])
		}
	}
	port, _ := strconv.ParseUint(f[3], 10, 16)
	return Packet{Src: src, Dst: dst, Proto: portspec.TCP, Port: portspec.Port(port)}, nil
}

// LockoutError is a ruleset refused because it would drop new SSH
// connections from the client the command runs under.
type LockoutError struct {
	Packet   Packet
	Decision Decision
	Rule     string // the deciding rule, or "" for the policy
	// Unknown: the client is one of every SSH client connected, since it
	// could not be told which one this command runs under.
	Unknown bool
}

func (e *LockoutError) Error() string {
	by := "the default policy " + e.Decision.Verdict
	if e.Rule != "" {
		by = fmt.Sprintf("rule %d (%s)", e.Decision.Rule, e.Rule)
	}
	if e.Unknown {
		return fmt.Sprintf("this change would %s new SSH connections from a connected SSH client (%s; which client is yours could not be told), by %s; open sessions would stay up, but that client could not log in again", e.Decision.Verdict, e.Packet, by)
	}
	return fmt.Sprintf("this change would %s new SSH connections from your client (%s), by %s; your open session would stay up, but you could not log in again", e.Decision.Verdict, e.Packet, by)
}

// CheckSSH returns a *LockoutError when sshConnection (the value of
// SSH_CONNECTION; empty: not over SSH) names a client that rs would not
// let open a new connection to the SSH port. If rs lets it in only
// through rules that expire, later says so. FindSSHClients also finds the
// client without the environment.
func CheckSSH(sshConnection string, rs *Ruleset, now time.Time) (later string, err error) {
	if strings.TrimSpace(sshConnection) == "" {
		return "", nil
	}
	c, err := clientsFromEnv(sshConnection)
	if err != nil {
		return "", err
	}
	return c.Check(rs, now)
}

// checkPacket checks one client.
func checkPacket(p Packet, rs *Ruleset, now time.Time) (later string, err error) {
	d := rs.Evaluate(p, now)
	if !d.Accepted() {
		e := &LockoutError{Packet: p, Decision: d}
		if d.Rule > 0 {
			e.Rule = rs.Rules[d.Rule-1].String()
		}
		return "", e
	}
	var last time.Time
	for _, r := range rs.Rules {
		if r.Expires.After(last) {
			last = r.Expires
		}
	}
	if !last.IsZero() && last.After(now) {
		if d := rs.Evaluate(p, last); !d.Accepted() {
			return fmt.Sprintf("new SSH connections from %s will be %s once the expiring rules expire (by %s)", p.Src, pastTense(d.Verdict), last.Format(time.RFC3339)), nil
		}
	}
	return "", nil
}

func pastTense(verdict string) string {
	if verdict == "drop" {
		return "dropped"
	}
	return verdict + "ed"
}

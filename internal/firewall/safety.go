package firewall

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrAllTraffic is the cause of a SafetyError: a deny or reject rule that
// matches every packet.
var ErrAllTraffic = errors.New("would block all traffic")

// SafetyError is a rule that no path (command line, profile, delete,
// policy) may write: it cuts every connection, SSH included, with no way
// for the SSH guard to tell which port matters.
type SafetyError struct {
	Number int // the rule's number in its ruleset; 0 for a lone rule
	Rule   Rule
	Err    error
}

func (e *SafetyError) Error() string {
	what := e.Rule.String()
	if e.Number > 0 {
		what = fmt.Sprintf("rule %d (%s)", e.Number, what)
	}
	return fmt.Sprintf("%s %v (every protocol, port, address and interface): name ports, narrow it with from, to or iface, or set default-policy %s after your allow rules", what, e.Err, e.Rule.Action)
}

func (e *SafetyError) Unwrap() error { return e.Err }

// CheckSafety refuses a rule that drops or rejects all incoming traffic:
// every protocol and port, from and to every address, on every
// interface. A prefix of length 0 (0.0.0.0/0, ::/0) narrows nothing.
// Routed and outgoing rules cannot cut the host's own SSH session (its
// packets are incoming, and the replies belong to an open connection), so
// `deny any --routed` is a way to close forwarding, not an accident.
func (r *Rule) CheckSafety() error {
	if r.Dir != In || (r.Action != Deny && r.Action != Reject) || r.Ports != nil || r.Iface != "" {
		return nil
	}
	if narrows(r.From) || narrows(r.To) {
		return nil
	}
	return &SafetyError{Rule: *r, Err: ErrAllTraffic}
}

// narrows reports whether ps leaves out some address.
func narrows(ps []netip.Prefix) bool {
	if len(ps) == 0 {
		return false
	}
	for _, p := range ps {
		if p.Bits() == 0 {
			return false
		}
	}
	return true
}

// CheckSafety runs Rule.CheckSafety on every rule, so every path that
// changes the table refuses the same rules.
func (rs *Ruleset) CheckSafety() error {
	for i := range rs.Rules {
		if err := rs.Rules[i].CheckSafety(); err != nil {
			var se *SafetyError
			if errors.As(err, &se) {
				se.Number = i + 1
			}
			return err
		}
	}
	return nil
}

package scan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"portolan/internal/portspec"
)

// A Prober does the I/O of one kind of scan: TCP connect here, SYN and UDP
// later. The Scanner owns everything else (order, rate, in-flight window,
// timeouts, retries), so every prober gets the same scheduling.
//
// The interface is asynchronous on purpose: Send starts a probe and returns,
// and the outcome comes back later through report. That lets a prober keep
// thousands of probes in flight from one goroutine (an epoll loop for
// connect, one receive loop matching packets for SYN and UDP) instead of one
// goroutine and one timer per probe, and it leaves the waiting, with
// RTT-derived deadlines, to the one place that knows them.
type Prober interface {
	// Open starts a session. The session passes each probe's outcome to
	// report, at most once per Send, from any goroutine, possibly before
	// Send returns. report never blocks.
	Open(ctx context.Context, report func(Reply)) (Session, error)
}

// Session is one scan's use of a Prober. The scanner calls its methods
// from one goroutine, the one that called Scanner.Run (so a prober that
// makes its sockets in Send makes them in that goroutine's network
// namespace).
type Session interface {
	// Send starts probe id towards dst. It must not wait for the network.
	// An error wrapping ErrBusy means "out of local resources for now"
	// (sockets, ephemeral ports, buffers): the scanner sends it again when
	// fewer probes are in flight. Other errors end the scan.
	Send(id uint64, dst netip.AddrPort, proto portspec.Proto) error
	// Cancel gives up on probe id because its deadline passed, and
	// releases what the probe holds. If the answer had in fact arrived but
	// was not reported yet (say the prober's goroutine had not been
	// scheduled), Cancel returns it with ok true rather than lose it: on a
	// loaded machine that is the difference between "filtered" and the
	// truth. A Reply reported after Cancel is ignored.
	Cancel(id uint64) (r Reply, ok bool)
	// Close releases everything. No Reply is reported after it returns.
	Close() error
}

// Reply is the outcome of one probe.
type Reply struct {
	ID     uint64
	State  State  // Unknown: no verdict (say a self-connect); probe again, not counted as an attempt
	Reason string // one of the Reason constants
	RTT    time.Duration
	// Service and Banner, if set, are what the answer itself says (a UDP
	// payload's reply parsed): they take the place of the registry's name.
	Service string
	Banner  string
}

// fromHost reports whether the reply came from the host itself (a SYN-ACK
// or a reset, even one a tarpit sent), not from a router or silence: the
// host is up, and the reply is a round trip.
func (r Reply) fromHost() bool {
	return r.State == Open || r.State == Closed || r.Reason == ReasonTarpit
}

var (
	// ErrBusy marks a Send that failed for lack of local resources.
	ErrBusy = errors.New("out of local resources")
	// ErrUnsupported marks a probe the prober cannot make (say UDP for
	// connect), or a prober that does not exist on this system.
	ErrUnsupported = errors.New("not supported")
)

// ProberOptions are what a scan asks of the prober it names, whichever it
// is (ProberByName).
type ProberOptions struct {
	// Local is where probes leave from (nmap's -e, -S, --source-port).
	Local Local
	// MinRate is the send rate a prober that adapts its own (SYN's AIMD)
	// never goes below, in packets per second (nmap's --min-rate). 0
	// means the prober's own floor.
	MinRate float64
}

// probers are the probers by name (ProberByName).
var probers = map[string]func(ProberOptions) Prober{
	"connect": func(o ProberOptions) Prober { return ConnectProber{Local: o.Local} },
	"dial":    func(o ProberOptions) Prober { return DialProber{Local: o.Local} },
	"syn":     func(o ProberOptions) Prober { return SYNProber{Local: o.Local, MinRate: o.MinRate} },
	"udp":     func(o ProberOptions) Prober { return UDPProber{Local: o.Local} },
}

// ProberByName returns the prober a scan names ("connect": TCP connect, as
// nmap's -sT; "dial": the portable connect prober; "syn": half-open SYNs,
// as nmap's -sS; "udp": UDP with protocol payloads, nmap's -sU), set up
// with o, so that a stored scan, a fleet worker or a scheduled scan picks
// its prober without knowing the types.
func ProberByName(name string, o ProberOptions) (Prober, error) {
	if f := probers[name]; f != nil {
		return f(o), nil
	}
	names := make([]string, 0, len(probers))
	for n := range probers {
		names = append(names, n)
	}
	slices.Sort(names)
	return nil, fmt.Errorf("prober %q: %w (there are %s)", name, ErrUnsupported, strings.Join(names, ", "))
}

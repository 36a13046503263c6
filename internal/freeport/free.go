// Package freeport finds free ports and reserves them. A port is free when a bind succeeds on 127.0.0.1, ::1,
// 0.0.0.0 and :: (dual-stack) for every protocol asked: a port free on
// 0.0.0.0 may still be held on ::, and a server started later binds one of
// them. Ports in the kernel's ip_local_reserved_ports are never returned,
// and the default range leaves out the ephemeral range so an outgoing
// connection does not take the port between our check and the caller's bind.
package freeport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// ErrNoFreePort is matched (errors.Is) by a *NoFreePortError.
var ErrNoFreePort = errors.New("no free port")

// ErrEmptyRange says the range minus the exclusions holds no port at all.
var ErrEmptyRange = errors.New("nothing to search: the range minus the exclusions is empty")

// NoHolder as Options.Holder ties a reservation to no process: it lasts
// until it expires or is released. The CLI uses it, since it exits right
// after printing the ports.
const NoHolder = -1

// Options say where and how to look for free ports. The zero value
// looks for TCP ports in the default range.
type Options struct {
	// Range holds the ports to search (the protocol of its entries does not
	// matter). Nil means the unprivileged ports 1024-65535 without the
	// kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999
	// on most Linux systems; 49152-65535 assumed elsewhere), so that an
	// outgoing connection does not take the port before the caller binds it.
	Range *portspec.Set
	// Prefer lists ports tried first, in order, even outside Range. A busy
	// or excluded preferred port is passed over without an error.
	Prefer []portspec.Port
	// Exclude holds ports never returned. Nil excludes nothing.
	Exclude *portspec.Set
	// Protos lists the protocols a port must be free for. Nil means TCP.
	Protos []portspec.Proto
	// Dir is the directory of the reservation registry. Empty means
	// $XDG_RUNTIME_DIR/portolan, or /tmp/portolan-$UID without it.
	Dir string
	// Holder is the process a reservation belongs to: when it exits, its
	// ports are reclaimed. Zero means this process; NoHolder means none.
	Holder int
	// Hold keeps a released or reclaimed port from other callers for this
	// long, like TCP's TIME_WAIT: its last user may still be closing it.
	// Zero means it is free again at once.
	Hold time.Duration
	// Logger receives a debug record for every port passed over. Nil
	// discards.
	Logger *slog.Logger
	// Netns is the network namespace the ports must be free in (a name
	// under /run/netns or a path); empty means the caller's. The
	// reservation registry is the user's, whatever the namespace.
	Netns string

	// Seams for tests; nil means the real thing.
	now    func() time.Time
	probe  func(proto portspec.Proto, ap netip.AddrPort, reuse bool) error
	policy *kernelPortPolicy
}

// NoFreePortError says why a search found fewer free ports than asked for,
// counting what happened to every port it looked at.
type NoFreePortError struct {
	Want, Found int
	Range       string // the ports searched, as a spec ("20000-20010")
	Size        int    // how many ports the range and the preferred ports hold
	Protos      []portspec.Proto
	Checked     int // ports looked at
	InUse       int // a bind failed with "address in use"
	Kernel      int // in net.ipv4.ip_local_reserved_ports
	Reserved    int // reserved by another portolan caller
	Denied      int // a bind was not permitted (privileged ports)
}

func (e *NoFreePortError) Error() string {
	var b strings.Builder
	if e.Found == 0 {
		fmt.Fprintf(&b, "no free %s port in %s", protoNames(e.Protos), e.Range)
	} else {
		fmt.Fprintf(&b, "only %d of %d free %s ports in %s", e.Found, e.Want, protoNames(e.Protos), e.Range)
	}
	var why []string
	add := func(n int, what string) {
		if n > 0 {
			why = append(why, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(e.InUse, "in use")
	add(e.Kernel, "reserved by the kernel (net.ipv4.ip_local_reserved_ports)")
	add(e.Reserved, "reserved by other portolan callers")
	add(e.Denied, "not permitted (privileged: below net.ipv4.ip_unprivileged_port_start)")
	fmt.Fprintf(&b, ": %d checked", e.Checked)
	if len(why) > 0 {
		b.WriteString(", " + strings.Join(why, ", "))
	}
	if e.Size < e.Want {
		fmt.Fprintf(&b, "; the range holds only %d", e.Size)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNoFreePort) true.
func (e *NoFreePortError) Is(target error) bool { return target == ErrNoFreePort }

func protoNames(ps []portspec.Proto) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.String()
	}
	return strings.Join(names, "+")
}

// FreePort returns one free port. The caller should bind it soon: nothing
// stops another program from taking it meanwhile (Reserve stops other
// portolan callers).
func Find(ctx context.Context, opts Options) (portspec.Port, error) {
	ports, err := FindN(ctx, 1, opts)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct free ports, in random order within the range
// (so parallel callers rarely race for the same one) after any preferred
// ports. Ports reserved by other callers (Reserve) are passed over. When
// fewer than n are free it returns a *NoFreePortError.
func FindN(ctx context.Context, n int, opts Options) ([]portspec.Port, error) {
	var taken func(portspec.Port) bool
	reg, err := readRegistry(ctx, &opts)
	if err != nil {
		// A registry we cannot read must not stop a plain search: its
		// reservations are a courtesy between portolan callers.
		opts.logger().Warn("reservation registry unreadable; reserved ports not excluded", "err", err)
	} else {
		taken = reg.taken
	}
	return searchIn(ctx, &opts, n, taken)
}

// searchIn is search with the binds (and the kernel's port sysctls, which
// /proc/sys reads for the calling thread) in opts.Netns.
func searchIn(ctx context.Context, o *Options, n int, taken func(portspec.Port) bool) (ports []portspec.Port, err error) {
	if o.Netns == "" {
		return search(ctx, o, n, taken)
	}
	nerr := sockets.InNetns(o.Netns, func() error {
		ports, err = search(ctx, o, n, taken)
		return nil
	})
	if nerr != nil {
		return nil, fmt.Errorf("free ports: %w", nerr)
	}
	return ports, err
}

// freeAddrs are the addresses a port must bind on to be free. The
// wildcards go first: a busy port usually fails there at once.
var freeAddrs = []netip.Addr{
	netip.IPv4Unspecified(),
	netip.IPv6Unspecified(),
	netip.AddrFrom4([4]byte{127, 0, 0, 1}),
	netip.IPv6Loopback(),
}

// CheckFree reports whether port is free for each of protos (TCP when none)
// on every loopback and wildcard address of both families. The error names
// the first bind that failed ("bind tcp [::]:8080: address already in use").
// A family the machine lacks (no IPv6) is not held against the port.
func CheckFree(port portspec.Port, protos ...portspec.Proto) error {
	o := Options{Protos: protos}
	return o.check(port)
}

// check tries every bind for port.
func (o *Options) check(port portspec.Port) error {
	probe := o.probe
	if probe == nil {
		probe = ProbeBind
	}
	for _, proto := range o.protos() {
		for _, a := range freeAddrs {
			err := probe(proto, netip.AddrPortFrom(a, uint16(port)), false)
			if err != nil && !addrMissing(err) {
				return err
			}
		}
	}
	return nil
}

// addrMissing reports whether err says the address or its family does not
// exist here (IPv6 disabled), rather than that the port is taken.
func addrMissing(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)
}

func (o *Options) protos() []portspec.Proto {
	if len(o.Protos) == 0 {
		return []portspec.Proto{portspec.TCP}
	}
	return o.Protos
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o *Options) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

// EphemeralPorts returns the range the kernel picks local ports of
// outgoing connections from (net.ipv4.ip_local_port_range of the caller's
// namespace; off Linux the IANA dynamic range).
func EphemeralPorts() sockets.PortRange {
	k := readKernelPortPolicy()
	return sockets.PortRange{Lo: k.ephLo, Hi: k.ephHi}
}

func (o *Options) kernel() *kernelPortPolicy {
	if o.policy == nil {
		o.policy = readKernelPortPolicy()
	}
	return o.policy
}

// search looks for n free ports: the preferred ones first, then the range in
// random order, passing over excluded, kernel-reserved and taken ports.
func search(ctx context.Context, o *Options, n int, taken func(portspec.Port) bool) ([]portspec.Port, error) {
	if n < 1 {
		return nil, fmt.Errorf("free ports: asked for %d ports, want at least 1", n)
	}
	for _, p := range o.protos() {
		if p != portspec.TCP && p != portspec.UDP {
			return nil, fmt.Errorf("free ports: protocol %v not supported (want tcp or udp)", p)
		}
	}
	pol := o.kernel()
	rng := o.Range
	if rng == nil {
		rng = pol.defaultRange()
	}
	cands := candidates(rng, o.Exclude)
	stats := &NoFreePortError{Want: n, Range: specOf(cands), Protos: o.protos(), Size: len(cands)}
	if len(cands) == 0 && len(o.Prefer) == 0 {
		return nil, fmt.Errorf("free ports: %w", ErrEmptyRange)
	}
	log := o.logger()
	var found []portspec.Port
	tried := map[portspec.Port]bool{}
	try := func(p portspec.Port) error {
		stats.Checked++
		switch {
		case pol.reserved.Has(portspec.TCP, p):
			stats.Kernel++
			log.Debug("port skipped", "port", p, "why", "ip_local_reserved_ports")
			return nil
		case taken != nil && taken(p):
			stats.Reserved++
			log.Debug("port skipped", "port", p, "why", "reserved by another caller")
			return nil
		}
		err := o.check(p)
		switch {
		case err == nil:
			found = append(found, p)
		case errors.Is(err, syscall.EADDRINUSE):
			stats.InUse++
			log.Debug("port skipped", "port", p, "err", err)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			stats.Denied++
			log.Debug("port skipped", "port", p, "err", err)
		default:
			return err
		}
		return nil
	}
	for _, p := range o.Prefer {
		if len(found) == n {
			break
		}
		if p == 0 || tried[p] || o.Exclude.Has(portspec.TCP, p) {
			continue
		}
		tried[p] = true
		if !slices.Contains(cands, p) {
			stats.Size++
		}
		if err := try(p); err != nil {
			return nil, err
		}
	}
	// Fisher-Yates, drawn lazily: usually only a few ports are looked at.
	for i := 0; i < len(cands) && len(found) < n; i++ {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("free ports: %w", err)
			}
		}
		j := i + rand.IntN(len(cands)-i)
		cands[i], cands[j] = cands[j], cands[i]
		p := cands[i]
		if tried[p] {
			continue
		}
		if err := try(p); err != nil {
			return nil, err
		}
	}
	if len(found) < n {
		stats.Found = len(found)
		return nil, stats
	}
	return found, nil
}

// candidates returns the ports of rng (any protocol) without those of
// exclude (any protocol) and without port 0, in ascending order.
func candidates(rng, exclude *portspec.Set) []portspec.Port {
	var s portspec.Set
	rng.Each(func(_ portspec.Proto, p portspec.Port) bool {
		if p != 0 && !excluded(exclude, p) {
			s.Add(portspec.TCP, p)
		}
		return true
	})
	return s.Ports(portspec.TCP)
}

// excluded reports whether p is in exclude under any protocol.
func excluded(exclude *portspec.Set, p portspec.Port) bool {
	for _, proto := range portspec.Protos {
		if exclude.Has(proto, p) {
			return true
		}
	}
	return false
}

// specOf writes sorted ports as a compact spec without protocol: "1024-32767,61000-65535".
func specOf(ports []portspec.Port) string {
	var s portspec.Set
	for _, p := range ports {
		s.Add(portspec.TCP, p)
	}
	return strings.TrimPrefix(s.String(), "T:")
}

// kernelPortPolicy is what the kernel says about local ports.
type kernelPortPolicy struct {
	ephLo, ephHi portspec.Port // the ephemeral range
	reserved     *portspec.Set // ip_local_reserved_ports (TCP entries); nil when none
}

// defaultRange is 1024-65535 without the ephemeral range.
func (k *kernelPortPolicy) defaultRange() *portspec.Set {
	s := new(portspec.Set)
	s.AddRange(portspec.TCP, 1024, 65535)
	s.RemoveRange(portspec.TCP, k.ephLo, k.ephHi)
	return s
}

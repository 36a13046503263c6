package ephemeral

import (
	"context"
	"fmt"
	"os"
	"time"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// Ephemeral reports on the ephemeral port range of a network namespace:
// the usable ports (ip_local_port_range minus ip_local_reserved_ports
// minus ports bound explicitly), the local ports each destination takes by
// state with the headroom left, the churn (from TIME_WAIT and, with
// req.Sample, the kernel's counters), the processes with the most sockets
// to the busiest destination, and advice.
func Survey(ctx context.Context, req Request) (*Report, error) {
	t := &sockets.Table{Netns: req.Netns, Logger: req.Logger}
	in := &ephemeralInput{twReuse: -1, timestamps: -1, dest: req.Dest, destPort: req.DestPort}
	var before Counters
	var errCounters error
	err := sockets.InNetns(req.Netns, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
		if err != nil {
			return err
		}
		if in.lo, in.hi, err = sockets.ParseLocalPortRange(string(b)); err != nil {
			return err
		}
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports"); err == nil {
			if in.reserved, err = sockets.ParseReservedPorts(string(b)); err != nil {
				return err
			}
		}
		in.twReuse = readSysctlInt("net/ipv4/tcp_tw_reuse")
		in.timestamps = readSysctlInt("net/ipv4/tcp_timestamps")
		if req.Sample > 0 {
			before, errCounters = readCounters()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ephemeral range: %w", err)
	}
	start := time.Now()
	rng := []sockets.PortRange{{Lo: in.lo, Hi: in.hi}}
	for _, proto := range []portspec.Proto{portspec.TCP, portspec.UDP} {
		socks, err := t.List(ctx, sockets.Query{Proto: proto, States: sockets.AllStates, Ports: rng})
		if err != nil {
			return nil, fmt.Errorf("ephemeral range: %w", err)
		}
		in.socks = append(in.socks, socks...)
	}
	if req.Sample > 0 && errCounters == nil {
		timer := time.NewTimer(time.Until(start.Add(req.Sample)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		var after Counters
		err := sockets.InNetns(req.Netns, func() (err error) {
			after, err = readCounters()
			return err
		})
		if err == nil {
			in.counters = after.delta(before, time.Since(start))
		}
		errCounters = err
	}
	if errCounters != nil {
		req.logger().Debug("tcp counters", "err", errCounters)
	}
	r := analyze(in)
	if n := req.top(); n > 0 && len(r.Destinations) > 0 {
		hot := r.Destinations[0].Sockets
		if err := sockets.FindOwners(ctx, hot, owners.Options{First: true}); err != nil && ctx.Err() != nil {
			return nil, err
		}
		r.Top = topProcesses(hot, n)
	}
	return r, nil
}

// readSysctlInt reads an integer sysctl of the calling thread's namespace
// (path under /proc/sys); -1 when it cannot.
func readSysctlInt(path string) int {
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		return -1
	}
	n, err := sockets.ParseSysctlInt(path, string(b))
	if err != nil {
		return -1
	}
	return n
}

// readCounters reads the TCP counters of the calling thread's namespace
// (/proc/thread-self/net: /proc/net shows the main thread's).
func readCounters() (Counters, error) {
	var groups [2]map[string]map[string]int64
	for i, name := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/netstat"} {
		b, err := os.ReadFile(name)
		if err != nil {
			return Counters{}, err
		}
		if groups[i], err = parseSNMP(name, b); err != nil {
			return Counters{}, err
		}
	}
	return tcpCounters(groups[0], groups[1]), nil
}

// Package netlab builds throwaway test networks out of Linux network
// namespaces: hosts that are namespaces, joined by veth pairs, for the tests
// and benchmarks of every feature that sends packets (a scanner in one
// namespace and its targets in another, forwarders, firewall rules applied
// inside a namespace).
//
// # Safety rules
//
// These hold for everything the package makes, so nothing a test sends can
// reach a real network and nothing a test leaves can outlive the next run:
//
//   - Addresses come only from 198.18.0.0/15 (benchmarking, RFC 2544) and
//     fd00::/8 (unique local), besides loopback. AddAddr and AddRoute refuse
//     anything else.
//   - No host has a default route; AddRoute refuses prefixes of length 0.
//   - Nothing is created in the root namespace. A veth pair is created by a
//     netlink socket that lives inside the first host's namespace, with its
//     peer placed straight into the second host's, so neither end is ever
//     outside a namespace the lab made.
//   - Every namespace is named "pl-<pid>-<starttime>-<lab>-<host>" and
//     bind-mounted under /run/netns, so `ip netns exec` and `ip netns list`
//     see it. Lab.Close (registered with t.Cleanup by NewT, and run by the
//     testing package even when a test panics) kills any process still
//     inside, then unmounts and removes every namespace. New first calls
//     SweepStale, which does the same for namespaces whose creating process
//     (pid and start time both match) is gone, so a killed test leaves
//     nothing beyond the next run.
//
// Loopback is up in every host and IPv6 duplicate address detection is off,
// so addresses are usable as soon as a call returns.
//
// # Namespaces and goroutines
//
// A Linux network namespace belongs to an OS thread, not to a goroutine.
// Host.Do runs a function on the calling goroutine's thread, locked and
// switched into the host's namespace, and switches back afterwards.
// Goroutines started inside the function run elsewhere and do not inherit
// the namespace. A socket, however, stays in the namespace it was created in
// for its whole life, so Host.Listen, Host.ListenPacket and Host.DialContext
// return sockets that any goroutine may use.
//
// The package needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). It is for tests
// and benchmarks only: product code must not import it.
package netlab

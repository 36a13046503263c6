// Package scan is portolan's scan engine: it visits a space of (address,
// port, protocol) triples in a seeded pseudo-random order, sends probes
// through a Prober under a rate cap and an in-flight window, derives each
// host's timeout from its measured round-trip time, retries only what got
// no answer, gives up early on hosts that never answer, and streams a
// Result per port, with checkpoints from which a stopped scan resumes.
//
// The pieces:
//
//   - Permutation and Shard: the visiting order, O(1) memory per index, and
//     disjoint slices of it for fleets of scanners.
//   - Scanner: the scheduler; its zero value runs a TCP connect scan.
//   - Prober and Session: the I/O of one kind of scan. ConnectProber (epoll
//     on Linux) and DialProber (portable) do TCP connect scans; SYN and UDP
//     probers plug into the same interface.
//   - Grabber: banners and service guesses for open ports.
//
// A scan is resumable because the order is a pure function of the space
// size and the seed: a run with the same seed, shard and StartAt set to a
// checkpoint visits exactly the positions the first run had not finished.
package scan

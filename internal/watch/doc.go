// Package watch owns connection-attempt capture and scan detection for
// `portolan watch`: the event model (Attempt, Detection, Event), the
// decoding of the packets NFLOG hands over (Decode), the detector that
// scores each source over sliding windows (vertical scans, horizontal
// sweeps, slow scans, odd-flag probes), the never-block list (gateways,
// resolvers, SSH peers, an allow-list), escalating bans, and on Linux the
// nftables chain and sets in portolan's table that capture attempts with
// an in-kernel rate limit and drop banned sources with kernel timeouts.
//
// The detector is pure and clocked by the attempts it sees, so its tests
// need no sleeping; the Linux parts are tested in network namespaces.
package watch

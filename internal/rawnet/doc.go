// Package rawnet is portolan's raw packet I/O on Linux: TCP SYN packets
// built from prebuilt templates with incremental checksums, sent in
// batches (sendmmsg) through AF_PACKET or, on interfaces without a link
// layer (loopback, tun), through raw IP sockets; replies read in batches
// from an AF_PACKET socket whose classic BPF filter passes only TCP to the
// scanner's source ports and ICMP errors; routes, source addresses and
// next-hop MAC addresses from netlink; SYN cookies (a keyed SipHash of the
// 4-tuple) that tell our replies from forged ones.
//
// The builders and parsers (Template, Parse, Cookie, Filter) are portable
// and fuzzed; the sockets are Linux only and return ErrNotSupported
// elsewhere.
package rawnet

// Package target owns what a scan is aimed at: target expressions (IPv4 and
// IPv6 addresses, CIDR prefixes, a-b ranges, nmap octet ranges, hostnames,
// target files), excludes, the default blocklist of special-purpose ranges,
// and the Space of (address, port, protocol) triples that the scan engine
// walks by index.
//
// Address sets are kept as sorted, merged, disjoint ranges and never
// expanded, so 10.0.0.0/8 costs one Range and a Set knows its size at once.
// A Space maps an index to a triple in O(log ranges), which lets the engine
// permute and shard the space without materialising it.
//
// Expressions, one or more per argument or file line, separated by commas or
// white space:
//
//	198.18.0.1  2001:db8::1             single addresses
//	198.18.0.0/24  fd00::/120           CIDR prefixes (host bits are masked off)
//	198.18.0.10-198.18.0.20             ranges, full form
//	198.18.0.10-20  fd00::1-ff          short form: the end replaces the last
//	                                    octet (decimal) or group (hex)
//	198.18.0-1.1-10  198.18.0.*         nmap octet ranges
//	host.example                        hostnames, resolved through Options.Resolver
package target

// Package firewall owns portolan's firewall: a typed rule model (allow,
// deny, reject, limit and log by port, protocol, source and destination
// prefix and interface, with expiry and comments), a YAML profile format
// for the same model, and a backend that writes one nftables table,
// inet portolan, over netlink with github.com/google/nftables. It never
// changes another table and needs no nft or iptables binary.
//
// # Transactions
//
// Every change (Firewall.Apply, Firewall.Reset) is a single netlink batch,
// which the kernel applies whole or not at all: a ruleset with one rule the
// kernel refuses leaves the table as it was. Apply rewrites the chains
// of the table from the model and keeps the named sets of rules that did
// not change, so limit meters keep their counts.
//
// # Directions
//
// Rules filter incoming traffic (chain input) unless their Direction says
// Routed (chain forward: traffic through the host, ports published by DNAT
// included, matched by the port the client connected to) or Out (chain
// output: connections the host opens). The forward and output chains
// exist only while rules need them.
//
// # Expiry and limits without a process
//
// A rule with an expiry looks up a named set (`meta nfproto @expire_N`)
// whose two elements (ipv4, ipv6) carry kernel timeouts: when they time
// out, the rule matches nothing, whether or not portolan runs; the next
// change removes it. A limit rule keeps one dynamic set per address family
// keyed by source address, each element with its own token bucket
// (`update @limit_N_v4 { ip saddr limit rate over 12/minute burst 6 packets } drop`).
//
// # Safety
//
// Plan and Ruleset.NFT render what a change would write in nft syntax.
// Rollback (see Pending) snapshots the table before an apply so a
// detached process can restore it unless the change is confirmed.
// CheckSSH refuses a ruleset that would drop new connections from the SSH
// client. Connections conntrack tracks stay accepted by the chain's first
// rule (one opened before conntrack started in the namespace is new to
// it), and IPv6 neighbour and router discovery by the base rules that
// follow it, before any user rule. Published lists ports that other
// tables forward by DNAT (as Docker does), which input rules never see.
package firewall

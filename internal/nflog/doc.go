// Package nflog reads packets that nftables (or iptables) log rules send to
// an NFLOG group, over a netfilter netlink socket, with no libpcap and no
// listening socket: a rule such as
//
//	tcp dport 7000 log prefix "knock " group 7 queue-threshold 1 drop
//
// hands each matching packet to the process bound to group 7 in the same
// network namespace, whichever interface it came in on (also interfaces
// that appear later).
//
// # Reading
//
// Open binds a group in copy-packet mode and returns a Reader. Reader.Read
// waits for at least one packet and then takes whatever else is queued, up
// to the caller's slice, with one recvmmsg call per wake-up (batched reads).
// Packets point into the Reader's buffers and are valid until the next
// Read; copy what must outlive it. Read returns ctx.Err() when ctx ends.
//
// Each Packet carries the rule's prefix, the network-layer payload, the
// sender's link-layer address, the interface indexes and the kernel's
// receive timestamp. Packet.Flow decodes the IPv4 or IPv6 header and the
// TCP, UDP or ICMP header that follows (addresses, ports, TCP flags,
// transport payload) without allocating.
//
// # Losses
//
// The kernel queues log messages on the socket; when its receive buffer is
// full it drops them. The Reader asks the kernel to number the group's
// messages (NFULNL_CFG_F_SEQ), so Stats.Lost counts exactly the messages
// the kernel sent but the socket never delivered, and Stats.Overruns the
// times the socket reported the overflow (ENOBUFS). A loss shows in Lost
// once a later message of the group arrives.
//
// # Latency
//
// The kernel batches log messages of a group until a queue threshold or a
// timeout (one second by default) is reached. Open sets the group's
// threshold (Config.QueueThreshold, 1 by default) and a rule's own
// queue-threshold overrides it for that rule's packets; with 1 every packet
// is delivered at once.
//
// One socket may bind a group at a time in a namespace: a second Open of a
// bound group fails with ErrGroupBusy.
package nflog

package watch

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Names of what the watcher adds to portolan's table (inet portolan).
// The firewall's own input chain and sets are left alone, and the
// firewall leaves these alone: it only rewrites its input chain and its
// expire_ and limit_ sets. `portolan firewall reset` deletes the table
// and these with it.
const (
	ChainName        = "watch"         // base chain: bans, then capture
	CaptureChainName = "watch_capture" // rate limit, then NFLOG
	Ban4SetName      = "watch_ban4"
	Ban6SetName      = "watch_ban6"
	// ChainPriority runs the watch chain before the firewall's input
	// chain (priority filter, 0), so bans hold whatever the firewall
	// allows and attempts are seen whatever it drops.
	ChainPriority = -10
)

// Defaults of the capture rules.
const (
	DefaultGroup = 9     // NFLOG group
	DefaultRate  = 20000 // attempts per second logged at most
	DefaultBurst = 20000 // attempts logged at once above the rate
	snaplen      = 128   // bytes copied per packet: IP and TCP headers with options
	tagPrefix    = "portolan-watch:"
)

// Capture installs and reads the watcher's nftables rules in one network
// namespace: a base chain on the input hook that drops banned sources
// (sets with kernel timeouts) and sends new connection attempts (TCP
// SYN, FIN, NULL, Xmas and other SYN-less, ACK-less probes; with UDP
// the first datagram of a flow) through an in-kernel rate limit to an
// NFLOG group. Packets over the limit are counted by the kernel, not
// logged. Loopback traffic is not watched.
type Capture struct {
	// NetNS is an open network namespace file descriptor; 0: the calling
	// thread's namespace.
	NetNS int
	// Group is the NFLOG group. 0: DefaultGroup.
	Group uint16
	// Rate and Burst bound the attempts logged per second. 0: DefaultRate
	// and DefaultBurst.
	Rate, Burst uint32
	// UDP also captures the first datagram of each UDP flow.
	UDP bool
	// ICMP also captures ICMP and ICMPv6 echo requests (pings): a ping
	// sweep is a horizontal scan.
	ICMP bool
	// Prefix4 and Prefix6 are the ban prefix lengths (see Thresholds).
	// 0: 32 and 64.
	Prefix4, Prefix6 int
	// Logger gets debug notes. Nil: discard.
	Logger *slog.Logger

	mu     sync.Mutex
	banned map[netip.Prefix]time.Time // our view of when each ban ends
}

// Counters are what the kernel counted in the watch rules.
type Counters struct {
	RateLimited   uint64 // attempts over the rate limit, not logged
	BannedPackets uint64 // packets of banned sources dropped
}

// Sources of the never-block list, for GatherNeverBlock.
type NeverBlockSources struct {
	// Netns is the namespace watched, as for firewall.OpenNetns (a name
	// under /run/netns or a path; empty: this process's). Its routing
	// table gives the gateways and its SSH connections the SSH peers.
	Netns string
	// ResolvConf is read for resolvers. Empty: /etc/resolv.conf; a file
	// that does not exist gives none.
	ResolvConf string
	// SSHConnection is $SSH_CONNECTION, the first way to find the SSH
	// peer (see firewall.FindSSHClients).
	SSHConnection string
	// Allow is the configured allow-list.
	Allow []netip.Prefix
}

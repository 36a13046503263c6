package scan

import (
	"log/slog"
	"math"
	"net/netip"
)

// SYNProber probes TCP ports with half-open SYNs, as nmap -sS and masscan:
// open on a SYN-ACK, closed on a reset, filtered on an ICMP unreachable or
// silence. It needs CAP_NET_RAW (Linux only; elsewhere Open returns
// ErrUnsupported).
//
// Packets are built from templates and sent in batches through AF_PACKET
// (raw IP sockets on loopback and tun), replies read through a BPF filter
// on the prober's source ports. Each SYN's sequence number is a keyed hash
// of its 4-tuple, and a reply counts only if it acknowledges that number,
// so forged or stray packets are never reported. The send rate follows
// AIMD: halved when the kernel drops received packets (PACKET_STATISTICS)
// or refuses sends, raised while clean (doubled until the first drop, then
// step by step). Packets leave 64 per system call: the sender waits for a
// batch or for the scanner's Flush. Random canary ports
// of each host tell a host that answers every port (a tarpit or a
// middlebox) from one with open ports: its SYN-ACKs are reported filtered
// with ReasonTarpit. With CAP_NET_ADMIN an nftables table of the prober's
// own keeps the kernel from resetting the connections replies open.
//
// Retries of unanswered probes, RTT-derived timeouts (and so the final
// wait) are the Scanner's, as for every prober. The zero value is ready.
type SYNProber struct {
	// MaxRate caps packets per second; the AIMD rate stays under it.
	// 0 means DefaultSYNMaxRate.
	MaxRate float64
	// MinRate is the floor AIMD never goes below (nmap's --min-rate),
	// however many packets our own kernel drops. 0 means a floor of
	// 1,000 per second.
	MinRate float64
	// Local sends the SYNs through an interface (the route through it),
	// with a source address (any: nmap's -S spoofs) and from one source
	// port (nmap's --source-port) instead of a block of 1,024. The zero
	// value takes the route's interface and address.
	Local Local
	// Canaries is how many random ports of each host are probed to detect
	// tarpits. 0 means DefaultCanaries; negative means none.
	Canaries int
	// SourcePort is the first of the scan's 1,024 source ports (for a
	// firewall rule that must let replies in). 0 means a block drawn at
	// random above the ephemeral range, from 61000.
	SourcePort uint16
	// Logger gets debug events. Nil means discard.
	Logger *slog.Logger
}

// Defaults of SYNProber.
const (
	DefaultSYNMaxRate = 1_000_000
	DefaultCanaries   = 3
)

// ReasonTarpit is the reason of a SYN-ACK from a host that also answered
// random canary ports: it answers every port, so an answer says nothing.
const ReasonTarpit = "tarpit"

// RawStats is what a raw prober counted in a scan (Summary.Raw).
type RawStats struct {
	// Drops counts packets lost in the scanner's own kernel: replies the
	// receive buffer had no room for, and sends the device refused.
	Drops uint64 `json:"drops"`
	// Forged counts replies to the scanner's ports that failed the
	// sequence-number check and were ignored.
	Forged uint64 `json:"forged"`
	// Rate is the send rate at the end, and MinRate the lowest it went,
	// in packets per second.
	Rate    float64 `json:"rate"`
	MinRate float64 `json:"min_rate"`
	// Tarpits are the hosts that answered canary ports.
	Tarpits []netip.Addr `json:"tarpits,omitempty"`
	// RSTGuard says how replies are kept from the kernel: "nftables" (a
	// table of the scan's own) or "none" with why.
	RSTGuard string `json:"rst_guard"`
}

// icmpSeer is implemented by sessions that read ICMP errors themselves: a
// reset they report is a reset, never an ICMP port unreachable turned
// into a refusal by the kernel (as for connect), so only their ICMP
// errors hint at a host that rate-limits its rejections.
type icmpSeer interface{ SeesICMP() bool }

// rawStatser is implemented by sessions that count RawStats.
type rawStatser interface{ RawStats() RawStats }

// synKey identifies a probe by its 4-tuple less our address.
type synKey struct {
	addr         netip.Addr
	dport, sport uint16
}

// synEntry is a probe in flight.
type synEntry struct {
	key  synKey
	id   uint64
	sent int64 // nanoseconds since the session's start
	d    *synDest
	used bool
}

// synTable maps probes in flight by 4-tuple: open addressing, linear
// probing and backward-shift deletion in an array, so neither Send nor a
// reply allocates once the array has grown to the scan's window. It
// starts small and doubles at half load, up to its limit: a sweep keeps
// a few thousand probes in flight, and a table sized for the largest
// window (8 MiB) spends the sweep's first moments in page faults and its
// lookups in cache misses.
type synTable struct {
	e    []synEntry
	mask uint64
	n    int
	max  int // the array's limit, a power of two
}

// newSynTable returns a table of initial slots that grows to limit (both
// rounded up to powers of two).
func newSynTable(initial, limit int) synTable {
	c, m := pow2(initial), pow2(max(initial, limit))
	return synTable{e: make([]synEntry, c), mask: uint64(c - 1), max: m}
}

func pow2(n int) int {
	c := 1
	for c < n {
		c <<= 1
	}
	return c
}

func (k synKey) hash() uint64 {
	a := k.addr.As16()
	var h uint64 = 0x9e3779b97f4a7c15
	for i := 0; i < 16; i += 8 {
		h ^= uint64(a[i]) | uint64(a[i+1])<<8 | uint64(a[i+2])<<16 | uint64(a[i+3])<<24 |
			uint64(a[i+4])<<32 | uint64(a[i+5])<<40 | uint64(a[i+6])<<48 | uint64(a[i+7])<<56
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	h ^= uint64(k.dport)<<16 | uint64(k.sport)
	h *= 0x94d049bb133111eb
	return h ^ h>>29
}

// full reports whether the table has grown to its limit and is at its
// load limit there (one half).
func (t *synTable) full() bool { return len(t.e) >= t.max && 2*(t.n+1) > len(t.e) }

// put adds or replaces the entry for e.key, doubling the array first
// when it is half full and may grow.
func (t *synTable) put(e synEntry) {
	if 2*(t.n+1) > len(t.e) && len(t.e) < t.max {
		t.grow()
	}
	e.used = true
	for i := e.key.hash() & t.mask; ; i = (i + 1) & t.mask {
		if !t.e[i].used {
			t.e[i] = e
			t.n++
			return
		}
		if t.e[i].key == e.key {
			t.e[i] = e
			return
		}
	}
}

// grow doubles the array and places every entry again.
func (t *synTable) grow() {
	old := t.e
	t.e = make([]synEntry, 2*len(old))
	t.mask = uint64(len(t.e) - 1)
	for _, e := range old {
		if !e.used {
			continue
		}
		i := e.key.hash() & t.mask
		for t.e[i].used {
			i = (i + 1) & t.mask
		}
		t.e[i] = e
	}
}

// find returns the index of k's entry, or -1.
func (t *synTable) find(k synKey) int {
	for i := k.hash() & t.mask; t.e[i].used; i = (i + 1) & t.mask {
		if t.e[i].key == k {
			return int(i)
		}
	}
	return -1
}

// take removes and returns k's entry.
func (t *synTable) take(k synKey) (synEntry, bool) {
	i := t.find(k)
	if i < 0 {
		return synEntry{}, false
	}
	e := t.e[i]
	t.del(uint64(i))
	return e, true
}

// del removes entry i, moving later entries of its run back so that every
// entry stays reachable from its home slot.
func (t *synTable) del(i uint64) {
	t.n--
	for j := (i + 1) & t.mask; t.e[j].used; j = (j + 1) & t.mask {
		home := t.e[j].key.hash() & t.mask
		// Move e[j] to the hole at i unless its home lies in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.e[i] = t.e[j]
			i = j
		}
	}
	t.e[i] = synEntry{}
}

// aimd is the send rate for the next period: halved (down to a floor of
// 1,000/s, or minRate if higher) after a period with drops in our own
// kernel, raised after a clean period in which the rate held packets
// back, unchanged otherwise. Until the first drop (probing) it doubles,
// as TCP's slow start: a sweep of a few hundred milliseconds would spend
// a good part of itself climbing from the start rate by additive steps.
// After a drop it adds a fiftieth of the cap.
func aimd(rate, minRate, maxRate float64, drops uint64, limited, probing bool) float64 {
	switch {
	case drops > 0:
		return min(maxRate, max(synMinRate, minRate, rate/2))
	case limited && probing:
		return min(maxRate, 2*rate)
	case limited:
		return min(maxRate, rate+maxRate/50)
	}
	return rate
}

// synBatch is the most packets sent (or read) per system call.
const synBatch = 64

// batchOf is how many of the n packets queued (room of them before the
// ring wraps) go out in one system call with tokens in hand: a batch of
// synBatch, or what there is after a flush (partial); else none, with the
// tokens still needed when it is the rate that holds them back. Waiting
// for a batch's tokens, rather than sending what trickles in, keeps to a
// few packets a system call.
func batchOf(n, room int, tokens float64, partial bool) (k int, need float64) {
	if n == 0 || n < synBatch && !partial {
		return 0, 0
	}
	k = min(n, room, synBatch)
	if tokens < float64(k) {
		return 0, float64(k) - tokens
	}
	return k, 0
}

// synMinRate is AIMD's floor, in packets per second.
const synMinRate = 1_000

// icmpReason is the reason an ICMP destination unreachable gives.
func icmpReason(v6 bool, code uint8) string {
	if v6 {
		switch code {
		case 0:
			return ReasonNetUnreach
		case 1, 5, 6:
			return ReasonAdminProhibited
		case 4:
			return ReasonPortUnreach
		}
		return ReasonHostUnreach
	}
	switch code {
	case 0, 6, 11:
		return ReasonNetUnreach
	case 3:
		return ReasonPortUnreach
	case 9, 10, 13:
		return ReasonAdminProhibited
	}
	return ReasonHostUnreach
}

func floatBits(f float64) uint64 { return math.Float64bits(f) }
func bitsFloat(b uint64) float64 { return math.Float64frombits(b) }

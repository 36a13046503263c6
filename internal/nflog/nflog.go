package nflog

import (
	"errors"
	"time"
)

// ErrGroupBusy is returned by Open when another socket in the namespace has
// bound the group.
var ErrGroupBusy = errors.New("nflog group already bound by another socket")

// Config says which group to read and how. Its zero value reads group 0
// in the calling thread's namespace with the defaults below.
type Config struct {
	// Group is the NFLOG group to bind (nft's `log group N`).
	Group uint16
	// NetNS is an open network namespace file to bind in; 0 means the
	// calling thread's namespace.
	NetNS int
	// CopyRange is how many bytes of each packet, from its network
	// header, the kernel copies; 0 means all of it (up to 65535). A
	// rule's snaplen overrides it.
	CopyRange uint16
	// QueueThreshold is how many messages the kernel gathers before
	// sending them; 0 means 1, every packet at once. A rule's
	// queue-threshold overrides it.
	QueueThreshold uint32
	// FlushTimeout sends a partial batch after this long; 0 keeps the
	// kernel's default (one second). It matters only above threshold 1.
	FlushTimeout time.Duration
	// ReadBuffer is the socket's receive buffer in bytes; 0 means 4 MiB.
	// Root may exceed net.core.rmem_max.
	ReadBuffer int
	// Batch is how many datagrams one read system call may take; 0 means
	// 16.
	Batch int
}

// Stats counts what a Reader saw; every field only grows.
type Stats struct {
	Packets   uint64 // packets returned by Read
	Lost      uint64 // messages the kernel numbered that never arrived (socket overflow)
	Overruns  uint64 // times the socket reported an overflow (ENOBUFS)
	Truncated uint64 // datagrams longer than a read buffer, dropped
	Malformed uint64 // messages that did not parse, dropped
}

func (c Config) withDefaults() Config {
	if c.QueueThreshold == 0 {
		c.QueueThreshold = 1
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 4 << 20
	}
	if c.Batch <= 0 {
		c.Batch = 16
	}
	return c
}

// slotSize is a read buffer's size: the copy range and room for the
// message's headers and other attributes.
func (c Config) slotSize() int {
	n := int(c.CopyRange)
	if n == 0 {
		n = 65535
	}
	return n + 512
}

// Package mmsg reads queued datagrams in batches with recvmmsg(2) from a
// socket held by Go's poller, waiting for them and stopping when a context
// is done: the loop of the NFLOG reader and of knockd's AF_PACKET capture.
// It is Linux only.
package mmsg

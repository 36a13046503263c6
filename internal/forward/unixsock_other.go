//go:build !linux

package forward

// unixSocketsSupported: the portable relay works on *net.TCPConn only,
// so rules with unix socket addresses are refused here.
const unixSocketsSupported = false

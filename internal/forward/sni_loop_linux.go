package forward

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// On Linux the event loop reads the ClientHello of a rule with SNI routes
// itself: the connection waits in the loop (its client socket in the
// epoll set, its connect timeout on the loop's timer) until the hello is
// complete, then its route's targets are dialled as any connection's, and
// the bytes read go to the target first, after a PROXY header if one is
// sent (connected puts them behind it in hdr). Rules that also accept
// PROXY headers hand their trusted peers' connections to the goroutine
// relay, which reads the header and then the hello (tcp.go, routeSNI).
// The loop records dial outcomes through the rule's pool (pool.dialed):
// a route's pool has the same passive-health settings, and the state is
// the target's own.

// helloRead is a connection's ClientHello while it is being read.
type helloRead struct {
	p       helloParser
	buf     []byte // every byte read from the client so far
	pending bool   // counted in Server.handoffs: it waits for more bytes
}

// acceptHello starts a connection of a rule with SNI routes: its
// ClientHello is read now if it has come with the connection, else when
// the client's socket says so, within the connect timeout.
func (l *tcpLoop) acceptHello(c *loopConn, now int64) {
	c.hello = &helloRead{}
	c.deadline = now + int64(c.rs.connectTimeout())
	c.cr = true
	l.readHello(c, now)
	switch {
	case c.done:
	case c.hello == nil:
		// Routed and dialled at once: the sockets join the epoll set now.
		if !c.watched {
			l.watch(c)
		}
	default:
		// Waiting for more bytes: as many connections may wait at once as
		// PROXY headers may be read, so that clients that send a few
		// bytes and stop hold little memory.
		if !l.s.startHandoff() {
			c.rs.stats.limited.Add(1)
			l.finish(c, slog.LevelWarn, "limit: client hellos pending", true)
			return
		}
		c.hello.pending = true
		if err := l.register(c, c.cfd); err != nil {
			l.finish(c, slog.LevelWarn, "epoll: "+err.Error(), true)
			return
		}
		c.watched = true
		l.addTimer(c, c.deadline, now)
	}
}

// readHello reads what the client has sent; once the ClientHello is
// complete the connection is routed and dialled.
func (l *tcpLoop) readHello(c *loopConn, now int64) {
	h := c.hello
	for c.cr {
		n, errno := recvRaw(c.cfd, l.buf[:min(len(l.buf), maxHelloBytes-len(h.buf))])
		switch {
		case errno == unix.EAGAIN:
			c.cr = false
			return
		case errno == unix.EINTR:
			continue
		case errno != 0:
			l.rejectHello(c, fmt.Sprintf("client closed after %d bytes of a ClientHello: %v", len(h.buf), os.NewSyscallError("read", errno)))
			return
		case n == 0:
			l.rejectHello(c, fmt.Sprintf("client closed after %d bytes of a ClientHello: EOF", len(h.buf)))
			return
		}
		h.buf = append(h.buf, l.buf[:n]...)
		hello, _, err := h.p.next(h.buf)
		switch {
		case errors.Is(err, ErrShortHello):
			continue
		case err != nil:
			l.rejectHello(c, err.Error())
			return
		}
		c.sni = hello.ServerName
		p, err := c.rs.sniPool(hello.ServerName)
		if err != nil {
			l.rejectHello(c, err.Error())
			return
		}
		c.pre = h.buf
		l.endHello(c)
		delete(l.timed, c) // dial sets its own timer if it waits
		c.cands = p.candidates(c.candBuf[:0], c.client.Addr())
		if len(c.cands) == 0 {
			c.dialErr = errNoHealthy
		}
		l.dial(c, now)
		return
	}
}

// endHello leaves the reading state.
func (l *tcpLoop) endHello(c *loopConn) {
	if c.hello != nil && c.hello.pending {
		l.s.endHandoff()
	}
	c.hello = nil
}

// rejectHello resets a client whose ClientHello could not be read or
// routed, and counts it.
func (l *tcpLoop) rejectHello(c *loopConn, reason string) {
	c.rs.stats.sniRejected.Add(1)
	l.finish(c, slog.LevelWarn, "sni: "+reason, true)
}

// helloTimedOut is the sweep's verdict on a connection still reading its
// ClientHello: reset once the connect timeout has passed.
func (l *tcpLoop) helloTimedOut(c *loopConn, now int64) bool {
	if c.deadline > now {
		return false
	}
	l.rejectHello(c, fmt.Sprintf("no complete ClientHello within %s (%d bytes)", c.rs.connectTimeout(), len(c.hello.buf)))
	return true
}

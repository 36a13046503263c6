//go:build !linux

package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// copyChunk is how much one io.CopyN moves before deadlines are refreshed.
const copyChunk = 1 << 20

// pipe copies src to dst with io.Copy, and io.CopyN under an idle
// timeout so that deadlines are refreshed between chunks. me and other say
// whether each direction saw no bytes in its last full idle period; the
// connection is idle when both did. A direction that reached EOF counts as
// idle from then on.
func pipe(dst, src *net.TCPConn, idle time.Duration, me, other *atomic.Bool, count *atomic.Uint64) (int64, error) {
	if idle <= 0 {
		n, err := io.Copy(countingWriter{dst, count}, src)
		me.Store(true)
		return n, err
	}
	var total int64
	for {
		dl := time.Now().Add(idle)
		// Only a read deadline: splice fails a read timeout with its pipe
		// empty, while a write timeout would drop the bytes in the pipe. A
		// peer that stops reading just holds the connection (backpressure,
		// bounded by the socket buffers) until the other side goes idle.
		src.SetReadDeadline(dl)
		n, err := io.CopyN(countingWriter{dst, count}, src, copyChunk)
		total += n
		switch {
		case err == nil:
			me.Store(false)
		case err == io.EOF:
			me.Store(true)
			return total, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if n > 0 {
				me.Store(false)
				continue
			}
			me.Store(true)
			if other.Load() {
				return total, errIdle
			}
		default:
			me.Store(true)
			return total, err
		}
	}
}

// countingWriter adds what it writes to a rule's byte counter as it
// goes, so that a long connection's bytes show in the metrics.
type countingWriter struct {
	w     io.Writer
	count *atomic.Uint64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.count.Add(uint64(n))
	return n, err
}

func closeWrite(c *net.TCPConn) { c.CloseWrite() }

func setKeepAlive(c *net.TCPConn, ka net.KeepAliveConfig) { c.SetKeepAliveConfig(ka) }

type tcpListener struct {
	s  *Server
	ln *net.TCPListener
	rs atomic.Pointer[ruleState]
}

func (s *Server) openTCP(ctx context.Context, r *Rule) (listener, error) {
	// Keep-alive is set per connection from the rule in force, so a reload
	// can change it; KeepAlive -1 stops the listener from setting its own.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", r.Listen)
	if err != nil {
		return nil, err
	}
	return &tcpListener{s: s, ln: ln.(*net.TCPListener)}, nil
}

func (l *tcpListener) state() *ruleState     { return l.rs.Load() }
func (l *tcpListener) setState(r *ruleState) { l.rs.Store(r) }
func (l *tcpListener) addr() net.Addr        { return l.ln.Addr() }
func (l *tcpListener) drain()                { l.ln.Close() }

func (l *tcpListener) serve() {
	var delay time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, never die.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.s.logger().Error("accept", "addr", l.ln.Addr().String(), "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		rs := l.rs.Load()
		tc := &tcpConn{client: c}
		if !l.s.track(tc) {
			reset(c)
			continue
		}
		go l.s.handleTCP(rs, tc)
	}
}

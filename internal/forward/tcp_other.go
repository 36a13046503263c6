//go:build !linux

package forward

import (
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
func pipe(dst, src *net.TCPConn, idle time.Duration, me, other *atomic.Bool) (int64, error) {
	if idle <= 0 {
		n, err := io.Copy(dst, src)
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
		n, err := io.CopyN(dst, src, copyChunk)
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

func closeWrite(c *net.TCPConn) { c.CloseWrite() }

func setKeepAlive(c *net.TCPConn, ka net.KeepAliveConfig) { c.SetKeepAliveConfig(ka) }

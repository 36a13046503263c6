package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// pool is a rule's targets with their health and the balancing cursor.
type pool struct {
	targets []*target
	balance Balance
	next    atomic.Uint32
}

type target struct {
	addr string
	down atomic.Bool // set by health checks only
}

func newPool(r *Rule) *pool {
	p := &pool{balance: r.Balance}
	for _, a := range r.Targets {
		p.targets = append(p.targets, &target{addr: a})
	}
	return p
}

// errNoHealthy is returned when health checks have marked every target down.
var errNoHealthy = errors.New("no healthy target")

// candidates returns the healthy targets in the order to try them.
func (p *pool) candidates(buf []*target) []*target {
	n := len(p.targets)
	start := 0
	if p.balance == RoundRobin && n > 1 {
		start = int(p.next.Add(1)-1) % n
	}
	for i := range n {
		t := p.targets[(start+i)%n]
		if !t.down.Load() {
			buf = append(buf, t)
		}
	}
	return buf
}

// dialTCP connects to the first candidate that answers.
func (p *pool) dialTCP(ctx context.Context, d *net.Dialer) (*net.TCPConn, string, error) {
	var arr [8]*target
	cands := p.candidates(arr[:0])
	if len(cands) == 0 {
		return nil, "", errNoHealthy
	}
	var err error
	for _, t := range cands {
		var c net.Conn
		c, err = d.DialContext(ctx, "tcp", t.addr)
		if err == nil {
			return c.(*net.TCPConn), t.addr, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, cands[len(cands)-1].addr, err
}

// check runs active TCP connect checks every interval until ctx ends.
func (p *pool) check(ctx context.Context, rule string, interval, timeout time.Duration, log *slog.Logger) {
	if timeout > interval {
		timeout = interval
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for _, t := range p.targets {
			c, err := d.DialContext(ctx, "tcp", t.addr)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT per check
				c.Close()
			}
			wasDown := t.down.Swap(err != nil)
			switch {
			case err != nil && !wasDown:
				log.Warn("target down", "rule", rule, "target", t.addr, "err", err)
			case err == nil && wasDown:
				log.Info("target up", "rule", rule, "target", t.addr)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

package main

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"portolan/internal/rawnet"
)

// ceilRow is one measurement of the raw ceiling: how fast the veth pair
// carries a full sweep's SYNs and their answers, sent by the most minimal
// sender there is (prebuilt packets, batches of 64 per sendmmsg on an
// AF_PACKET socket, no scheduling, no retries, no bookkeeping). A SYN scan
// cannot beat it; the issue wants portolan -sS within 3x of it.
type ceilRow struct {
	scenario string
	run      int
	sent     int           // SYNs sent: ports 1-65535
	replies  int           // RSTs and SYN-ACKs received
	send     time.Duration // first sendmmsg to the last
	sweep    time.Duration // first sendmmsg to the last answer
	err      error
}

// pps is the answered SYNs per second of the sweep.
func (c ceilRow) pps() float64 { return float64(c.replies) / c.sweep.Seconds() }

// Ceiling parameters: the sender keeps at most ceilWindow SYNs unanswered
// (what the veth and the target's backlog take without dropping), but
// sends on after ceilStall without an answer (dropped ports never answer);
// the sweep ends ceilQuiet after the last answer.
const (
	ceilBatch  = 64
	ceilWindow = 4096
	ceilStall  = 2 * time.Millisecond
	ceilQuiet  = 200 * time.Millisecond
	ceilSport  = 61000 // source ports 61000-62023, above the ephemeral range
)

// rawCeiling sweeps ports 1-65535 of addr from the scanner namespace.
// The kernel there resets the SYN-ACKs of open ports, as it would for a
// scanner without a guard; that costs the target nothing measurable.
func (tb *testbed) rawCeiling(sc scenario, run int) ceilRow {
	row := ceilRow{scenario: sc.name, run: run}
	var snd *rawnet.Sender
	var rx *rawnet.Receiver
	var tmpl *rawnet.Template
	err := tb.scanner.Do(func() error {
		r, err := rawnet.LookupRoute(sc.addr)
		if err != nil {
			return err
		}
		if !r.Link() {
			return errors.New("route without a link layer: not the veth")
		}
		if tmpl, err = rawnet.NewTemplate(r.Src, r.SrcMAC, tb.link.BMAC); err != nil {
			return err
		}
		if snd, err = rawnet.OpenSender(r, sc.addr.Is6(), ceilBatch); err != nil {
			return err
		}
		if rx, err = rawnet.OpenReceiver(ceilSport, ceilSport+1023, ceilBatch, 1); err != nil {
			snd.Close()
			return err
		}
		return nil
	})
	if err != nil {
		row.err = fmt.Errorf("raw ceiling: %w", err)
		return row
	}
	defer snd.Close()
	defer rx.Close()

	var replies atomic.Int64
	var last atomic.Int64 // nanoseconds since start of the last answer
	start := time.Now()
	done := make(chan struct{})
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		count := func(b []byte) {
			if p, err := rawnet.Parse(b); err == nil && !p.ICMP && p.Src == sc.addr {
				replies.Add(1)
			}
		}
		for {
			if n, _ := rx.Recv(count); n > 0 {
				last.Store(int64(time.Since(start)))
			}
			select {
			case <-done:
				return
			default:
			}
		}
	}()

	port := 1
	for port <= 65535 {
		// The window: wait for answers, but not for ever.
		waitFrom := time.Now()
		for port-1-int(replies.Load()) >= ceilWindow && time.Since(waitFrom) < ceilStall {
			runtime.Gosched() // the receiver may share this core
		}
		k := 0
		for ; k < ceilBatch && port <= 65535; k, port = k+1, port+1 {
			pkt := tmpl.Fill(snd.Slot(k), sc.addr, uint16(ceilSport+port%1024), uint16(port), uint32(port))
			snd.Ready(k, len(pkt), sc.addr)
		}
		for from := 0; from < k; {
			n, err := snd.Send(from, k-from)
			if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
				continue // the device queue is full: this is the ceiling
			}
			if err != nil {
				row.err = fmt.Errorf("raw ceiling: send: %w", err)
				close(done)
				<-recvDone
				return row
			}
			from += n
		}
		row.sent += k
	}
	row.send = time.Since(start)
	for {
		time.Sleep(ceilQuiet / 4)
		if time.Since(start)-time.Duration(last.Load()) > ceilQuiet {
			break
		}
	}
	close(done)
	<-recvDone
	row.replies = int(replies.Load())
	row.sweep = time.Duration(last.Load())
	if row.sweep < row.send {
		row.sweep = row.send
	}
	return row
}

// line is the ceiling's progress line, as row.line is a tool's.
func (c ceilRow) line() string {
	if c.err != nil {
		return fmt.Sprintf("run %d %-11s %-16s ERROR %v", c.run, c.scenario, "raw-ceiling", c.err)
	}
	return fmt.Sprintf("run %d %-11s %-16s %7.2fs  sent %d in %.2fs, %d answers, %.0f answered SYNs/s",
		c.run, c.scenario, "raw-ceiling", c.sweep.Seconds(), c.sent, c.send.Seconds(), c.replies, c.pps())
}

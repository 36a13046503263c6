package cli

// Unix domain sockets in ls (-x) and who (a path or @name): the table ss
// -xp and lsof -U print, from sock_diag's unix family.

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"portolan/internal/output"
	"portolan/internal/owners"
	"portolan/internal/sockets"
)

// unixSocketJSON is the stable JSON form of a unix socket.
type unixSocketJSON struct {
	Proto     string        `json:"proto"` // "unix"
	Type      string        `json:"type"`  // stream, dgram, seqpacket
	State     string        `json:"state"`
	Name      string        `json:"name"` // path, "@abstract", or "" unnamed
	Abstract  bool          `json:"abstract"`
	Inode     uint32        `json:"inode"`
	Cookie    uint64        `json:"cookie"`
	Peer      uint32        `json:"peer_inode,omitempty"`
	PeerName  string        `json:"peer_name,omitempty"`
	Pending   int           `json:"pending,omitempty"`
	RxQueue   uint32        `json:"rx_queue"`
	TxQueue   uint32        `json:"tx_queue"`
	UID       *uint32       `json:"uid,omitempty"`
	User      string        `json:"user,omitempty"`
	Processes []processJSON `json:"processes,omitempty"`
	Unknown   owners.Unseen `json:"owner_unknown,omitempty"`
	// PeerProcesses hold the other end of a connection (who PATH --all).
	PeerProcesses []processJSON `json:"peer_processes,omitempty"`
}

func newUnixSocketJSON(s *sockets.UnixSocket) unixSocketJSON {
	j := unixSocketJSON{Proto: "unix", Type: s.Type.String(), State: s.StateName(), Name: s.Name, Abstract: s.Abstract(),
		Inode: s.Inode, Cookie: s.Cookie, Peer: s.Peer, PeerName: s.PeerName, Pending: s.Pending,
		RxQueue: s.RxQueue, TxQueue: s.TxQueue, Unknown: s.Unseen}
	if s.HasUID {
		uid := s.UID
		j.UID, j.User = &uid, owners.LookupUser(uid)
	}
	for _, p := range s.Procs {
		j.Processes = append(j.Processes, newProcessJSON(p))
	}
	return j
}

// listUnix reads the unix sockets: listeners and bound datagram sockets
// (the servers), or with all every one.
func listUnix(ctx context.Context, g *Globals, netns, name string, all, withOwners, details bool) ([]sockets.UnixSocket, error) {
	q := sockets.UnixQuery{Name: name}
	if !all {
		q.States = sockets.States(sockets.Listen, sockets.Close)
	}
	socks, err := (&sockets.Table{Netns: netns, Logger: g.Logger()}).ListUnix(ctx, q)
	if err != nil {
		return nil, socketsErr(netns, err)
	}
	if !all {
		// An unconnected stream socket is a client before connect, or a
		// server before listen: not a server yet. A named datagram socket
		// is one.
		kept := socks[:0]
		for _, s := range socks {
			if s.State == sockets.Listen || s.Type == sockets.UnixDgram && s.Name != "" {
				kept = append(kept, s)
			}
		}
		socks = kept
	}
	if withOwners && len(socks) > 0 {
		if err := sockets.FindUnixOwners(ctx, socks, owners.Options{Details: details}); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			fmt.Fprintf(g.io.ErrOut, "portolan: owners: %v\n", err)
		}
	}
	return socks, nil
}

// runLsUnix is ls -x.
func runLsUnix(ctx context.Context, g *Globals, opts LsOptions, filter ownerFilter) error {
	if err := opts.watchOptions.check(); err != nil {
		return usageErr(err)
	}
	if opts.Watch {
		var socks []sockets.UnixSocket
		snap := func(ctx context.Context) ([]watchItem, error) {
			var err error
			if socks, err = lsUnixSnapshot(ctx, g, opts, filter); err != nil {
				return nil, err
			}
			items := make([]watchItem, len(socks))
			for i := range socks {
				s := &socks[i]
				items[i] = watchItem{fmt.Sprintf("%d %s", s.Inode, s.State), newUnixSocketJSON(s)}
			}
			return items, nil
		}
		return runWatch(ctx, g, opts.Interval, snap, func(w io.Writer) error {
			if len(socks) == 0 {
				_, err := fmt.Fprintln(w, "no sockets match")
				return err
			}
			return writeUnixTable(w, g.color(), socks, !opts.NoOwner)
		})
	}
	socks, err := lsUnixSnapshot(ctx, g, opts, filter)
	if err != nil {
		return err
	}
	if g.JSON {
		out := make([]unixSocketJSON, len(socks))
		for i := range socks {
			out[i] = newUnixSocketJSON(&socks[i])
		}
		if err := writeJSON(g, out); err != nil {
			return err
		}
	} else if len(socks) > 0 {
		if err := writeUnixTable(g.io.Out, g.color(), socks, !opts.NoOwner); err != nil {
			return err
		}
	}
	if len(socks) == 0 {
		fmt.Fprintln(g.io.ErrOut, "no sockets match")
		return silentExit(ExitNotFound)
	}
	return nil
}

// lsUnixSnapshot reads the unix sockets once, with their owners, filtered
// by user and pid.
func lsUnixSnapshot(ctx context.Context, g *Globals, opts LsOptions, filter ownerFilter) ([]sockets.UnixSocket, error) {
	socks, err := listUnix(ctx, g, opts.Netns, "", opts.All, !opts.NoOwner, false)
	if err != nil || !filter.active() {
		return socks, err
	}
	kept := socks[:0]
	for i := range socks {
		// A kernel that does not report the creator's uid leaves the
		// holders' users to match.
		uid := socks[i].UID
		if !socks[i].HasUID {
			uid = ^uint32(0)
		}
		if filter.keep(uid, socks[i].Procs) {
			kept = append(kept, socks[i])
		}
	}
	return kept, nil
}

func writeUnixTable(w io.Writer, color bool, socks []sockets.UnixSocket, withOwners bool) error {
	t := output.Table{Header: []string{"TYPE", "STATE", "NAME", "PEER", "QUEUE"}}
	if withOwners {
		t.Header = append(t.Header, "PID", "PROCESS", "USER")
	}
	for i := range socks {
		s := &socks[i]
		name := s.Name
		if name == "" {
			name = "-"
		}
		peer := "-"
		switch {
		case s.PeerName != "":
			peer = s.PeerName
		case s.Peer != 0:
			peer = "socket:[" + strconv.FormatUint(uint64(s.Peer), 10) + "]"
		}
		queue := fmt.Sprintf("%d/%d", s.RxQueue, s.TxQueue)
		if s.Pending > 0 {
			queue += fmt.Sprintf(" (%d pending)", s.Pending)
		}
		row := []string{s.Type.String(), s.StateName(), name, peer, queue}
		if withOwners {
			pid, proc, user := "-", "-", "-"
			if s.HasUID {
				user = owners.LookupUser(s.UID)
			}
			if len(s.Procs) > 0 {
				p := s.Procs[0]
				pid, proc, user = strconv.Itoa(p.PID), p.Comm, p.User
				if n := len(s.Procs) - 1; n > 0 {
					proc += " +" + strconv.Itoa(n)
				}
			}
			row = append(row, pid, proc, user)
		}
		t.Add(row...)
	}
	return t.Write(w, color)
}

// peerProcs finds the processes at the other end of the connections in
// socks (the clients of a listener's accepted sockets), by peer inode.
func peerProcs(ctx context.Context, g *Globals, netns string, socks []sockets.UnixSocket) map[uint32][]*owners.Process {
	want := map[uint32]bool{}
	for i := range socks {
		if socks[i].Peer != 0 {
			want[socks[i].Peer] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	all, err := (&sockets.Table{Netns: netns, Logger: g.Logger()}).ListUnix(ctx, sockets.UnixQuery{})
	if err != nil {
		return nil
	}
	var ends []sockets.UnixSocket
	for _, s := range all {
		if want[s.Inode] {
			ends = append(ends, s)
		}
	}
	if err := sockets.FindUnixOwners(ctx, ends, owners.Options{}); err != nil && ctx.Err() != nil {
		return nil
	}
	out := make(map[uint32][]*owners.Process, len(ends))
	for _, e := range ends {
		out[e.Inode] = e.Procs
	}
	return out
}

// isUnixName reports whether a who argument names a unix socket: an
// absolute or ./relative path, or an abstract name ("@name"). Other
// slashes are a port's protocol ("53/udp").
func isUnixName(arg string) bool {
	return strings.HasPrefix(arg, "@") || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../")
}

// runWhoUnix is who PATH or who @NAME: the listener bound to the name and,
// with --all, the connections it accepted, each with its processes and
// the peers' processes.
func runWhoUnix(ctx context.Context, g *Globals, opts WhoOptions) error {
	socks, err := listUnix(ctx, g, opts.Netns, opts.Port, true, true, true)
	if err != nil {
		return err
	}
	if !opts.All {
		kept := socks[:0]
		for _, s := range socks {
			if s.State != sockets.Established {
				kept = append(kept, s)
			}
		}
		socks = kept
	}
	peers := peerProcs(ctx, g, opts.Netns, socks)
	if g.JSON {
		out := []unixSocketJSON{}
		for i := range socks {
			j := newUnixSocketJSON(&socks[i])
			for _, p := range peers[socks[i].Peer] {
				j.PeerProcesses = append(j.PeerProcesses, newProcessJSON(p))
			}
			out = append(out, j)
		}
		if err := writeJSON(g, map[string]any{"name": opts.Port, "held": len(socks) > 0, "sockets": out}); err != nil {
			return err
		}
	} else {
		for i := range socks {
			s := &socks[i]
			if i > 0 {
				fmt.Fprintln(g.io.Out)
			}
			line := fmt.Sprintf("unix/%s  %s  %s", s.Type, s.StateName(), s.Name)
			if s.Peer != 0 {
				line += fmt.Sprintf(" <-> socket:[%d]", s.Peer)
			}
			fmt.Fprintln(g.io.Out, line)
			kv := func(k, v string) {
				if v != "" {
					fmt.Fprintf(g.io.Out, "  %-9s %s\n", k, v)
				}
			}
			if len(s.Procs) == 0 {
				kv("owner", "unknown: "+sockets.ExplainUnseen(&sockets.Socket{UID: s.UID, State: s.State, Unseen: s.Unseen}))
			}
			writeProcs(g.io.Out, kv, s.Procs, time.Now())
			var ps []string
			for _, p := range peers[s.Peer] {
				ps = append(ps, fmt.Sprintf("pid %d (%s, user %s)", p.PID, p.Comm, p.User))
			}
			kv("peer", strings.Join(ps, ", "))
		}
	}
	if len(socks) == 0 {
		fmt.Fprintf(g.io.ErrOut, "unix socket %s: nothing listens there\n", opts.Port)
		return silentExit(ExitError)
	}
	return nil
}

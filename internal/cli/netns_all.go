package cli

// --all-netns: the same question asked in every network namespace of the
// machine (named, and those only a process holds), each socket labelled
// with its namespace.

import (
	"context"

	"portolan/internal/sockets"
)

// allNetnsSockets runs qs in every network namespace and returns the
// sockets sorted by port, each with Netns set. A namespace that goes away
// meanwhile is passed over.
func allNetnsSockets(ctx context.Context, g *Globals, qs []sockQuery) ([]sockets.Socket, error) {
	nss, err := sockets.Namespaces()
	if err != nil {
		return nil, err
	}
	var all []sockets.Socket
	for _, ns := range nss {
		path := ns.Path
		if ns.Self {
			path = ""
		}
		socks, err := listSockets(ctx, g, path, qs)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			g.Logger().Debug("netns passed over", "netns", ns.Label(), "err", err)
			continue
		}
		label := ns.Label()
		for i := range socks {
			socks[i].Netns = label
		}
		all = append(all, socks...)
	}
	sockets.SortByPort(all)
	return all, nil
}

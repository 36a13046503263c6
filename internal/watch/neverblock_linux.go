package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"portolan/internal/firewall"
)

// GatherNeverBlock builds the never-block list: every gateway of the
// namespace's routing tables, the resolvers of resolv.conf, the SSH
// peers (the one this process runs under, or every connected one when
// that cannot be told), and the allow-list.
func GatherNeverBlock(ctx context.Context, src NeverBlockSources) (*NeverBlock, error) {
	nb := &NeverBlock{}
	for _, p := range src.Allow {
		nb.Add(p, "allow-list")
	}
	ns, err := firewall.OpenNetns(src.Netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	// Our own namespace is read in place: entering it (as for another)
	// would need CAP_SYS_ADMIN, which a watcher run with CAP_NET_ADMIN
	// alone does not have.
	fd := 0
	if src.Netns != "" {
		fd = ns.FD()
	}
	gws, err := Gateways(fd)
	if err != nil {
		return nil, err
	}
	for _, g := range gws {
		nb.AddAddr(g, "gateway")
	}
	path := src.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	if data, err := os.ReadFile(path); err == nil {
		rs, err := ParseResolvConf(path, data)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			nb.AddAddr(r, "resolver")
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	var fns *firewall.Netns
	if src.Netns != "" {
		fns = ns
	}
	ssh, err := firewall.FindSSHClients(ctx, src.SSHConnection, fns)
	if err != nil {
		return nil, err
	}
	for _, p := range ssh.Packets {
		nb.AddAddr(p.Src, "ssh peer")
	}
	return nb, nil
}

// Gateways returns the next hops of every route in the namespace nsfd
// (0: this thread's), in all routing tables.
func Gateways(nsfd int) ([]netip.Addr, error) {
	h := &netlink.Handle{}
	if nsfd != 0 {
		var err error
		h, err = netlink.NewHandleAt(netns.NsHandle(nsfd), unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("read routes: %w", err)
		}
		defer h.Close()
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	var out []netip.Addr
	add := func(ip []byte) {
		if a, ok := netip.AddrFromSlice(ip); ok && !a.IsUnspecified() {
			out = append(out, a.Unmap())
		}
	}
	for _, r := range routes {
		add(r.Gw)
		if r.Via != nil {
			if v, ok := r.Via.(*netlink.Via); ok {
				add(v.Addr)
			}
		}
		for _, nh := range r.MultiPath {
			add(nh.Gw)
		}
	}
	return out, nil
}

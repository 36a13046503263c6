package firewall

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// flushHook is the type of Firewall.beforeFlush.
type flushHook = func(*nftables.Conn, *nftables.Table, *nftables.Chain)

// live is the table as read, with what Apply needs to change it.
type live struct {
	Table
	table   *nftables.Table    // nil when the table does not exist
	chains  map[Direction]bool // which of the chains exist
	sets    map[string]*nftables.Set
	krules  []krule  // the chains' kernel rules as decoded (kind 0: unmanaged), input first, in Directions' order
	handles []uint64 // their handles
	gen     uint64   // the ruleset generation it was read at, when genOK
	genOK   bool
}

// dial opens a netlink connection to nftables in the namespace. For a
// batch, b sizes the socket buffers: the batch goes in one sendmsg, which
// fails with EMSGSIZE beyond the send buffer, and the kernel echoes every
// rule and acknowledges every message after the whole transaction, which
// fails with ENOBUFS beyond the receive buffer.
func (f *Firewall) dial(b *bufSizes) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if f.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(f.NetNS))
	}
	if b != nil {
		opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error { return setBuffers(c, b) }))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// bufSizes are socket buffer sizes for one batch.
type bufSizes struct{ send, recv int }

// batchBuffers sizes the buffers for a batch of rules and other messages.
// A rule takes up to about a kilobyte to send; its answers, an
// acknowledgement (with a copy of the request) and an echo in a socket
// buffer of a page or more. Other messages are smaller and are only
// acknowledged. The sizes are generous on purpose: they only bound what
// the kernel may use.
func batchBuffers(rules, others int) *bufSizes {
	return &bufSizes{
		send: 1<<20 + rules*(2<<10) + others*(1<<10),
		recv: 1<<20 + rules*(8<<10) + others*(2<<10),
	}
}

// setBuffers sets the socket's buffers, past net.core.rmem_max and
// wmem_max where the caller has CAP_NET_ADMIN (which changing nftables
// needs anyway).
func setBuffers(c *netlink.Conn, b *bufSizes) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var rerr, werr error
	if err := raw.Control(func(fd uintptr) {
		rerr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, b.recv)
		werr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, b.send)
	}); err != nil {
		return err
	}
	if rerr != nil {
		if err := c.SetReadBuffer(b.recv); err != nil {
			return err
		}
	}
	if werr != nil {
		return c.SetWriteBuffer(b.send)
	}
	return nil
}

// Read returns portolan's table as the kernel holds it.
func (f *Firewall) Read(ctx context.Context) (*Table, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := f.dial(nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	l, err := f.read(c)
	if err != nil {
		return nil, err
	}
	t := l.Table
	t.live = l
	return &t, nil
}

func (f *Firewall) read(c *nftables.Conn) (*live, error) {
	wrap := func(what string, err error) error {
		return fmt.Errorf("read table inet %s: %s: %w", TableName, what, err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, wrap("list tables", err)
	}
	l := &live{sets: map[string]*nftables.Set{}, chains: map[Direction]bool{}}
	for _, t := range tables {
		if t.Name == TableName {
			l.table = t
		}
	}
	if l.table == nil {
		return l, nil
	}
	l.Exists = true
	er, err := newElemReader(f.NetNS)
	if err != nil {
		return nil, wrap("list rules", err)
	}
	defer er.close()
	var cookie, gen uint64
	genErr := errors.New("no cache")
	if f.Cache != "" {
		if cookie, gen, genErr = er.genID(); genErr == nil {
			if cl, ok := f.loadCache(cookie, gen, l.table); ok {
				return cl, nil
			}
		}
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, wrap("list chains", err)
	}
	found := map[Direction]*nftables.Chain{}
	for _, ch := range chains {
		for _, d := range Directions {
			if ch.Table.Name == TableName && ch.Name == d.chain() {
				found[d] = ch
				l.chains[d] = true
			}
		}
	}
	sets, err := c.GetSets(l.table)
	if err != nil {
		return nil, wrap("list sets", err)
	}
	for _, s := range sets {
		l.sets[s.Name] = s
	}
	chain := found[In]
	if chain == nil {
		return l, nil
	}
	type chainRules struct {
		dir   Direction
		rules []*nftables.Rule
	}
	var all []chainRules
	for _, d := range Directions {
		if found[d] == nil {
			continue
		}
		rules, err := er.rules(d.chain())
		if err != nil {
			return nil, wrap("list rules (portolan firewall reset clears the table)", err)
		}
		all = append(all, chainRules{d, rules})
	}
	elems := map[string]*setData{}
	setByName := func(name string) (*setData, error) {
		if d, ok := elems[name]; ok {
			return d, nil
		}
		s := l.sets[name]
		if s == nil {
			return nil, fmt.Errorf("no set %s", name)
		}
		es, err := er.elements(name)
		if err != nil {
			return nil, fmt.Errorf("elements of set %s: %w", name, err)
		}
		d := &setData{set: s, elems: es}
		elems[name] = d
		return d, nil
	}
	var ks []krule
	for _, cr := range all {
		for _, r := range cr.rules {
			k, err := decodeRule(r, cr.dir, setByName)
			if err != nil {
				f.logger().Debug("unmanaged rule", "chain", cr.dir.chain(), "handle", r.Handle, "err", err)
				k = krule{dir: cr.dir} // kind 0: unmanaged
			}
			ks = append(ks, k)
			l.handles = append(l.handles, r.Handle)
		}
	}
	l.krules = ks
	d := decodeRules(ks, chain.Policy != nil && *chain.Policy == nftables.ChainPolicyDrop)
	l.Ruleset = d.rs
	l.Unmanaged = len(d.unmanaged)
	// The kernel is the judge of expiry: a rule whose set lost its
	// elements has expired, whatever its tag says.
	now := f.now()
	for i := range l.Ruleset.Rules {
		r := &l.Ruleset.Rules[i]
		if r.Expires.IsZero() {
			continue
		}
		d, err := setByName(expireSetName(r.id))
		if err != nil || len(d.elems) == 0 {
			if r.Expires.After(now) {
				r.Expires = now
			}
		}
	}
	if genErr == nil {
		// Kept for the next command only if nothing changed while reading.
		if _, again, err := er.genID(); err == nil && again == gen {
			l.gen, l.genOK = gen, true
			f.saveCache(cookie, gen, l)
		}
	}
	return l, nil
}

// Apply makes portolan's table hold rs, in one netlink transaction: the
// kernel applies all of it or, if any part is rejected, none of it.
// Expired rules in rs are dropped. Rules Equal to live ones keep their
// meters (the per-source counts of limit rules) and expiry sets.
func (f *Firewall) Apply(ctx context.Context, rs *Ruleset) error {
	return f.apply(ctx, rs, false)
}

// Restore puts the table back as it was when s was taken: the same rules
// under the same ids, so the same set names, or no table at all.
func (f *Firewall) Restore(ctx context.Context, s *Snapshot) error {
	if !s.Exists {
		return f.Reset(ctx)
	}
	rs, err := s.ruleset()
	if err != nil {
		return err
	}
	return f.apply(ctx, rs, true)
}

// ApplyTo is Apply given the table as Read returned it just before, under
// the caller's lock, which saves reading it again. If the table changed
// since, the kernel refuses the change (it names rules that are gone) and
// ApplyTo reads the table and applies once more.
func (f *Firewall) ApplyTo(ctx context.Context, have *Table, rs *Ruleset) error {
	if have == nil || have.live == nil {
		return f.apply(ctx, rs, false)
	}
	l := have.live
	have.live = nil // used once: after this change it is out of date
	if err := f.applyOn(ctx, l, rs, false); err != nil {
		f.logger().Debug("apply on the table read before failed; reading it again", "err", err)
		return f.apply(ctx, rs, false)
	}
	return nil
}

// apply writes rs. With keepIDs the rules keep the ids they have (a
// snapshot's); otherwise matchIDs chooses.
func (f *Firewall) apply(ctx context.Context, rs *Ruleset, keepIDs bool) error {
	l, err := f.readOnce()
	if err != nil {
		return err
	}
	return f.applyOn(ctx, l, rs, keepIDs)
}

// applyOn writes rs over the live table l. When l holds only rules
// portolan wrote, the change is incremental: the kernel rules that stay
// stay, those that go are deleted by handle and new ones are inserted in
// place, so changing one rule of 10,000 sends a few messages; re-applying
// the same rules sends nothing. Otherwise the chain is flushed and
// written whole. Either way it is one transaction.
func (f *Firewall) applyOn(ctx context.Context, l *live, rs *Ruleset, keepIDs bool) error {
	if err := rs.Validate(); err != nil {
		return err
	}
	if l.Unmanaged > 0 {
		f.logger().Warn("removing rules portolan did not write from its chain", "table", "inet "+TableName, "chain", ChainName, "count", l.Unmanaged)
	}
	now := f.now()
	want := rs.WithoutExpired(now)
	if !keepIDs {
		matchIDs(want, &l.Ruleset, newKeyCache(len(want.Rules)+len(l.Ruleset.Rules)))
	}
	comp, err := compile(want)
	if err != nil {
		return err
	}

	// The batch is built as a list of steps first, so the connection
	// that sends it can be sized for the kernel's replies.
	var steps []func(*nftables.Conn) error
	var rules, others int
	step := func(isRule bool, fn func(*nftables.Conn) error) {
		steps = append(steps, fn)
		if isRule {
			rules++
		} else {
			others++
		}
	}
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	hooks := map[Direction]*nftables.ChainHook{In: nftables.ChainHookInput, Routed: nftables.ChainHookForward, Out: nftables.ChainHookOutput}
	chains := map[Direction]*nftables.Chain{}
	for _, d := range Directions {
		policy := nftables.ChainPolicyAccept
		if comp.drop && d == In {
			policy = nftables.ChainPolicyDrop
		}
		chains[d] = &nftables.Chain{
			Name: d.chain(), Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hooks[d], Priority: nftables.ChainPriorityFilter, Policy: &policy,
		}
	}
	chain := chains[In]
	// The forward and output chains exist only while rules need them, so
	// a table without such rules costs those paths nothing.
	wantChain := map[Direction]bool{}
	for _, d := range comp.dirs() {
		wantChain[d] = true
	}
	// The table and chains are sent only when they are new or the policy
	// changes: the kernel commits a chain sent again as an update (a
	// newchain message to every monitor) even when nothing in it differs.
	policyChanged := (l.Ruleset.Policy == PolicyDrop) != comp.drop
	step(false, func(c *nftables.Conn) error {
		if !l.Exists {
			c.AddTable(table)
		}
		for _, d := range Directions {
			if wantChain[d] && (!l.chains[d] || (d == In && policyChanged)) {
				c.AddChain(chains[d])
			}
		}
		return nil
	})
	// kept[j] is the handle of the live kernel rule that stays as
	// compiled rule j, or 0 when rule j is new.
	kept, gone, incremental, err := f.incremental(ctx, l, comp)
	if err != nil {
		return err
	}
	for _, d := range Directions {
		if l.chains[d] && (!wantChain[d] || !incremental) {
			step(false, func(c *nftables.Conn) error { c.FlushChain(chains[d]); return nil })
		}
	}
	for _, g := range gone {
		if !wantChain[g.dir] {
			continue // flushed with its chain
		}
		step(false, func(c *nftables.Conn) error {
			return c.DelRule(&nftables.Rule{Table: table, Chain: chains[g.dir], Handle: g.handle})
		})
	}
	chainGone := false
	for _, d := range Directions {
		if l.chains[d] && !wantChain[d] {
			chainGone = true
			step(false, func(c *nftables.Conn) error { c.DelChain(chains[d]); return nil })
		}
	}
	changed := !incremental || len(gone) > 0 || chainGone || policyChanged
	for _, d := range Directions {
		if wantChain[d] && !l.chains[d] {
			changed = true
		}
	}
	en := &encoder{table: table, chains: chains, named: map[string]*nftables.Set{}}
	// A live set stays when the rule that owns it stays unchanged, so
	// meters keep their counts and expiry sets their timeouts. Every
	// other set of ours goes, and is made anew if still wanted.
	liveRule := make(map[uint32]*Rule, len(l.Ruleset.Rules))
	for i := range l.Ruleset.Rules {
		liveRule[l.Ruleset.Rules[i].id] = &l.Ruleset.Rules[i]
	}
	wantRule := make(map[uint32]*Rule, len(want.Rules))
	for i := range want.Rules {
		wantRule[want.Rules[i].id] = &want.Rules[i]
	}
	keep := map[string]bool{}
	for _, s := range comp.sets {
		old, w := liveRule[s.id], wantRule[s.id]
		keep[s.name] = l.sets[s.name] != nil && old != nil && w != nil && old.Equal(w)
	}
	for name, s := range l.sets {
		if isOurSet(name) && !keep[name] {
			changed = true
			step(false, func(c *nftables.Conn) error { c.DelSet(s); return nil })
		}
	}
	for _, s := range comp.sets {
		if keep[s.name] {
			en.named[s.name] = l.sets[s.name]
			continue
		}
		changed = true
		ns, elems := newNamedSet(table, s, now)
		ns.ID = en.setID()
		en.named[s.name] = ns
		step(false, func(c *nftables.Conn) error {
			if err := c.AddSet(ns, elems); err != nil {
				return fmt.Errorf("add set %s: %w", s.name, err)
			}
			return nil
		})
		if len(elems) > 0 {
			others++
		}
	}
	for i := range comp.rules {
		if incremental && kept[i] != 0 {
			continue
		}
		changed = true
		r, anon, err := en.rule(&comp.rules[i])
		if err != nil {
			return err
		}
		if incremental {
			// Before the next rule of its chain that stays, or at the end.
			for j := i + 1; j < len(kept) && comp.rules[j].dir == comp.rules[i].dir; j++ {
				if kept[j] != 0 {
					r.Position = kept[j]
					break
				}
			}
		}
		for _, a := range anon {
			step(false, func(c *nftables.Conn) error {
				if err := c.AddSet(a.set, a.elems); err != nil {
					return fmt.Errorf("add anonymous set: %w", err)
				}
				return nil
			})
			others++ // its elements
		}
		step(true, func(c *nftables.Conn) error {
			if r.Position != 0 {
				c.InsertRule(r)
			} else {
				c.AddRule(r)
			}
			return nil
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !changed {
		return nil // the table already holds exactly this
	}
	bufs := batchBuffers(rules, others)
	c, err := f.dial(bufs)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	var watch *notifyReader
	if f.Cache != "" && incremental && l.genOK {
		// The new rules' handles for the cache, from the commit's
		// notifications (see cacheWritten).
		if watch, err = watchCommits(f.NetNS, bufs.recv); err != nil {
			f.logger().Debug("watch the commit", "err", err)
		} else {
			defer watch.close()
		}
	}
	for _, fn := range steps {
		if err := fn(c); err != nil {
			return err
		}
	}
	if f.beforeFlush != nil {
		f.beforeFlush(c, table, chain)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write table inet %s: %w", TableName, err)
	}
	var sets []string
	for _, st := range comp.sets {
		sets = append(sets, st.name)
	}
	var after *applied
	if watch != nil {
		after = &applied{watch: watch, gen: l.gen, kept: kept}
	}
	f.cacheWritten(want, comp, comp.dirs(), sets, table, after)
	return nil
}

// incremental pairs the live kernel rules with the compiled ones (a
// longest common subsequence of identical kernel rules by their digests,
// see commonPairs).
// It says no (write the chain whole) when the table or chain is missing
// or holds rules portolan did not write.
func (f *Firewall) incremental(ctx context.Context, l *live, comp *compiled) (kept []uint64, gone []chainHandle, ok bool, err error) {
	if !l.Exists || !l.chains[In] || l.Unmanaged > 0 || len(l.krules) != len(l.handles) {
		return nil, nil, false, nil
	}
	keys := make(map[uint64]int, len(comp.rules))
	seed := maphash.MakeSeed()
	key := func(k *krule) int {
		s := k.digest(seed)
		n, ok := keys[s]
		if !ok {
			n = len(keys)
			keys[s] = n
		}
		return n
	}
	a := make([]int, len(l.krules))
	for i := range l.krules {
		if l.krules[i].kind == 0 {
			return nil, nil, false, nil
		}
		a[i] = key(&l.krules[i])
	}
	b := make([]int, len(comp.rules))
	for j := range comp.rules {
		b[j] = key(&comp.rules[j])
	}
	pairs, err := commonPairs(ctx, a, b)
	if err != nil {
		return nil, nil, false, err
	}
	kept = make([]uint64, len(comp.rules))
	stays := make([]bool, len(l.krules))
	for _, p := range pairs {
		// Same rendering, tag and expiry: the same kernel rule, unless a
		// field nft does not print differs; then write it all.
		if !reflect.DeepEqual(l.krules[p[0]], comp.rules[p[1]]) || l.handles[p[0]] == 0 {
			return nil, nil, false, nil
		}
		kept[p[1]] = l.handles[p[0]]
		stays[p[0]] = true
	}
	for i, s := range stays {
		if !s {
			gone = append(gone, chainHandle{l.krules[i].dir, l.handles[i]})
		}
	}
	return kept, gone, true, nil
}

// chainHandle names a kernel rule of the table.
type chainHandle struct {
	dir    Direction
	handle uint64
}

// readOnce reads the table on a connection of its own.
func (f *Firewall) readOnce() (*live, error) {
	c, err := f.dial(nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	return f.read(c)
}

// isOurSet reports whether name is one of the named sets portolan makes.
func isOurSet(name string) bool {
	rest, ok := strings.CutPrefix(name, "expire_")
	if !ok {
		rest, ok = strings.CutPrefix(name, "limit_")
		if !ok {
			return false
		}
		var fam string
		rest, fam, ok = strings.Cut(rest, "_v")
		if !ok || (fam != "4" && fam != "6") {
			return false
		}
	}
	_, err := strconv.ParseUint(rest, 10, 32)
	return err == nil
}

// newNamedSet returns the kernel set for s and its first elements.
func newNamedSet(t *nftables.Table, s namedSet, now time.Time) (*nftables.Set, []nftables.SetElement) {
	if s.isMeter() {
		key := nftables.TypeIPAddr
		if s.family == 6 {
			key = nftables.TypeIP6Addr
		}
		return &nftables.Set{Table: t, Name: s.name, KeyType: key, Dynamic: true, HasTimeout: true, Timeout: s.timeout, Size: meterSize}, nil
	}
	left := s.expires.Sub(now)
	if left < time.Millisecond {
		left = time.Millisecond
	}
	// One element per family: the rule's `meta nfproto @set` matches
	// until the kernel times them out.
	return &nftables.Set{Table: t, Name: s.name, KeyType: nftables.TypeNFProto, HasTimeout: true},
		[]nftables.SetElement{{Key: []byte{nfprotoIPv4}, Timeout: left}, {Key: []byte{nfprotoIPv6}, Timeout: left}}
}

// Reset deletes portolan's table, and with it every rule, in one
// transaction. Resetting a namespace without the table does nothing.
func (f *Firewall) Reset(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := f.dial(nil)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("reset table inet %s: list tables: %w", TableName, err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			f.dropCache()
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("reset table inet %s: %w", TableName, err)
			}
		}
	}
	return nil
}

package firewall

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// The table cache (Firewall.Cache) keeps portolan's table as it was last
// written or read, with the namespace's cookie and ruleset generation at
// that moment. The kernel counts every committed transaction in the
// generation, whoever sends it (nft, iptables-nft, Docker, portolan), and
// no namespace shares another's cookie while the machine runs; while
// both are the same, the table is exactly what the cache says, and
// reading it back rule by rule and set by set (most of the time of a
// command on a large table) can be skipped. Expiry and limit meters do
// not move the generation, and need not: expiry is read from the rules'
// tags, and meters are never read.

// tableCache is the cache file's content.
type tableCache struct {
	Cookie, Gen    uint64
	Policy         uint8
	PolicyLog      bool
	PolicyLogGroup uint16
	Rules          []cachedRule
	Handles        []uint64 // one per kernel rule, in compile's order
	Chains         []uint8  // directions whose chains exist
	Sets           []string // portolan's named sets
}

type cachedRule struct {
	ID                 uint32
	Action, Dir        uint8
	Translated         bool
	AnyPort            bool
	Ports              []cachedRun
	From, To           []netip.Prefix
	Iface              string
	RateCount          uint32
	RatePer            time.Duration
	Prefix6            uint8
	Group              uint16
	Expires            time.Time
	Comment            string
	HasExpiry, Expired bool
}

type cachedRun struct {
	Proto  uint8
	Lo, Hi uint16
}

// genID returns the namespace's cookie and its ruleset generation.
func (r *elemReader) genID() (cookie, gen uint64, err error) {
	c, err := unix.GetsockoptUint64(r.fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, 0, fmt.Errorf("netns cookie: %w", err)
	}
	found := false
	err = r.request(unix.NFT_MSG_GETGEN, unix.NLM_F_ACK, nil, func(b []byte) error {
		if len(b) < 4 {
			return errors.New("short generation message")
		}
		for b = b[4:]; len(b) >= 8; {
			n := int(binary.NativeEndian.Uint16(b))
			if n < 4 || n > len(b) {
				return errors.New("bad generation attribute")
			}
			if binary.NativeEndian.Uint16(b[2:])&0x3fff == unix.NFTA_GEN_ID && n == 8 {
				gen, found = uint64(binary.BigEndian.Uint32(b[4:8])), true
			}
			b = b[min(len(b), (n+3)&^3):]
		}
		return nil
	})
	if err == nil && !found {
		err = errors.New("no generation id in the answer")
	}
	if err != nil {
		return 0, 0, fmt.Errorf("ruleset generation: %w", err)
	}
	return c, gen, nil
}

// loadCache returns the table from the cache file when the namespace is
// still at its generation.
func (f *Firewall) loadCache(cookie, gen uint64, table *nftables.Table) (*live, bool) {
	b, err := os.ReadFile(f.Cache)
	if err != nil {
		return nil, false
	}
	var tc tableCache
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&tc); err != nil || tc.Cookie != cookie || tc.Gen != gen {
		return nil, false
	}
	l := &live{table: table, sets: map[string]*nftables.Set{}, chains: map[Direction]bool{}}
	l.Exists = true
	l.Ruleset = Ruleset{Policy: Policy(tc.Policy), PolicyLog: tc.PolicyLog, PolicyLogGroup: tc.PolicyLogGroup,
		Rules: make([]Rule, 0, len(tc.Rules))}
	for _, c := range tc.Rules {
		r := Rule{id: c.ID, Action: Action(c.Action), Dir: Direction(c.Dir), Translated: c.Translated, From: c.From, To: c.To,
			Iface: c.Iface, Rate: Rate{Count: c.RateCount, Per: c.RatePer}, Prefix6: c.Prefix6, Group: c.Group, Comment: c.Comment}
		if c.HasExpiry {
			r.Expires = c.Expires
		}
		if !c.AnyPort {
			r.Ports = &portspec.Set{}
			for _, p := range c.Ports {
				r.Ports.AddRange(portspec.Proto(p.Proto), portspec.Port(p.Lo), portspec.Port(p.Hi))
			}
		}
		l.Ruleset.Rules = append(l.Ruleset.Rules, r)
	}
	for _, d := range tc.Chains {
		l.chains[Direction(d)] = true
	}
	for _, name := range tc.Sets {
		l.sets[name] = &nftables.Set{Table: table, Name: name}
	}
	comp, err := compile(&l.Ruleset)
	if err != nil || len(comp.rules) != len(tc.Handles) || !l.chains[In] {
		return nil, false
	}
	l.krules, l.handles = comp.rules, tc.Handles
	l.gen, l.genOK = gen, true
	f.logger().Debug("table read from the cache", "generation", gen, "rules", len(l.Ruleset.Rules))
	return l, true
}

// saveCache writes l, read or written at generation gen, to the cache
// file. It writes nothing for a table with rules portolan did not write.
func (f *Firewall) saveCache(cookie, gen uint64, l *live) {
	if f.Cache == "" || !l.Exists || l.Unmanaged > 0 || len(l.krules) != len(l.handles) {
		f.dropCache()
		return
	}
	tc := tableCache{Cookie: cookie, Gen: gen, Policy: uint8(l.Ruleset.Policy), PolicyLog: l.Ruleset.PolicyLog,
		PolicyLogGroup: l.Ruleset.PolicyLogGroup, Handles: l.handles, Rules: make([]cachedRule, 0, len(l.Ruleset.Rules))}
	for _, r := range l.Ruleset.Rules {
		c := cachedRule{ID: r.id, Action: uint8(r.Action), Dir: uint8(r.Dir), Translated: r.Translated, AnyPort: r.Ports == nil,
			From: r.From, To: r.To, Iface: r.Iface, RateCount: r.Rate.Count, RatePer: r.Rate.Per, Prefix6: r.Prefix6,
			Group: r.Group, Comment: r.Comment, HasExpiry: !r.Expires.IsZero(), Expires: r.Expires}
		for _, p := range r.Ports.Protos() {
			for _, run := range portRuns(r.Ports.Ports(p)) {
				c.Ports = append(c.Ports, cachedRun{uint8(p), run.lo, run.hi})
			}
		}
		tc.Rules = append(tc.Rules, c)
	}
	for _, d := range Directions {
		if l.chains[d] {
			tc.Chains = append(tc.Chains, uint8(d))
		}
	}
	for name := range l.sets {
		if isOurSet(name) {
			tc.Sets = append(tc.Sets, name)
		}
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&tc); err != nil {
		f.dropCache()
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Cache), ".table-*")
	if err == nil {
		_, err = tmp.Write(b.Bytes())
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), f.Cache)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		f.logger().Debug("write the table cache", "err", err)
		f.dropCache()
	}
}

// dropCache removes the cache file: the table may differ from it.
func (f *Firewall) dropCache() {
	if f.Cache != "" {
		os.Remove(f.Cache)
	}
}

// applied is what an incremental apply leaves for cacheWritten: the
// notifications of its commit, the generation it changed, and the handles
// of the kernel rules that stayed (kept, as incremental returns it).
type applied struct {
	watch *notifyReader
	gen   uint64
	kept  []uint64
}

// cacheWritten records in the cache the table that applyOn just
// committed: want as compiled to comp, in chains dirs, with named sets
// sets. google/nftables drops the kernel's echo of the new rules, so their
// handles come from the commit's notifications when an incremental apply
// (after) watched it and its commit is the only one since the table was
// read, and otherwise from a dump of the chains' rules. Either way they
// are matched to comp by their tags; if another change got in between, the
// generation or the tags differ and the cache is dropped.
func (f *Firewall) cacheWritten(want *Ruleset, comp *compiled, dirs []Direction, sets []string, table *nftables.Table, after *applied) {
	if f.Cache == "" {
		return
	}
	er, err := newElemReader(f.NetNS)
	if err != nil {
		f.dropCache()
		return
	}
	defer er.close()
	cookie, gen, err := er.genID()
	if err != nil {
		f.dropCache()
		return
	}
	l := &live{table: table, chains: map[Direction]bool{}, sets: map[string]*nftables.Set{}}
	l.Exists = true
	l.Ruleset = *want
	for _, name := range sets {
		l.sets[name] = &nftables.Set{Table: table, Name: name}
	}
	for _, d := range dirs {
		l.chains[d] = true
	}
	if after != nil && gen == after.gen+1 {
		hs, err := handlesFromCommit(after, gen, comp)
		if err == nil {
			l.handles, l.krules = hs, comp.rules
			f.logger().Debug("new rule handles from the commit's notifications", "generation", gen, "rules", len(comp.rules))
			f.saveCache(cookie, gen, l)
			return
		}
		f.logger().Debug("new rule handles from the commit's notifications", "err", err)
	}
	i := 0
	for _, d := range dirs {
		rules, err := er.rules(d.chain())
		if err != nil {
			f.dropCache()
			return
		}
		for _, r := range rules {
			var k krule
			if i >= len(comp.rules) || !decodeUserdata(r.UserData, &k) {
				f.dropCache()
				return
			}
			c := &comp.rules[i]
			if c.dir != d || c.kind != k.kind || c.id != k.id || c.expires != k.expires || c.comment != k.comment {
				f.dropCache()
				return
			}
			l.handles = append(l.handles, r.Handle)
			i++
		}
	}
	if i != len(comp.rules) {
		f.dropCache()
		return
	}
	l.krules = comp.rules
	if _, again, err := er.genID(); err != nil || again != gen {
		f.dropCache()
		return
	}
	f.saveCache(cookie, gen, l)
}

// handlesFromCommit returns the handle of each rule of comp after the
// commit of generation gen: a kept rule's stays, and the new ones, in
// order, are those the commit's notifications name, if they are exactly
// the rules comp added.
func handlesFromCommit(a *applied, gen uint64, comp *compiled) ([]uint64, error) {
	c, err := a.watch.commitOf(gen)
	if err != nil {
		return nil, err
	}
	hs := make([]uint64, len(comp.rules))
	next := 0
	for j := range comp.rules {
		if a.kept[j] != 0 {
			hs[j] = a.kept[j]
			continue
		}
		if next == len(c.added) {
			return nil, fmt.Errorf("generation %d added %d rules; want more", gen, len(c.added))
		}
		n := c.added[next]
		next++
		var k krule
		r := &comp.rules[j]
		if n.chain != r.dir.chain() || n.handle == 0 || !decodeUserdata(n.userData, &k) ||
			k.kind != r.kind || k.id != r.id || k.expires != r.expires || k.comment != r.comment {
			return nil, fmt.Errorf("generation %d: rule %d added is not the one applied", gen, next)
		}
		hs[j] = n.handle
	}
	if next != len(c.added) {
		return nil, fmt.Errorf("generation %d added %d rules; want %d", gen, len(c.added), next)
	}
	return hs, nil
}

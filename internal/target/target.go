package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// DefaultMaxAddrs is the size limit Parse applies when Options.MaxAddrs is
// zero: a /8, which is already far more than one machine should probe by
// accident.
const DefaultMaxAddrs = 1 << 24

// Options control how Parse resolves and checks targets. The zero value
// resolves hostnames with the system resolver to their first IPv4 address
// (else IPv6), refuses the blocklist and sets larger than DefaultMaxAddrs.
type Options struct {
	// Resolver looks up a hostname; network is "ip", "ip4" or "ip6". Nil
	// means net.DefaultResolver.LookupNetIP.
	Resolver func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// AllAddrs takes every address a hostname resolves to; zero takes one.
	AllAddrs bool
	// Prefer6 picks an IPv6 address first when taking one; zero prefers IPv4.
	Prefer6 bool
	// Only4 and Only6 restrict targets to one family: hostnames resolve
	// only to it, and literal addresses of the other family are an error.
	Only4, Only6 bool
	// IncludeReserved allows targets in the blocklist (see Blocklist).
	IncludeReserved bool
	// MaxAddrs refuses sets with more addresses; zero means DefaultMaxAddrs.
	MaxAddrs uint64
	// Force lifts the MaxAddrs limit.
	Force bool
	// Logger receives a line per resolved hostname at Info; nil discards.
	Logger *slog.Logger
}

// ErrNoTargets is Parse's answer to expressions that hold no target at all
// (empty, or only separators).
var ErrNoTargets = errors.New("no targets given")

// LimitError refuses a set larger than Options.MaxAddrs.
type LimitError struct {
	Count *big.Int // addresses in the set
	Max   uint64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("targets hold %s addresses, more than the limit of %d", e.Count, e.Max)
}

// ResolveError reports a hostname that gave no usable address.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string {
	msg := e.Err.Error()
	var dns *net.DNSError
	if errors.As(e.Err, &dns) {
		msg = dns.Err // the rest repeats the name and the server
	}
	return fmt.Sprintf("resolve %q: %s", e.Host, msg)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// FamilyError refuses a literal address of the family Options exclude.
type FamilyError struct {
	Expr string
	Want int // 4 or 6
}

func (e *FamilyError) Error() string {
	got := 6
	if e.Want == 6 {
		got = 4
	}
	return fmt.Sprintf("%s is IPv%d, but only IPv%d targets were asked for", e.Expr, got, e.Want)
}

// Parse reads target expressions and excludes (same syntax; see the
// package comment), resolves hostnames, and returns the addresses of exprs
// that are not in excludes. It refuses the blocklist unless
// opts.IncludeReserved, and sets larger than the limit unless opts.Force.
// Excluding a blocked range (or address) makes the rest acceptable.
func Parse(ctx context.Context, exprs, excludes []string, opts Options) (*Set, error) {
	if opts.Only4 && opts.Only6 {
		return nil, errors.New("only IPv4 and only IPv6 exclude each other")
	}
	incl, err := parseList(exprs)
	if err != nil {
		return nil, err
	}
	if len(incl) == 0 {
		return nil, ErrNoTargets
	}
	excl, err := parseList(excludes)
	if err != nil {
		return nil, fmt.Errorf("exclude: %w", err)
	}
	if opts.Only4 || opts.Only6 {
		want := 6
		if opts.Only4 {
			want = 4
		}
		for _, it := range incl {
			for _, r := range it.ranges {
				if r.First.Is4() != opts.Only4 {
					return nil, &FamilyError{Expr: it.tok.text, Want: want}
				}
			}
		}
	}
	// Refuse what literal targets alone settle before asking any resolver:
	// no lookups for a scan that will not run. Only excluded names could
	// change the verdict.
	isHost := func(it item) bool { return it.host != "" }
	if !slices.ContainsFunc(excl, isHost) {
		set := build(incl, excl)
		if err := check(set, incl, opts); err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(incl, isHost) {
			return set, nil
		}
	}
	if err := resolveAll(ctx, incl, excl, opts); err != nil {
		return nil, err
	}
	set := build(incl, excl)
	if err := check(set, incl, opts); err != nil {
		return nil, err
	}
	for _, it := range incl {
		if it.host == "" {
			continue
		}
		for _, r := range it.ranges {
			if set.Contains(r.First) {
				if set.names == nil {
					set.names = map[netip.Addr]string{}
				}
				if _, seen := set.names[r.First]; !seen { // the first name given wins
					set.names[r.First] = it.host
				}
			}
		}
	}
	return set, nil
}

// build returns the addresses of incl without those of excl.
func build(incl, excl []item) *Set {
	set := newSet(collect(incl))
	if len(excl) > 0 {
		set = set.subtract(newSet(collect(excl)))
	}
	return set
}

// check applies the blocklist and the size limit to set, built from items.
func check(set *Set, items []item, opts Options) error {
	if !opts.IncludeReserved {
		if err := checkReserved(set, items); err != nil {
			return err
		}
	}
	max := opts.MaxAddrs
	if max == 0 {
		max = DefaultMaxAddrs
	}
	if !opts.Force && set.Len() > max {
		return &LimitError{Count: set.BigLen(), Max: max}
	}
	return nil
}

// parseList splits and parses every expression, without resolving.
func parseList(exprs []string) ([]item, error) {
	var items []item
	for _, e := range exprs {
		for _, t := range split(e) {
			it, err := parseToken(t)
			if err != nil {
				var pe *ParseError
				if errors.As(err, &pe) && pe.Source == "" {
					pe.Expr = e
				}
				return nil, err
			}
			items = append(items, it)
		}
	}
	return items, nil
}

func collect(items []item) []Range {
	n := 0
	for _, it := range items {
		n += len(it.ranges)
	}
	rs := make([]Range, 0, n)
	for _, it := range items {
		rs = append(rs, it.ranges...)
	}
	return rs
}

// resolveWorkers bounds concurrent lookups: a target file of names should
// not take one round trip per line, nor flood the resolver.
const resolveWorkers = 8

// resolveAll fills in the ranges of hostname items. Included names follow
// opts; excluded names take every address of both families, so that an
// exclusion never lets an address through.
func resolveAll(ctx context.Context, incl, excl []item, opts Options) error {
	// Names repeat in long lists; look each up once per kind.
	type key struct {
		host    string
		exclude bool
	}
	type lookup struct {
		key
		addrs []netip.Addr
		err   error
	}
	byKey := map[key]*lookup{}
	var order []*lookup // first appearance, so the first failure reported is the first in the input
	users := map[*item]*lookup{}
	add := func(items []item, exclude bool) {
		for i := range items {
			if items[i].host == "" {
				continue
			}
			k := key{items[i].host, exclude}
			l := byKey[k]
			if l == nil {
				l = &lookup{key: k}
				byKey[k] = l
				order = append(order, l)
			}
			users[&items[i]] = l
		}
	}
	add(incl, false)
	add(excl, true)
	if len(order) == 0 {
		return nil
	}
	resolver := opts.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver.LookupNetIP
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	next := make(chan *lookup)
	var wg sync.WaitGroup
	for range min(resolveWorkers, len(order)) {
		wg.Go(func() {
			for l := range next {
				o := opts
				if l.exclude {
					o = Options{AllAddrs: true}
				}
				l.addrs, l.err = resolveHost(ctx, resolver, l.host, o)
				if l.err == nil {
					log.Info("resolved", "host", l.host, "addrs", l.addrs, "exclude", l.exclude)
				}
			}
		})
	}
	for _, l := range order {
		next <- l
	}
	close(next)
	wg.Wait()
	for _, l := range order {
		if l.err != nil {
			if l.exclude {
				return fmt.Errorf("exclude: %w", l.err)
			}
			return l.err
		}
	}
	for it, l := range users {
		for _, a := range l.addrs {
			it.ranges = append(it.ranges, Range{a, a})
		}
	}
	return nil
}

// resolveHost looks host up and picks addresses as opts say.
func resolveHost(ctx context.Context, lookup func(context.Context, string, string) ([]netip.Addr, error), host string, opts Options) ([]netip.Addr, error) {
	// RFC 6761: names under .invalid never resolve, so do not ask.
	if n := strings.ToLower(strings.TrimSuffix(host, ".")); n == "invalid" || strings.HasSuffix(n, ".invalid") {
		return nil, &ResolveError{Host: host, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}
	network := "ip"
	switch {
	case opts.Only4:
		network = "ip4"
	case opts.Only6:
		network = "ip6"
	}
	addrs, err := lookup(ctx, network, host)
	if err != nil {
		return nil, &ResolveError{Host: host, Err: err}
	}
	var v4, v6 []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		a = unmap(a)
		if !a.IsValid() || seen[a] {
			continue
		}
		seen[a] = true
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	switch {
	case opts.Only4:
		v6 = nil
	case opts.Only6:
		v4 = nil
	}
	first, second := v4, v6
	if opts.Prefer6 {
		first, second = v6, v4
	}
	out := append(first, second...)
	if len(out) == 0 {
		what := "no address"
		switch {
		case opts.Only4:
			what = "no IPv4 address"
		case opts.Only6:
			what = "no IPv6 address"
		}
		return nil, &ResolveError{Host: host, Err: errors.New(what)}
	}
	if !opts.AllAddrs {
		out = out[:1]
	}
	return out, nil
}

// checkReserved refuses the first expression, in input order, that still
// reaches a blocklist range after the excludes.
func checkReserved(set *Set, items []item) error {
	// The common case, nothing blocked, costs a few binary searches.
	clean := true
	for _, b := range blockRanges {
		if _, ok := set.overlap(b); ok {
			clean = false
			break
		}
	}
	if clean {
		return nil
	}
	for _, it := range items {
		for _, r := range it.ranges {
			var hit netip.Addr
			for _, b := range blockRanges {
				if b.First.Is4() != r.First.Is4() || before(b, r) || before(r, b) {
					continue
				}
				o := Range{maxAddr(r.First, b.First), minAddr(r.Last, b.Last)}
				if a, ok := set.overlap(o); ok && (!hit.IsValid() || a.Less(hit)) {
					hit = a
				}
			}
			if !hit.IsValid() {
				continue
			}
			sp, _ := specialOf(hit)
			e := &ReservedError{Expr: it.tok.text, Addr: hit, Range: sp}
			if it.host != "" {
				e.Expr = fmt.Sprintf("%s (%s)", it.host, hit)
			} else {
				b := RangeOf(sp.Prefix)
				for _, r := range it.ranges {
					if r.First.Less(b.First) || b.Last.Less(r.Last) {
						e.Partial = true
					}
				}
			}
			return e
		}
	}
	return nil
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return a
	}
	return b
}

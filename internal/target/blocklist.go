package target

import (
	"fmt"
	"net/netip"
)

// Special is a special-purpose range that Parse refuses unless
// Options.IncludeReserved is set.
type Special struct {
	Prefix netip.Prefix `json:"prefix"`
	Name   string       `json:"name"`
}

// blocklist holds the ranges where no host a scan means to reach can live:
// sending there is a mistake or a flood. Documentation ranges (RFC 5737,
// RFC 3849, RFC 9637) are in it because for a scanner they are never real
// hosts. 198.18.0.0/15 (benchmarking, RFC 2544) is deliberately absent:
// portolan's own test networks use it. Loopback and private ranges are
// ordinary targets.
var blocklist = []Special{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved for future use"},
	{netip.MustParsePrefix("255.255.255.255/32"), "limited broadcast"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// blockRanges holds the blocklist as ranges, in the same order.
var blockRanges = func() []Range {
	rs := make([]Range, len(blocklist))
	for i, sp := range blocklist {
		rs[i] = RangeOf(sp.Prefix)
	}
	return rs
}()

// Blocklist returns the special-purpose ranges a scan refuses by default.
func Blocklist() []Special { return append([]Special(nil), blocklist...) }

// specialOf returns the most specific blocklist entry holding a.
func specialOf(a netip.Addr) (Special, bool) {
	var best Special
	found := false
	for _, sp := range blocklist {
		if sp.Prefix.Contains(a) && (!found || sp.Prefix.Bits() > best.Prefix.Bits()) {
			best, found = sp, true
		}
	}
	return best, found
}

// ReservedError refuses a target expression that reaches into a
// special-purpose range.
type ReservedError struct {
	Expr    string     // the expression as written, with the address for hostnames
	Addr    netip.Addr // the first refused address
	Range   Special    // the range it lies in
	Partial bool       // the expression also covers ordinary addresses
}

func (e *ReservedError) Error() string {
	verb := "is"
	if e.Partial {
		verb = "includes"
	}
	return fmt.Sprintf("%s %s %s (%s): refused", e.Expr, verb, e.Range.Name, e.Range.Prefix)
}

package registry

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"sync"

	_ "embed"

	"portolan/internal/portspec"
)

// The top-ports lists are portolan's own: ordered by how likely each port is
// to be open on real networks, in our judgement, each with the reason it is
// there. They are deliberately not derived from nmap's nmap-services, whose
// licence covers programs that read its data.
var (
	//go:embed top-tcp.tsv
	topTCPData string
	//go:embed top-udp.tsv
	topUDPData string
)

// TopEntry is one port of a top-ports list.
type TopEntry struct {
	Port   portspec.Port  `json:"port"`
	Proto  portspec.Proto `json:"proto"`
	Name   string         `json:"name,omitempty"` // the primary IANA name, "" when unregistered
	Reason string         `json:"reason"`         // why the port is on the list
}

// TopTiers returns the sizes of the top-ports lists for proto, smallest
// first (TCP: 100 and 1000; UDP: 100), or nil when there is none.
func TopTiers(proto portspec.Proto) []int {
	switch proto {
	case portspec.TCP:
		return []int{100, 1000}
	case portspec.UDP:
		return []int{100}
	}
	return nil
}

var loadTop = sync.OnceValues(func() (map[portspec.Proto][]TopEntry, error) {
	m := make(map[portspec.Proto][]TopEntry)
	for _, l := range []struct {
		proto portspec.Proto
		file  string
		data  string
	}{
		{portspec.TCP, "top-tcp.tsv", topTCPData},
		{portspec.UDP, "top-udp.tsv", topUDPData},
	} {
		list, err := parseTop(l.file, l.data, l.proto)
		if err != nil {
			return nil, err
		}
		if tiers := TopTiers(l.proto); len(list) != tiers[len(tiers)-1] {
			return nil, fmt.Errorf("%s: %d ports; want %d", l.file, len(list), tiers[len(tiers)-1])
		}
		m[l.proto] = list
	}
	return m, nil
})

// Top returns the first n ports of the top-ports list for proto, most likely
// open first. n may be at most the largest tier (1000 for TCP, 100 for UDP);
// the tiers themselves are the first 100 and 1000 entries.
func Top(proto portspec.Proto, n int) ([]TopEntry, error) {
	tiers := TopTiers(proto)
	if tiers == nil {
		return nil, fmt.Errorf("top ports for %s: no list (there are lists for tcp and udp)", proto)
	}
	if n < 1 || n > tiers[len(tiers)-1] {
		return nil, fmt.Errorf("top %d %s ports: want 1 to %d", n, proto, tiers[len(tiers)-1])
	}
	m, err := loadTop()
	if err != nil {
		return nil, fmt.Errorf("top ports: %w", err)
	}
	return m[proto][:n:n], nil
}

// parseTop reads a top-ports list: one "PORT<whitespace>REASON" per line,
// blank lines and '#' comments ignored. Ports must be distinct, in 1-65535,
// and each needs a reason.
func parseTop(file, data string, proto portspec.Proto) ([]TopEntry, error) {
	reg := Default()
	var out []TopEntry
	seen := make(map[portspec.Port]int)
	sc := bufio.NewScanner(strings.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		field, reason := text, ""
		if i := strings.IndexAny(text, " \t"); i >= 0 {
			field, reason = text[:i], text[i+1:]
		}
		reason = strings.TrimSpace(reason)
		n, err := strconv.Atoi(field)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s line %d: %q is not a port in 1-65535", file, line, field)
		}
		p := portspec.Port(n)
		if prev, dup := seen[p]; dup {
			return nil, fmt.Errorf("%s line %d: port %d already on line %d", file, line, p, prev)
		}
		if reason == "" {
			return nil, fmt.Errorf("%s line %d: port %d has no reason", file, line, p)
		}
		seen[p] = line
		out = append(out, TopEntry{Port: p, Proto: proto, Name: reg.Name(p, proto), Reason: reason})
	}
	return out, sc.Err()
}

// Package scanjob is a scan as a job: its Recipe (what to scan, how, and
// in which order, independent of any command line, stored as JSON with the
// scan so that a resume rebuilds the same probes), and Run, which drives the
// engine over a space into a Sink (the store) with the checkpoints, counts
// and status a resume, a fleet worker or a scheduled scan need.
package scanjob

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// RecipeVersion is the version of the recipes Recipe writes. Version 1 (or
// none) is what scans stored before it hold: the scan command's options,
// which DecodeRecipe reads too.
const RecipeVersion = 2

// Recipe is what a scan does. It is JSON-encodable and knows nothing of
// flags: a command, a fleet worker or a scheduled scan fill it in, the
// store keeps it, and a resume decodes it (DecodeRecipe) to rebuild the
// same space in the same order. Some keys keep the names of version 1
// (target_flags, no_host_down, scan_id), which readers of stored scans
// rely on.
type Recipe struct {
	Version int `json:"version"`

	// What: target expressions and how they are read, and the ports.
	Targets []string     `json:"targets"`
	Select  TargetSelect `json:"target_flags"`
	// Ports is a port spec ("22,80-90", "-" for all); TopPorts the N most
	// likely open ports of the curated list instead (0 with no Ports: the
	// top 1000); ExcludePorts a spec left out.
	Ports        string `json:"ports,omitempty"`
	TopPorts     int    `json:"top_ports,omitempty"`
	ExcludePorts string `json:"exclude_ports,omitempty"`
	// Names are the host names targets were given as, for reports (a
	// resume resolves the names again).
	Names map[netip.Addr]string `json:"names,omitempty"`

	// How: the prober by name (scan.ProberByName: connect, syn, udp),
	// host discovery only, and the engine's knobs (scan.Scanner's, zero
	// meaning its defaults).
	Prober         string        `json:"prober,omitempty"`
	DiscoveryOnly  bool          `json:"discovery_only,omitempty"`
	Rate           float64       `json:"rate,omitempty"`
	MinRate        float64       `json:"min_rate,omitempty"`
	Window         int           `json:"window,omitempty"`
	Retries        int           `json:"retries,omitempty"`
	MinTimeout     time.Duration `json:"min_timeout,omitempty"`
	MaxTimeout     time.Duration `json:"max_timeout,omitempty"`
	InitialTimeout time.Duration `json:"initial_timeout,omitempty"`
	HostTimeout    time.Duration `json:"host_timeout,omitempty"`
	AssumeUp       bool          `json:"no_host_down,omitempty"` // no host discovery: probe every port
	Banner         bool          `json:"banner,omitempty"`
	Local          scan.Local    `json:"local,omitzero"`

	// Order: the permutation's seed, the slice of it (scan.ParseShard's
	// "I/N"), and the name of a scan whose shards many processes run.
	Seed  uint64 `json:"seed"`
	Shard string `json:"shard,omitempty"`
	Name  string `json:"scan_id,omitempty"`
}

// TargetSelect is how target expressions become addresses: lists to read
// (a path, or "-" for standard input), excludes, and the limits.
type TargetSelect struct {
	InputLists      []string `json:"input_lists,omitempty"`
	Excludes        []string `json:"excludes,omitempty"`
	ExcludeFiles    []string `json:"exclude_files,omitempty"`
	IncludeReserved bool     `json:"include_reserved,omitempty"`
	Only4           bool     `json:"only4,omitempty"`
	Only6           bool     `json:"only6,omitempty"`
	AllAddrs        bool     `json:"all_addrs,omitempty"`
	Prefer6         bool     `json:"prefer6,omitempty"`
	MaxHosts        uint64   `json:"max_hosts,omitempty"`
	Force           bool     `json:"force,omitempty"`
}

// UnmarshalJSON reads the keys above and the Go-cased ones (InputLists)
// that the oldest stored scans have in their recipes, so those resume.
func (f *TargetSelect) UnmarshalJSON(b []byte) error {
	type plain TargetSelect // without this method
	var cur plain
	if err := json.Unmarshal(b, &cur); err != nil {
		return err
	}
	var old struct {
		InputLists, Excludes, ExcludeFiles                      []string
		IncludeReserved, Only4, Only6, AllAddrs, Prefer6, Force bool
		MaxHosts                                                uint64
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return err
	}
	*f = TargetSelect(cur)
	f.InputLists = append(f.InputLists, old.InputLists...)
	f.Excludes = append(f.Excludes, old.Excludes...)
	f.ExcludeFiles = append(f.ExcludeFiles, old.ExcludeFiles...)
	f.IncludeReserved = f.IncludeReserved || old.IncludeReserved
	f.Only4, f.Only6 = f.Only4 || old.Only4, f.Only6 || old.Only6
	f.AllAddrs, f.Prefer6, f.Force = f.AllAddrs || old.AllAddrs, f.Prefer6 || old.Prefer6, f.Force || old.Force
	f.MaxHosts = max(f.MaxHosts, old.MaxHosts)
	return nil
}

// recipeV1 is what version 1 has that version 2 says otherwise: nmap's
// scan type letter, and the source of probes as flags.
type recipeV1 struct {
	ScanType   string `json:"scan_type"`
	Iface      string `json:"iface"`
	Source     string `json:"source"`
	SourcePort uint16 `json:"source_port"`
}

// DecodeRecipe reads a stored recipe, of this version or of version 1
// (the scan command's options: "scan_type": "S", "T", "U", "n" or empty,
// which left the prober to the scan's start; the caller then takes the
// prober the scan recorded). A recipe of a later version is refused.
func DecodeRecipe(b []byte) (Recipe, error) {
	var r Recipe
	if err := json.Unmarshal(b, &r); err != nil {
		return Recipe{}, fmt.Errorf("scan recipe: %w", err)
	}
	switch {
	case r.Version > RecipeVersion:
		return Recipe{}, fmt.Errorf("scan recipe: version %d is newer than this portolan's (%d)", r.Version, RecipeVersion)
	case r.Version >= 2:
		return r, nil
	}
	var v1 recipeV1
	if err := json.Unmarshal(b, &v1); err != nil {
		return Recipe{}, fmt.Errorf("scan recipe: %w", err)
	}
	switch strings.ToLower(v1.ScanType) {
	case "s", "syn":
		r.Prober = "syn"
	case "t", "connect":
		r.Prober = "connect"
	case "u", "udp":
		r.Prober = "udp"
	case "n":
		r.Prober, r.DiscoveryOnly = "connect", true
	case "":
	default:
		return Recipe{}, fmt.Errorf("scan recipe: scan type %q", v1.ScanType)
	}
	r.Local = scan.Local{Iface: v1.Iface, Port: v1.SourcePort}
	if v1.Source != "" {
		a, err := netip.ParseAddr(v1.Source)
		if err != nil {
			return Recipe{}, fmt.Errorf("scan recipe: source address: %w", err)
		}
		r.Local.Addr = a
	}
	r.Version = RecipeVersion
	return r, nil
}

// Encode returns the recipe as the store keeps it.
func (r Recipe) Encode() ([]byte, error) {
	r.Version = RecipeVersion
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode scan recipe: %w", err)
	}
	return b, nil
}

// Proto is the protocol of the recipe's ports: UDP for a UDP scan.
func (r Recipe) Proto() portspec.Proto {
	if r.Prober == "udp" {
		return portspec.UDP
	}
	return portspec.TCP
}

// Check refuses knobs that make no sense together, before anything is
// sent. Its errors are the caller's input errors.
func (r Recipe) Check() error {
	switch {
	case r.Rate < 0 || r.Window < 0 || r.MinRate < 0:
		return errors.New("the rate, the minimum rate and the window must not be negative")
	case r.Rate > 0 && r.MinRate > r.Rate:
		return fmt.Errorf("the minimum rate %g is above the rate cap %g", r.MinRate, r.Rate)
	case r.MinTimeout < 0 || r.MaxTimeout < 0 || r.InitialTimeout < 0 || r.HostTimeout < 0:
		return errors.New("timeouts must not be negative")
	case r.MaxTimeout > 0 && r.MinTimeout > r.MaxTimeout:
		return fmt.Errorf("the shortest wait %s is longer than the longest %s", r.MinTimeout, r.MaxTimeout)
	case r.DiscoveryOnly && r.AssumeUp:
		return errors.New("host discovery only, and no host discovery: nothing to do")
	case r.DiscoveryOnly && (r.Ports != "" || r.TopPorts != 0 || r.ExcludePorts != ""):
		return errors.New("host discovery only scans no ports")
	case r.Ports != "" && r.TopPorts != 0:
		return errors.New("a port spec and a top-ports count exclude each other")
	}
	return nil
}

// PortSet resolves the recipe's ports with parser (whose Names resolve
// service names): the spec, or the top ports of the curated list followed
// by the other ports in ascending order, less the excluded ones. Discovery
// only has one port per address, which the engine reports as the host.
// PortError marks what comes from the recipe's specs.
func (r Recipe) PortSet(parser portspec.Parser) (*portspec.Set, error) {
	set := &portspec.Set{}
	if r.DiscoveryOnly {
		set.Add(portspec.TCP, scan.DefaultDiscoveryPorts[0])
		return set, nil
	}
	proto := r.Proto()
	parser.Default = proto // a UDP scan's "53" is UDP port 53, as in nmap
	if r.Ports != "" {
		s, err := parser.Parse(r.Ports)
		if err != nil {
			return nil, &PortError{"ports", err}
		}
		set = s
	} else {
		n := r.TopPorts
		if n == 0 {
			n = 1000
		}
		tiers := registry.TopTiers(proto)
		top, err := registry.Top(proto, min(n, tiers[len(tiers)-1]))
		if err != nil {
			return nil, &PortError{"top-ports", err}
		}
		for _, e := range top {
			set.Add(e.Proto, e.Port)
		}
		for p := portspec.Port(1); set.Len() < n && p != 0; p++ {
			set.Add(proto, p)
		}
	}
	for _, pr := range set.Protos() {
		switch {
		case pr == proto:
		case pr == portspec.UDP:
			return nil, &PortError{"ports", errors.New("UDP ports need a UDP scan (-sU); a connect scan takes TCP ports")}
		case pr == portspec.TCP:
			return nil, &PortError{"ports", errors.New("TCP ports need a TCP scan (-sT); a UDP scan (-sU) takes UDP ports")}
		default:
			return nil, &PortError{"ports", fmt.Errorf("%s ports need an SCTP scan, which is not in this release", pr)}
		}
	}
	if r.ExcludePorts != "" {
		ex, err := parser.Parse(r.ExcludePorts)
		if err != nil {
			return nil, &PortError{"exclude-ports", err}
		}
		set.RemoveSet(ex)
		if set.Len() == 0 {
			return nil, &PortError{"exclude-ports", errors.New("leaves no port to scan")}
		}
	}
	return set, nil
}

// PortText is the recipe's ports as history shows them: "-p 22,80",
// "-p-", "--top-ports 100", "-sn".
func (r Recipe) PortText() string {
	var text string
	switch {
	case r.DiscoveryOnly:
		return "-sn"
	case r.Ports == "-":
		text = "-p-"
	case r.Ports != "":
		text = "-p " + r.Ports
	default:
		text = fmt.Sprintf("--top-ports %d", cmp.Or(r.TopPorts, 1000))
	}
	if r.ExcludePorts != "" {
		text += " --exclude-ports " + r.ExcludePorts
	}
	return text
}

// PortError is an error in the recipe's port selection: which part
// (ports, top-ports, exclude-ports) and why.
type PortError struct {
	Part string
	Err  error
}

func (e *PortError) Error() string { return e.Part + ": " + e.Err.Error() }
func (e *PortError) Unwrap() error { return e.Err }

// Scanner returns the engine set up as the recipe says, with its prober
// chosen by name; the caller adds the callbacks, StartAt and a logger.
func (r Recipe) Scanner() (*scan.Scanner, error) {
	shard, err := r.shard()
	if err != nil {
		return nil, err
	}
	prober, err := scan.ProberByName(cmp.Or(r.Prober, "connect"), scan.ProberOptions{Local: r.Local, MinRate: r.MinRate})
	if err != nil {
		return nil, err
	}
	s := &scan.Scanner{
		Prober:         prober,
		Rate:           r.Rate,
		MinRate:        r.MinRate,
		Window:         r.Window,
		Retries:        r.Retries,
		MinTimeout:     r.MinTimeout,
		MaxTimeout:     r.MaxTimeout,
		InitialTimeout: r.InitialTimeout,
		HostTimeout:    r.HostTimeout,
		Seed:           r.Seed,
		Shard:          shard,
		ServiceName:    registry.PortName, // no CSV parse: the scan starts sooner
		DiscoveryOnly:  r.DiscoveryOnly,
	}
	switch {
	case r.AssumeUp:
		s.HostDownAfter = -1
	case r.Local.Iface != "" || r.Local.Addr.IsValid():
		// TCP discovery goes through the prober, from where it was told;
		// the ICMP echo could not.
	default:
		// Ping too where a ping or raw ICMP socket is allowed; TCP
		// discovery works without.
		s.Pinger = scan.EchoProber{}
	}
	if r.Banner {
		s.Banners = &scan.Grabber{}
	}
	return s, nil
}

// shard parses the recipe's shard; none is the whole space.
func (r Recipe) shard() (scan.Shard, error) {
	if r.Shard == "" {
		return scan.Shard{}, nil
	}
	sh, err := scan.ParseShard(r.Shard)
	if err != nil {
		return scan.Shard{}, fmt.Errorf("shard: %w", err)
	}
	return sh, nil
}

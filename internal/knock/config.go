package knock

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"portolan/internal/portspec"
)

// Defaults for a Config's zero fields.
const (
	DefaultGroup        = 7421
	DefaultSPAPort      = 62201
	DefaultWindow       = 30 * time.Second
	DefaultStageTimeout = 5 * time.Second
	DefaultOpenFor      = 30 * time.Second
	maxSequence         = 32
	maxOpenFor          = 24 * time.Hour
)

// Config is what knockd serves: doors, and where SPA and knocks arrive.
type Config struct {
	// Group is the NFLOG group the knock and SPA packets are logged to;
	// 0 means DefaultGroup.
	Group uint16
	// SPAPort is the UDP port SPA datagrams go to; 0 means
	// DefaultSPAPort.
	SPAPort uint16
	// Window is how far a request's timestamp may be from the server's
	// clock, either way; 0 means DefaultWindow.
	Window time.Duration
	// AuthorizedKeys is the authorized-keys file; empty: no SPA.
	AuthorizedKeys string
	Doors          []Door
}

// Door protects ports and opens them for a source that knocks its sequence
// or sends an SPA request for them.
type Door struct {
	Name    string
	Protect []DoorPort
	// Sequence is the classic knock; empty: SPA only.
	Sequence []DoorPort
	// StageTimeout is the most time between two knocks of the sequence;
	// 0 means DefaultStageTimeout.
	StageTimeout time.Duration
	// OpenFor is how long the ports stay open; 0 means DefaultOpenFor.
	OpenFor time.Duration
	// NoSPA refuses SPA requests for this door's ports.
	NoSPA bool
}

func (c *Config) group() uint16 {
	if c.Group == 0 {
		return DefaultGroup
	}
	return c.Group
}

func (c *Config) spaPort() uint16 {
	if c.SPAPort == 0 {
		return DefaultSPAPort
	}
	return c.SPAPort
}

func (c *Config) window() time.Duration {
	if c.Window == 0 {
		return DefaultWindow
	}
	return c.Window
}

func (d *Door) stageTimeout() time.Duration {
	if d.StageTimeout == 0 {
		return DefaultStageTimeout
	}
	return d.StageTimeout
}

func (d *Door) openFor() time.Duration {
	if d.OpenFor == 0 {
		return DefaultOpenFor
	}
	return d.OpenFor
}

// Validate checks the doors make sense together.
func (c *Config) Validate() error {
	if len(c.Doors) == 0 {
		return errors.New("no doors")
	}
	if c.Window < 0 || c.Window > time.Hour {
		return fmt.Errorf("window %v: want 0 to 1h", c.Window)
	}
	spa := DoorPort{Proto: portspec.UDP, Port: portspec.Port(c.spaPort())}
	names := map[string]bool{}
	protected := map[DoorPort]string{}
	for i := range c.Doors {
		d := &c.Doors[i]
		if d.Name == "" {
			d.Name = "door" + strconv.Itoa(i+1)
		}
		if names[d.Name] {
			return fmt.Errorf("door %s: name used twice", d.Name)
		}
		names[d.Name] = true
		if len(d.Protect) == 0 {
			return fmt.Errorf("door %s: protects no port", d.Name)
		}
		if len(d.Sequence) == 0 && (d.NoSPA || c.AuthorizedKeys == "") {
			return fmt.Errorf("door %s: neither a sequence nor SPA (authorized keys) opens it", d.Name)
		}
		if len(d.Sequence) > maxSequence {
			return fmt.Errorf("door %s: sequence of %d knocks; at most %d", d.Name, len(d.Sequence), maxSequence)
		}
		if d.StageTimeout < 0 || d.OpenFor < 0 || d.OpenFor > maxOpenFor {
			return fmt.Errorf("door %s: durations must be positive and open_for at most %v", d.Name, maxOpenFor)
		}
		for _, p := range d.Protect {
			if p.Proto != portspec.TCP && p.Proto != portspec.UDP {
				return fmt.Errorf("door %s: protects %d/%s: only tcp and udp", d.Name, p.Port, p.Proto)
			}
			if p == spa {
				return fmt.Errorf("door %s: protects the SPA port %d/udp", d.Name, p.Port)
			}
			protected[p] = d.Name
		}
	}
	for _, d := range c.Doors {
		for _, k := range d.Sequence {
			if other, ok := protected[k]; ok {
				return fmt.Errorf("door %s: knock %d/%s is a port door %s protects", d.Name, k.Port, k.Proto, other)
			}
			if k == spa {
				return fmt.Errorf("door %s: knock %d/udp is the SPA port", d.Name, k.Port)
			}
		}
	}
	return nil
}

// ParseSequence reads a knock sequence: ports in order, each optionally
// PORT/udp or PORT/tcp (the default), separated by commas.
func ParseSequence(s string) ([]DoorPort, error) {
	var out []DoorPort
	col := 0
	for _, e := range strings.Split(s, ",") {
		lead := len(e) - len(strings.TrimLeft(e, " "))
		t := strings.TrimSpace(e)
		proto := portspec.TCP
		num, p, ok := strings.Cut(t, "/")
		if ok {
			var err error
			if proto, err = portspec.ParseProto(p); err != nil || (proto != portspec.TCP && proto != portspec.UDP) {
				return nil, fmt.Errorf("sequence %q: column %d: protocol %q; want tcp or udp", s, col+lead+len(num)+2, p)
			}
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("sequence %q: column %d: %q is not a port from 1 to 65535", s, col+lead+1, num)
		}
		out = append(out, DoorPort{Proto: proto, Port: portspec.Port(n)})
		col += len(e) + 1
	}
	return out, nil
}

// FormatSequence is ParseSequence's inverse.
func FormatSequence(seq []DoorPort) string {
	parts := make([]string, len(seq))
	for i, k := range seq {
		parts[i] = strconv.Itoa(int(k.Port))
		if k.Proto == portspec.UDP {
			parts[i] += "/udp"
		}
	}
	return strings.Join(parts, ",")
}

// ParsePorts reads a port spec (22/tcp, 80,443, U:53) into door ports.
func ParsePorts(s string) ([]DoorPort, error) {
	set, err := portspec.Parse(s)
	if err != nil {
		return nil, err
	}
	var out []DoorPort
	for proto, p := range set.All() {
		out = append(out, DoorPort{Proto: proto, Port: p})
	}
	return out, nil
}

// ConfigError is an error at a place in a knockd.yaml file.
type ConfigError struct {
	File         string
	Line, Column int
	Field        string
	Err          error
}

func (e *ConfigError) Error() string {
	f := ""
	if e.Field != "" {
		f = e.Field + ": "
	}
	return fmt.Sprintf("%s:%d:%d: %s%v", e.File, e.Line, e.Column, f, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ParseConfig reads a knockd.yaml document:
//
//	group: 7421                 # NFLOG group (optional)
//	spa_port: 62201             # optional
//	window: 30s                 # timestamp tolerance (optional)
//	authorized_keys: /etc/portolan/knock.keys
//	doors:
//	  - name: ssh
//	    protect: 22/tcp
//	    sequence: 7000,8000/udp,9000
//	    stage_timeout: 5s
//	    open_for: 30s
//	    spa: true               # false: knocks only
//
// Errors name the file, line, column and field.
func ParseConfig(file string, data []byte) (cfg *Config, err error) {
	defer func() {
		if p := recover(); p != nil { // a reload must not take the daemon down
			cfg, err = nil, fmt.Errorf("%s: yaml: %v", file, p)
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	bad := func(n *yaml.Node, field string, format string, a ...any) error {
		return &ConfigError{File: file, Line: n.Line, Column: n.Column, Field: field, Err: fmt.Errorf(format, a...)}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &ConfigError{File: file, Line: 1, Column: 1, Err: errors.New("want a mapping with a doors list")}
	}
	top := doc.Content[0]
	cfg = &Config{}
	var doors *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if seen[k.Value] {
			return nil, bad(k, k.Value, "given twice")
		}
		seen[k.Value] = true
		switch k.Value {
		case "group":
			n, err := scalarUint(v, 1, 65535)
			if err != nil {
				return nil, bad(v, k.Value, "%v", err)
			}
			cfg.Group = uint16(n)
		case "spa_port":
			n, err := scalarUint(v, 1, 65535)
			if err != nil {
				return nil, bad(v, k.Value, "%v", err)
			}
			cfg.SPAPort = uint16(n)
		case "window":
			d, err := scalarDuration(v)
			if err != nil {
				return nil, bad(v, k.Value, "%v", err)
			}
			cfg.Window = d
		case "authorized_keys":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return nil, bad(v, k.Value, "want a file name")
			}
			cfg.AuthorizedKeys = v.Value
		case "doors":
			if v.Kind != yaml.SequenceNode {
				return nil, bad(v, k.Value, "want a list")
			}
			doors = v
		default:
			return nil, bad(k, k.Value, "unknown key: want group, spa_port, window, authorized_keys or doors")
		}
	}
	if doors == nil || len(doors.Content) == 0 {
		return nil, bad(top, "doors", "no doors")
	}
	for _, n := range doors.Content {
		d, err := parseDoor(file, n)
		if err != nil {
			return nil, err
		}
		cfg.Doors = append(cfg.Doors, d)
	}
	if err := cfg.Validate(); err != nil {
		return nil, bad(doors, "doors", "%v", err)
	}
	return cfg, nil
}

func parseDoor(file string, n *yaml.Node) (Door, error) {
	var d Door
	bad := func(n *yaml.Node, field string, format string, a ...any) error {
		return &ConfigError{File: file, Line: n.Line, Column: n.Column, Field: field, Err: fmt.Errorf(format, a...)}
	}
	if n.Kind != yaml.MappingNode {
		return d, bad(n, "doors", "want a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return d, bad(k, k.Value, "given twice")
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode {
			return d, bad(v, k.Value, "want a single value")
		}
		var err error
		switch k.Value {
		case "name":
			if v.Value == "" || strings.ContainsAny(v.Value, " \t") {
				err = errors.New("want one word")
			}
			d.Name = v.Value
		case "protect":
			d.Protect, err = ParsePorts(v.Value)
		case "sequence":
			d.Sequence, err = ParseSequence(v.Value)
		case "stage_timeout":
			d.StageTimeout, err = scalarDuration(v)
		case "open_for":
			d.OpenFor, err = scalarDuration(v)
		case "spa":
			var on bool
			if err = v.Decode(&on); err == nil {
				d.NoSPA = !on
			}
		default:
			return d, bad(k, k.Value, "unknown key: want name, protect, sequence, stage_timeout, open_for or spa")
		}
		if err != nil {
			return d, bad(v, k.Value, "%v", err)
		}
	}
	return d, nil
}

func scalarUint(v *yaml.Node, lo, hi uint64) (uint64, error) {
	n, err := strconv.ParseUint(v.Value, 10, 64)
	if v.Kind != yaml.ScalarNode || err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a number from %d to %d", v.Value, lo, hi)
	}
	return n, nil
}

func scalarDuration(v *yaml.Node) (time.Duration, error) {
	d, err := time.ParseDuration(v.Value)
	if v.Kind != yaml.ScalarNode || err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (like 30s)", v.Value)
	}
	return d, nil
}

// doorFor returns the SPA doors that protect all of ports, or nil.
func (c *Config) spaDoorsFor(ports []DoorPort) (openFor time.Duration, ok bool) {
	for _, p := range ports {
		found := false
		for _, d := range c.Doors {
			if !d.NoSPA && slices.Contains(d.Protect, p) {
				found = true
				if openFor == 0 || d.openFor() < openFor {
					openFor = d.openFor()
				}
			}
		}
		if !found {
			return 0, false
		}
	}
	return openFor, true
}

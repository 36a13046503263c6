package knock

import (
	"cmp"
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"portolan/internal/config"
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
	// ServerKey is the server's X25519 key file (portolan knock keygen
	// --server), which opens sealed SPA requests; empty: sealed requests
	// are not understood. LoadServerKey reads it into ServerPrivate.
	ServerKey     string
	ServerPrivate *ecdh.PrivateKey
	// SealedOnly rejects SPA requests that are not sealed.
	SealedOnly bool
	Doors      []Door
}

// LoadServerKey reads ServerKey into ServerPrivate; with no ServerKey it
// does nothing.
func (c *Config) LoadServerKey() error {
	if c.ServerKey == "" {
		return nil
	}
	k, err := ReadServerKey(c.ServerKey)
	if err != nil {
		return err
	}
	c.ServerPrivate = k
	return nil
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
	// OneTime is a file of one-time sequences (see ParseOneTime), instead
	// of Sequence. LoadOneTime reads it and sets Sequence to its first
	// unused line; each use moves on to the next.
	OneTime string
	oneTime *OneTime // the unused sequences, once loaded
}

// OneTimeLeft is how many one-time sequences are unused, as loaded.
func (d *Door) OneTimeLeft() int {
	if d.oneTime == nil {
		return 0
	}
	return len(d.oneTime.Seqs)
}

// knockPorts are the ports whose packets the door's sequences need: its
// sequence and every unused one-time sequence.
func (d *Door) knockPorts() []DoorPort {
	if d.oneTime != nil {
		return d.oneTime.ports()
	}
	return d.Sequence
}

// LoadOneTime reads the one-time sequences file of each door that has
// one: its Sequence becomes the first unused line (none when all are
// used).
func (c *Config) LoadOneTime() error {
	for i := range c.Doors {
		d := &c.Doors[i]
		if d.OneTime == "" {
			continue
		}
		text, err := os.ReadFile(d.OneTime)
		if err != nil {
			return fmt.Errorf("door %s: %w", d.Name, err)
		}
		ot, err := ParseOneTime(d.OneTime, text)
		if err != nil {
			return fmt.Errorf("door %s: %w", d.Name, err)
		}
		d.oneTime, d.Sequence = ot, nil
		if len(ot.Seqs) > 0 {
			d.Sequence = ot.Seqs[0]
		}
	}
	return c.Validate()
}

// The settings with their defaults: a zero field means the default.
func (c *Config) group() uint16 { return cmp.Or(c.Group, DefaultGroup) }

func (c *Config) spaPort() uint16 { return cmp.Or(c.SPAPort, DefaultSPAPort) }

func (c *Config) window() time.Duration { return cmp.Or(c.Window, DefaultWindow) }

func (d *Door) stageTimeout() time.Duration { return cmp.Or(d.StageTimeout, DefaultStageTimeout) }

func (d *Door) openFor() time.Duration { return cmp.Or(d.OpenFor, DefaultOpenFor) }

// Validate checks the doors make sense together.
func (c *Config) Validate() error {
	if len(c.Doors) == 0 {
		return errors.New("no doors")
	}
	if c.Window < 0 || c.Window > time.Hour {
		return fmt.Errorf("window %v: want 0 to 1h", c.Window)
	}
	if c.SealedOnly && c.ServerKey == "" && c.ServerPrivate == nil {
		return errors.New("sealed-only needs a server-key to open sealed requests with")
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
		if len(d.Sequence) == 0 && d.OneTime == "" && (d.NoSPA || c.AuthorizedKeys == "") {
			return fmt.Errorf("door %s: neither a sequence nor SPA (authorized keys) opens it", d.Name)
		}
		if len(d.Sequence) > maxSequence {
			return fmt.Errorf("door %s: sequence of %d knocks; at most %d", d.Name, len(d.Sequence), maxSequence)
		}
		if d.StageTimeout < 0 || d.OpenFor < 0 || d.OpenFor > maxOpenFor {
			return fmt.Errorf("door %s: durations must be positive and open-for at most %v", d.Name, maxOpenFor)
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
		for _, k := range d.knockPorts() {
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

// ConfigError is an error at a place in a knockd.yaml file: the error of
// portolan's one config loader.
type ConfigError = config.Error

// ParseConfig reads a knockd.yaml document; keys are named like knockd's
// flags:
//
//	group: 7421                 # NFLOG group (optional)
//	spa-port: 62201             # optional
//	window: 30s                 # timestamp tolerance (optional)
//	authorized-keys: /etc/portolan/knock.keys
//	server-key: /etc/portolan/knockd.key   # opens sealed requests (optional)
//	sealed-only: false                    # true: refuse unsealed requests
//	doors:
//	  - name: ssh
//	    protect: 22/tcp
//	    sequence: 7000,8000/udp,9000
//	    # or one-time-sequences: /etc/portolan/ssh.sequences
//	    stage-timeout: 5s
//	    open-for: 30s
//	    spa: true               # false: knocks only
//
// Errors name the file, line, column and field.
func ParseConfig(file string, data []byte) (*Config, error) {
	top, err := config.Parse(file, data, "a doors: list")
	if err != nil {
		return nil, err
	}
	if !top.IsMapping() {
		return nil, top.Errorf("want a mapping with a doors list, not %s", top.Kind())
	}
	fields, err := top.Map("group", "spa-port", "window", "authorized-keys", "server-key", "sealed-only", "doors")
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	var doors []config.Node
	doorsAt := top.As("doors")
	for _, f := range fields {
		v := f.Value
		switch f.Key {
		case "group":
			cfg.Group, err = config.Value(v, portNumber)
		case "spa-port":
			cfg.SPAPort, err = config.Value(v, portNumber)
		case "window":
			cfg.Window, err = config.Value(v, positiveDuration)
		case "authorized-keys":
			cfg.AuthorizedKeys, err = config.Value(v, nonEmpty("a file name"))
		case "server-key":
			cfg.ServerKey, err = config.Value(v, nonEmpty("a file name"))
		case "sealed-only":
			cfg.SealedOnly, err = v.Bool()
		case "doors":
			doors, err = v.List()
			doorsAt = v
		}
		if err != nil {
			return nil, err
		}
	}
	if len(doors) == 0 {
		return nil, doorsAt.Errorf("no doors")
	}
	for i, n := range doors {
		d, err := parseDoor(n.As("door " + strconv.Itoa(i+1)))
		if err != nil {
			return nil, err
		}
		cfg.Doors = append(cfg.Doors, d)
	}
	if err := cfg.Validate(); err != nil {
		return nil, doorsAt.Wrap(err)
	}
	return cfg, nil
}

func parseDoor(n config.Node) (Door, error) {
	var d Door
	fields, err := n.Map("name", "protect", "sequence", "one-time-sequences", "stage-timeout", "open-for", "spa")
	if err != nil {
		return d, err
	}
	for _, f := range fields {
		v := f.Value
		switch f.Key {
		case "name":
			d.Name, err = config.Value(v, oneWord)
		case "protect":
			d.Protect, err = config.Value(v, ParsePorts)
		case "sequence":
			d.Sequence, err = config.Value(v, ParseSequence)
		case "one-time-sequences":
			d.OneTime, err = config.Value(v, nonEmpty("a file name"))
		case "stage-timeout":
			d.StageTimeout, err = config.Value(v, positiveDuration)
		case "open-for":
			d.OpenFor, err = config.Value(v, positiveDuration)
		case "spa":
			var on bool
			on, err = v.Bool()
			d.NoSPA = !on
		}
		if err != nil {
			return d, err
		}
	}
	if len(d.Sequence) > 0 && d.OneTime != "" {
		return d, n.Errorf("sequence and one-time-sequences: choose one")
	}
	return d, nil
}

// portNumber reads a number from 1 to 65535 (a port, or an NFLOG group).
func portNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (like 30s)", s)
	}
	return d, nil
}

func oneWord(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, " \t") {
		return "", fmt.Errorf("%q: want one word", s)
	}
	return s, nil
}

func nonEmpty(what string) func(string) (string, error) {
	return func(s string) (string, error) {
		if s == "" {
			return "", fmt.Errorf("want %s", what)
		}
		return s, nil
	}
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

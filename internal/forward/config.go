package forward

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds on config values, so a typo (an extra zero) is an error rather
// than a server that reserves what it cannot have.
const (
	maxDuration = 30 * 24 * time.Hour
	maxCount    = 10_000_000
	maxTargets  = 256
)

// ConfigError is an error at a place in a config file.
type ConfigError struct {
	File   string
	Line   int
	Column int    // 0: not known
	Rule   string // empty outside a rule
	Field  string // empty for the rule as a whole
	Err    error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:", e.File, e.Line)
	if e.Column > 0 {
		fmt.Fprintf(&b, "%d:", e.Column)
	}
	b.WriteByte(' ')
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %s: ", e.Rule)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ParseConfig reads a forward.yaml document:
//
//	defaults:                # optional; any rule field, applied to every rule
//	  connect-timeout: 3s
//	rules:
//	  - name: web
//	    listen: ":8080"
//	    targets: [198.18.0.2:80, 198.18.0.3:80]
//	    balance: round-robin
//	    health: 5s
//
// Errors name the file, the line, the rule and the field.
func ParseConfig(file string, data []byte) (rules []Rule, err error) {
	// A reload must never take the daemon down: turn a panic in the YAML
	// decoder on some odd input into an error.
	defer func() {
		if p := recover(); p != nil {
			rules, err = nil, fmt.Errorf("%s: yaml: %v", file, p)
		}
	}()
	return parseConfig(file, data)
}

func parseConfig(file string, data []byte) ([]Rule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, &ConfigError{File: file, Line: 1, Err: errors.New("empty file: want a rules: list")}
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, &ConfigError{File: file, Line: top.Line, Err: errors.New("want a mapping with a rules list")}
	}
	if err := noDuplicateKeys(file, "", top); err != nil {
		return nil, err
	}
	var defaults *yaml.Node
	var rules *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch k.Value {
		case "defaults":
			if v.Kind != yaml.MappingNode {
				return nil, &ConfigError{File: file, Line: v.Line, Field: "defaults", Err: errors.New("want a mapping")}
			}
			defaults = v
		case "rules":
			if v.Kind != yaml.SequenceNode {
				return nil, &ConfigError{File: file, Line: v.Line, Field: "rules", Err: errors.New("want a list")}
			}
			rules = v
		default:
			return nil, &ConfigError{File: file, Line: k.Line, Column: k.Column, Field: k.Value, Err: errors.New("unknown key: want defaults or rules")}
		}
	}
	if rules == nil || len(rules.Content) == 0 {
		return nil, &ConfigError{File: file, Line: top.Line, Field: "rules", Err: errors.New("no rules")}
	}
	var base Rule
	if defaults != nil {
		if err := applyFields(file, "defaults", defaults, &base); err != nil {
			return nil, err
		}
	}
	out := make([]Rule, 0, len(rules.Content))
	seen := map[string]int{}
	for i, n := range rules.Content {
		label := "#" + strconv.Itoa(i+1)
		if n.Kind != yaml.MappingNode {
			return nil, &ConfigError{File: file, Line: n.Line, Rule: label, Err: errors.New("want a mapping")}
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			if v := n.Content[j+1]; n.Content[j].Value == "name" && v.Kind == yaml.ScalarNode && v.Value != "" {
				label = v.Value
			}
		}
		r := base
		r.Targets = append([]string(nil), base.Targets...)
		if err := applyFields(file, label, n, &r); err != nil {
			return nil, err
		}
		if r.Listen == "" {
			return nil, &ConfigError{File: file, Line: n.Line, Rule: label, Field: "listen", Err: errors.New("missing")}
		}
		if err := r.Validate(); err != nil {
			return nil, &ConfigError{File: file, Line: n.Line, Rule: label, Err: err}
		}
		if prev, dup := seen[r.DisplayName()]; dup {
			return nil, &ConfigError{File: file, Line: n.Line, Rule: label, Field: "name", Err: fmt.Errorf("also used on line %d", prev)}
		}
		seen[r.DisplayName()] = n.Line
		for j, o := range out {
			if listenConflict(&o, &r) {
				return nil, &ConfigError{File: file, Line: n.Line, Column: n.Column, Rule: label, Field: "listen",
					Err: fmt.Errorf("%s %s overlaps %s of rule %s (line %d): both cannot bind", r.Proto, r.Listen, o.Listen, o.DisplayName(), rules.Content[j].Line)}
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// noDuplicateKeys refuses a mapping that gives a key twice (YAML keeps the
// last one silently).
func noDuplicateKeys(file, rule string, n *yaml.Node) error {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if prev, dup := seen[k.Value]; dup {
			return &ConfigError{File: file, Line: k.Line, Column: k.Column, Rule: rule, Field: k.Value,
				Err: fmt.Errorf("given twice (first on line %d)", prev.Line)}
		}
		seen[k.Value] = k
	}
	return nil
}

// applyFields sets r's fields from a mapping node.
func applyFields(file, rule string, n *yaml.Node, r *Rule) error {
	if err := noDuplicateKeys(file, rule, n); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := applyField(k.Value, v, r); err != nil {
			at := v
			if errors.Is(err, errUnknownField) {
				at = k
			}
			return &ConfigError{File: file, Line: at.Line, Column: at.Column, Rule: rule, Field: k.Value, Err: err}
		}
	}
	return nil
}

// errUnknownField is a key that is no rule field.
var errUnknownField = errors.New("unknown field")

func applyField(key string, v *yaml.Node, r *Rule) error {
	var err error
	switch key {
	case "name":
		r.Name, err = scalar(v)
	case "listen":
		r.Listen, err = scalar(v)
	case "proto", "protocol":
		var s string
		if s, err = scalar(v); err == nil {
			r.Proto, err = ParseProto(s)
		}
	case "udp": // as the --udp flag
		var on bool
		if on, err = boolean(v); err == nil && on {
			r.Proto = UDP
		}
	case "targets", "target":
		r.Targets, err = list(v)
		if err == nil && len(r.Targets) > maxTargets {
			err = fmt.Errorf("%d targets: at most %d", len(r.Targets), maxTargets)
		}
	case "balance":
		var s string
		if s, err = scalar(v); err == nil {
			r.Balance, err = ParseBalance(s)
		}
	case "health":
		r.HealthInterval, err = duration(v, false)
	case "health-rise":
		r.HealthRise, err = count(v)
	case "health-fall":
		r.HealthFall, err = count(v)
	case "health-send":
		r.HealthSend, err = scalar(v)
	case "health-expect":
		r.HealthExpect, err = scalar(v)
	case "connect-timeout":
		r.ConnectTimeout, err = duration(v, false)
	case "idle-timeout":
		r.IdleTimeout, err = duration(v, true)
	case "keepalive":
		r.KeepAlive, err = duration(v, true)
	case "max-conns":
		r.MaxConns, err = count(v)
	case "max-conns-per-source":
		r.MaxConnsPerSource, err = count(v)
	case "allow":
		r.Allow, err = prefixes(v)
	case "deny":
		r.Deny, err = prefixes(v)
	case "accept-proxy", "trusted-proxies": // the flag's name, and the older key
		r.TrustedProxies, err = prefixes(v)
	case "max-fails":
		var n int
		if n, err = count(v); err == nil {
			r.MaxFails = n
			if n == 0 {
				r.MaxFails = -1 // 0 in the file, as nginx's max_fails=0: never
			}
		}
	case "fail-timeout":
		r.FailTimeout, err = duration(v, false)
	case "proxy-protocol":
		var s string
		if s, err = scalar(v); err == nil {
			r.ProxyProtocol, err = ParseProxyVersion(s)
		}
	case "sni":
		r.SNI, err = sniRoutes(v)
	case "unix-mode":
		var s string
		if s, err = scalar(v); err == nil {
			r.UnixMode, err = ParseUnixMode(s)
		}
	case "unix-owner":
		r.UnixOwner, err = scalar(v)
	case "queue-timeout":
		r.QueueTimeout, err = duration(v, false)
	case "queue":
		r.Queue, err = count(v)
	default:
		return errUnknownField
	}
	return err
}

func boolean(v *yaml.Node) (bool, error) {
	s, err := scalar(v)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, nil
	case "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q: want true or false", s)
}

// ParseProxyVersion reads "v1", "v2", "1", "2", "none" or "off".
func ParseProxyVersion(s string) (int, error) {
	switch strings.ToLower(s) {
	case "", "none", "off", "0":
		return 0, nil
	case "v1", "1":
		return 1, nil
	case "v2", "2":
		return 2, nil
	}
	return 0, fmt.Errorf("%q: want v1, v2 or none", s)
}

// ParsePrefix reads a CIDR prefix or a bare address (a one-address prefix).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func scalar(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", errors.New("want a single value")
	}
	return v.Value, nil
}

func list(v *yaml.Node) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		// "a:1,b:2" or a single value; spaces after the commas are not
		// part of the values.
		parts := strings.Split(v.Value, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(v.Content))
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: want a single value in the list", e.Line)
			}
			out = append(out, strings.TrimSpace(e.Value))
		}
		return out, nil
	}
	return nil, errors.New("want a list")
}

func duration(v *yaml.Node, offOK bool) (time.Duration, error) {
	s, err := scalar(v)
	if err != nil {
		return 0, err
	}
	if offOK && (s == "off" || s == "false") {
		return -1, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 5s or 1m30s", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", s)
	}
	if d > maxDuration {
		return 0, fmt.Errorf("%q is over the maximum of %s", s, maxDuration)
	}
	return d, nil
}

func count(v *yaml.Node) (int, error) {
	s, err := scalar(v)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a whole number of 0 or more", s)
	}
	if n > maxCount {
		return 0, fmt.Errorf("%d is over the maximum of %d", n, maxCount)
	}
	return int(n), nil
}

func prefixes(v *yaml.Node) ([]netip.Prefix, error) {
	ss, err := list(v)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

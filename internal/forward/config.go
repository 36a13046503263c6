package forward

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"portolan/internal/config"
)

// Bounds on config values, so a typo (an extra zero) is an error rather
// than a server that reserves what it cannot have.
const (
	maxDuration = 30 * 24 * time.Hour
	maxCount    = 10_000_000
	maxTargets  = 256
)

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
// Keys are named like the flags. Errors (*config.Error) name the file, the
// line and column, the rule and the field.
func ParseConfig(file string, data []byte) ([]Rule, error) {
	top, err := config.Parse(file, data, "a rules: list")
	if err != nil {
		return nil, err
	}
	fields, err := top.Map("defaults", "rules")
	if err != nil {
		return nil, err
	}
	var base Rule
	var rules []config.Node
	for _, f := range fields {
		switch f.Key {
		case "defaults":
			if err := applyFields(f.Value, &base); err != nil {
				return nil, err
			}
		case "rules":
			if rules, err = f.Value.List(); err != nil {
				return nil, err
			}
		}
	}
	if len(rules) == 0 {
		return nil, top.As("rules").Errorf("no rules")
	}
	out := make([]Rule, 0, len(rules))
	seen := map[string]int{}
	for i, n := range rules {
		n = n.As("rule " + ruleLabel(n, i))
		r := base
		r.Targets = append([]string(nil), base.Targets...)
		if err := applyFields(n, &r); err != nil {
			return nil, err
		}
		if r.Listen == "" {
			return nil, n.Errorf("listen: missing")
		}
		if err := r.Validate(); err != nil {
			return nil, n.Wrap(err)
		}
		if prev, dup := seen[r.DisplayName()]; dup {
			return nil, n.Errorf("name: also used on line %d", prev)
		}
		seen[r.DisplayName()] = n.Line()
		for j, o := range out {
			if listenConflict(&o, &r) {
				return nil, n.Errorf("listen: %s %s overlaps %s of rule %s (line %d): both cannot bind", r.Proto, r.Listen, o.Listen, o.DisplayName(), rules[j].Line())
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// ruleLabel names rule i for errors: its name if it has one, else #i+1.
func ruleLabel(n config.Node, i int) string {
	if v, ok := n.Lookup("name"); ok {
		if s, err := v.Scalar(); err == nil && s != "" {
			return s
		}
	}
	return "#" + strconv.Itoa(i+1)
}

// ruleKeys are the keys of a rule, named like the flags; "protocol",
// "target" and "trusted-proxies" are older spellings still read.
var ruleKeys = []string{
	"name", "listen", "proto", "protocol", "udp", "targets", "target", "balance",
	"health", "health-rise", "health-fall", "health-send", "health-expect",
	"connect-timeout", "idle-timeout", "keepalive", "max-conns", "max-conns-per-source",
	"allow", "deny", "accept-proxy", "trusted-proxies", "max-fails", "fail-timeout",
	"proxy-protocol", "sni", "unix-mode", "unix-owner", "queue-timeout", "queue",
}

// applyFields sets r's fields from a mapping.
func applyFields(n config.Node, r *Rule) error {
	fields, err := n.Map(ruleKeys...)
	if err != nil {
		return err
	}
	for _, f := range fields {
		if err := applyField(f.Key, f.Value, r); err != nil {
			return f.Value.Wrap(err)
		}
	}
	return nil
}

func applyField(key string, v config.Node, r *Rule) error {
	var err error
	switch key {
	case "name":
		r.Name, err = v.Scalar()
	case "listen":
		r.Listen, err = v.Scalar()
	case "proto", "protocol":
		r.Proto, err = config.Value(v, ParseProto)
	case "udp": // as the --udp flag
		var on bool
		if on, err = v.Bool(); err == nil && on {
			r.Proto = UDP
		}
	case "targets", "target":
		r.Targets, err = v.Strings()
		if err == nil && len(r.Targets) > maxTargets {
			err = fmt.Errorf("%d targets: at most %d", len(r.Targets), maxTargets)
		}
	case "balance":
		r.Balance, err = config.Value(v, ParseBalance)
	case "health":
		r.HealthInterval, err = config.Value(v, durationParser(false))
	case "health-rise":
		r.HealthRise, err = config.Value(v, ParseCount)
	case "health-fall":
		r.HealthFall, err = config.Value(v, ParseCount)
	case "health-send":
		r.HealthSend, err = v.Scalar()
	case "health-expect":
		r.HealthExpect, err = v.Scalar()
	case "connect-timeout":
		r.ConnectTimeout, err = config.Value(v, durationParser(false))
	case "idle-timeout":
		r.IdleTimeout, err = config.Value(v, durationParser(true))
	case "keepalive":
		r.KeepAlive, err = config.Value(v, durationParser(true))
	case "max-conns":
		r.MaxConns, err = config.Value(v, ParseCount)
	case "max-conns-per-source":
		r.MaxConnsPerSource, err = config.Value(v, ParseCount)
	case "allow":
		r.Allow, err = config.Values(v, ParsePrefix)
	case "deny":
		r.Deny, err = config.Values(v, ParsePrefix)
	case "accept-proxy", "trusted-proxies": // the flag's name, and the older key
		r.TrustedProxies, err = config.Values(v, ParsePrefix)
	case "max-fails":
		var n int
		if n, err = config.Value(v, ParseCount); err == nil {
			r.MaxFails = n
			if n == 0 {
				r.MaxFails = -1 // 0 in the file, as nginx's max_fails=0: never
			}
		}
	case "fail-timeout":
		r.FailTimeout, err = config.Value(v, durationParser(false))
	case "proxy-protocol":
		r.ProxyProtocol, err = config.Value(v, ParseProxyVersion)
	case "sni":
		r.SNI, err = sniRoutes(v)
	case "unix-mode":
		r.UnixMode, err = config.Value(v, ParseUnixMode)
	case "unix-owner":
		r.UnixOwner, err = v.Scalar()
	case "queue-timeout":
		r.QueueTimeout, err = config.Value(v, durationParser(false))
	case "queue":
		r.Queue, err = config.Value(v, ParseCount)
	}
	return err
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

// durationParser reads a duration like 5s or 1m30s; with offOK, "off"
// (or "false") reads as -1, never.
func durationParser(offOK bool) func(string) (time.Duration, error) {
	return func(s string) (time.Duration, error) {
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
}

// ParseCount reads a whole number from 0 up to a sane maximum.
func ParseCount(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a whole number of 0 or more", s)
	}
	if n > maxCount {
		return 0, fmt.Errorf("%d is over the maximum of %d", n, maxCount)
	}
	return int(n), nil
}

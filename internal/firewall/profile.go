package firewall

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"portolan/internal/config"
	"portolan/internal/portspec"
)

// A profile is a Ruleset in a YAML file, the format export writes and
// plan and apply read:
//
//	# comments are fine
//	policy: drop              # accept (default), drop or reject
//	rules:
//	  - allow: 22/tcp         # the action, then the ports (or any)
//	    comment: ssh
//	  - allow: https
//	    from: 198.18.0.0/15   # one prefix, or a list: [198.18.0.0/15, fd00::/8]
//	  - limit: 22/tcp
//	    rate: 6/30s
//	    prefix6: 56           # IPv6 sources counted by their /56 (default /64)
//	  - allow: 8080/tcp
//	    for: 2h               # or expires: 2030-01-02T15:04:05Z
//	  - log: 23/tcp
//	    group: 5
//	  - deny: any
//	    from: 198.18.0.66
//	    iface: eth0
//	  - deny: 8080/tcp
//	    direction: routed     # in (default), routed (forwarded, DNAT included) or out
//
// Each rule has exactly one action key; the other keys are the fields of
// RuleSpec. Errors name the file, line and column of the bad value.

// ProfileError is a profile that did not parse, at a line and column of
// its file: the error of portolan's one config loader.
type ProfileError = config.Error

// ruleKeys are the keys a rule may have besides its action, in the
// order error messages list them.
var ruleKeys = []string{"from", "to", "iface", "direction", "translated", "rate", "prefix6", "group", "for", "expires", "comment"}

// actionKeys are the actions, each a key whose value is the ports.
var actionKeys = []string{"allow", "deny", "reject", "limit", "log"}

// ruleField returns the field of spec that key (one of ruleKeys) sets. A
// switch, not a map: a profile of 10,000 rules made 10,000 maps.
func ruleField(spec *RuleSpec, key string) *string {
	switch key {
	case "from":
		return &spec.From
	case "to":
		return &spec.To
	case "iface":
		return &spec.Iface
	case "direction":
		return &spec.Dir
	case "translated":
		return &spec.Translated
	case "rate":
		return &spec.Rate
	case "prefix6":
		return &spec.Prefix6
	case "group":
		return &spec.Group
	case "for":
		return &spec.For
	case "expires":
		return &spec.Expires
	case "comment":
		return &spec.Comment
	}
	panic("firewall: no rule field " + key)
}

// allRuleKeys are the keys a rule may have.
var allRuleKeys = append(slices.Clone(actionKeys), ruleKeys...)

// ParseProfile reads a profile. name is the file name for errors; names
// resolves service names (nil: numbers only); now anchors "for:".
func ParseProfile(name string, data []byte, names portspec.Resolver, now time.Time) (*Ruleset, error) {
	top, err := config.Parse(name, data, "at least a policy or rules")
	if err != nil {
		return nil, err
	}
	if !top.IsMapping() {
		return nil, top.Errorf("want a mapping with policy and rules, not %s", top.Kind())
	}
	fields, err := top.Map("policy", "policy_log", "policy_log_group", "rules", "version")
	if err != nil {
		return nil, err
	}
	rs := &Ruleset{}
	for _, f := range fields {
		v := f.Value
		switch f.Key {
		case "version":
			if s, _ := v.Scalar(); s != "1" {
				return nil, v.Errorf("%q: only version 1 is known", s)
			}
		case "policy":
			if rs.Policy, err = config.Value(v, ParsePolicy); err != nil {
				return nil, err
			}
		case "policy_log":
			if rs.PolicyLog, err = v.Bool(); err != nil {
				return nil, err
			}
		case "policy_log_group":
			if rs.PolicyLogGroup, err = config.Value(v, parseLogGroup); err != nil {
				return nil, err
			}
		case "rules":
			if v.IsNull() {
				continue
			}
			items, err := v.List()
			if err != nil {
				return nil, v.Errorf("want a list of rules, not %s", v.Kind())
			}
			rs.Rules = slices.Grow(rs.Rules, len(items))
			for j, rn := range items {
				r, err := parseProfileRule(rn.As("rule "+strconv.Itoa(j+1)), names, now)
				if err != nil {
					return nil, err
				}
				rs.Rules = append(rs.Rules, r)
			}
		}
	}
	if rs.PolicyLog && rs.Policy == PolicyAccept {
		return nil, top.Errorf("policy_log: policy accept drops nothing to log: set policy drop or reject")
	}
	if !rs.PolicyLog && rs.PolicyLogGroup != 0 {
		return nil, top.Errorf("policy_log_group without policy_log: true")
	}
	return rs, nil
}

// parseLogGroup reads an NFLOG group number.
func parseLogGroup(s string) (uint16, error) {
	g, err := strconv.ParseUint(s, 10, 16)
	if err != nil || g == 0 {
		return 0, fmt.Errorf("%q is not an NFLOG group from 1 to 65535", s)
	}
	return uint16(g), nil
}

// parseProfileRule reads one rule; rn is labelled "rule N".
func parseProfileRule(rn config.Node, names portspec.Resolver, now time.Time) (Rule, error) {
	if !rn.IsMapping() {
		return Rule{}, rn.Errorf("want a mapping like {allow: 22/tcp}, not %s", rn.Kind())
	}
	fields, err := rn.Map(allRuleKeys...)
	if err != nil {
		return Rule{}, err
	}
	var spec RuleSpec
	var action *config.Field
	for i, f := range fields {
		val, list, err := scalarOrList(f.Value)
		if err != nil {
			return Rule{}, err
		}
		if slices.Contains(actionKeys, f.Key) {
			if action != nil {
				return Rule{}, f.KeyAt.As(rn.Path()).Errorf("two actions, %s and %s: one rule has one action", action.Key, f.Key)
			}
			action = &fields[i]
			spec.Action, spec.Ports = f.Key, val
			if val == "" {
				spec.Ports = "any"
			}
			continue
		}
		if list && f.Key != "from" && f.Key != "to" {
			return Rule{}, f.Value.Errorf("want one value, not a list")
		}
		*ruleField(&spec, f.Key) = val
	}
	if action == nil {
		return Rule{}, rn.Errorf("no action (want one of %s: PORTS)", strings.Join(actionKeys, ", "))
	}
	r, err := spec.Rule(names, now)
	if err != nil {
		node := rn
		if fe, ok := errors.AsType[*FieldError](err); ok {
			if fe.Field == "ports" {
				node = action.Value
			}
			for _, f := range fields { // the value the error is about
				if f.Key == fe.Field {
					node = f.Value
				}
			}
		}
		return Rule{}, &config.Error{File: rn.Wrap(err).File, Line: node.Line(), Column: node.Column(),
			Path: rn.Path() + " (" + spec.Action + ")", Err: err}
	}
	if err := r.CheckSafety(); err != nil {
		return Rule{}, action.KeyAt.As(rn.Path()).Wrap(err)
	}
	return r, nil
}

// scalarOrList returns a value, or a list of values joined with commas,
// and whether it was a list.
func scalarOrList(v config.Node) (val string, list bool, err error) {
	if v.IsMapping() {
		return "", false, v.Errorf("want a value, not %s", v.Kind())
	}
	if s, err := v.Scalar(); err == nil {
		return s, false, nil // one value: kept whole, commas and all
	}
	ss, err := v.Strings()
	if err != nil {
		return "", false, err
	}
	return strings.Join(ss, ","), true, nil
}

// MarshalProfile writes rs as a profile that ParseProfile reads back to an
// equal Ruleset. header becomes a comment at the top.
func MarshalProfile(rs *Ruleset, header string) ([]byte, error) {
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: "!!str"} }
	top := &yaml.Node{Kind: yaml.MappingNode, HeadComment: header}
	top.Content = append(top.Content, str("policy"), str(rs.Policy.String()))
	if rs.PolicyLog {
		top.Content = append(top.Content, str("policy_log"), &yaml.Node{Kind: yaml.ScalarNode, Value: "true", Tag: "!!bool"})
		if rs.PolicyLogGroup != 0 {
			top.Content = append(top.Content, str("policy_log_group"), &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.Itoa(int(rs.PolicyLogGroup)), Tag: "!!int"})
		}
	}
	rules := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range rs.Rules {
		m := &yaml.Node{Kind: yaml.MappingNode}
		add := func(k, v string) { m.Content = append(m.Content, str(k), str(v)) }
		add(r.Action.String(), FormatPorts(r.Ports))
		list := func(k string, ps []string) {
			switch len(ps) {
			case 0:
			case 1:
				add(k, ps[0])
			default:
				seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
				for _, p := range ps {
					seq.Content = append(seq.Content, str(p))
				}
				m.Content = append(m.Content, str(k), seq)
			}
		}
		list("from", prefixStrings(r.From))
		list("to", prefixStrings(r.To))
		if r.Iface != "" {
			add("iface", r.Iface)
		}
		if r.Dir != In {
			add("direction", r.Dir.String())
		}
		if r.Translated {
			m.Content = append(m.Content, str("translated"), &yaml.Node{Kind: yaml.ScalarNode, Value: "true", Tag: "!!bool"})
		}
		if r.Action == Limit {
			add("rate", r.Rate.String())
			if r.Prefix6 != 0 {
				add("prefix6", strconv.Itoa(int(r.Prefix6)))
			}
		}
		if r.Group != 0 {
			add("group", strconv.Itoa(int(r.Group)))
		}
		if !r.Expires.IsZero() {
			add("expires", r.Expires.UTC().Format(time.RFC3339))
		}
		if r.Comment != "" {
			add("comment", r.Comment)
		}
		rules.Content = append(rules.Content, m)
	}
	top.Content = append(top.Content, str("rules"), rules)
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{top}}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	enc.Close()
	return []byte(b.String()), nil
}

package firewall

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

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

// ProfileError is a profile that did not parse, at Line:Col of File.
type ProfileError struct {
	File      string
	Line, Col int // 1-based; 0 when unknown
	Msg       string
	Err       error // the field's error, if any
}

func (e *ProfileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

func (e *ProfileError) Unwrap() error { return e.Err }

// ruleKeys are the keys a rule may have besides its action, in the
// order error messages list them.
var ruleKeys = []string{"from", "to", "iface", "direction", "translated", "rate", "prefix6", "group", "for", "expires", "comment"}

// ruleFields maps each of ruleKeys to its field of spec.
func ruleFields(spec *RuleSpec) map[string]*string {
	return map[string]*string{
		"from": &spec.From, "to": &spec.To, "iface": &spec.Iface, "direction": &spec.Dir, "translated": &spec.Translated, "rate": &spec.Rate,
		"prefix6": &spec.Prefix6,
		"group":   &spec.Group, "for": &spec.For, "expires": &spec.Expires, "comment": &spec.Comment,
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// ParseProfile reads a profile. name is the file name for errors; names
// resolves service names (nil: numbers only); now anchors "for:".
func ParseProfile(name string, data []byte, names portspec.Resolver, now time.Time) (*Ruleset, error) {
	errAt := func(n *yaml.Node, format string, args ...any) *ProfileError {
		e := &ProfileError{File: name, Msg: fmt.Sprintf(format, args...)}
		if n != nil {
			e.Line, e.Col = n.Line, n.Column
		}
		return e
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		e := &ProfileError{File: name, Msg: msg}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		return nil, e
	}
	rs := &Ruleset{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errAt(nil, "empty profile: want at least a policy or rules")
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, errAt(top, "want a mapping with policy and rules, not %s", kindName(top))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if seen[k.Value] {
			return nil, errAt(k, "%q given twice", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "version":
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				return nil, errAt(v, "version %q: only version 1 is known", v.Value)
			}
		case "policy":
			if v.Kind != yaml.ScalarNode {
				return nil, errAt(v, "policy: want accept, drop or reject, not %s", kindName(v))
			}
			p, err := ParsePolicy(v.Value)
			if err != nil {
				return nil, errAt(v, "policy: %v", err)
			}
			rs.Policy = p
		case "policy_log":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return nil, errAt(v, "policy_log: want true or false, not %q", v.Value)
			}
			rs.PolicyLog = v.Value == "true"
		case "policy_log_group":
			g, err := strconv.ParseUint(v.Value, 10, 16)
			if v.Kind != yaml.ScalarNode || err != nil || g == 0 {
				return nil, errAt(v, "policy_log_group: %q is not an NFLOG group from 1 to 65535", v.Value)
			}
			rs.PolicyLogGroup = uint16(g)
		case "rules":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				return nil, errAt(v, "rules: want a list of rules, not %s", kindName(v))
			}
			for j, rn := range v.Content {
				r, err := parseProfileRule(rn, j+1, names, now, errAt)
				if err != nil {
					return nil, err
				}
				rs.Rules = append(rs.Rules, r)
			}
		default:
			return nil, errAt(k, "unknown key %q (want policy, policy_log, policy_log_group, rules or version)", k.Value)
		}
	}
	if rs.PolicyLog && rs.Policy == PolicyAccept {
		return nil, errAt(top, "policy_log: policy accept drops nothing to log: set policy drop or reject")
	}
	if !rs.PolicyLog && rs.PolicyLogGroup != 0 {
		return nil, errAt(top, "policy_log_group without policy_log: true")
	}
	return rs, nil
}

// parseProfileRule reads rule number n.
func parseProfileRule(rn *yaml.Node, n int, names portspec.Resolver, now time.Time, errAt func(*yaml.Node, string, ...any) *ProfileError) (Rule, error) {
	if rn.Kind != yaml.MappingNode {
		return Rule{}, errAt(rn, "rule %d: want a mapping like {allow: 22/tcp}, not %s", n, kindName(rn))
	}
	var spec RuleSpec
	at := map[string]*yaml.Node{} // field -> value node, for errors
	var actionKey *yaml.Node
	for i := 0; i+1 < len(rn.Content); i += 2 {
		k, v := rn.Content[i], rn.Content[i+1]
		if _, dup := at[k.Value]; dup || (actionKey != nil && k.Value == actionKey.Value) {
			return Rule{}, errAt(k, "rule %d: %q given twice", n, k.Value)
		}
		val, err := scalarOrList(v)
		if err != nil {
			return Rule{}, errAt(v, "rule %d: %s: %v", n, k.Value, err)
		}
		if _, err := ParseAction(k.Value); err == nil {
			if actionKey != nil {
				return Rule{}, errAt(k, "rule %d: two actions, %s and %s: one rule has one action", n, actionKey.Value, k.Value)
			}
			actionKey = k
			spec.Action, spec.Ports = k.Value, val
			if val == "" {
				spec.Ports = "any"
			}
			at["ports"] = v
			continue
		}
		if k.Value != "from" && k.Value != "to" && v.Kind == yaml.SequenceNode {
			return Rule{}, errAt(v, "rule %d: %s: want one value, not a list", n, k.Value)
		}
		field := ruleFields(&spec)[k.Value]
		if field == nil {
			return Rule{}, errAt(k, "rule %d: unknown key %q (want an action: allow, deny, reject, limit or log; or one of %s)", n, k.Value, strings.Join(ruleKeys, ", "))
		}
		*field = val
		at[k.Value] = v
	}
	if actionKey == nil {
		return Rule{}, errAt(rn, "rule %d: no action (want one of allow, deny, reject, limit, log: PORTS)", n)
	}
	r, err := spec.Rule(names, now)
	if err != nil {
		var fe *FieldError
		node := rn
		if errors.As(err, &fe) {
			if v := at[fe.Field]; v != nil {
				node = v
			}
		}
		pe := errAt(node, "rule %d (%s): %v", n, spec.Action, err)
		pe.Err = err
		return Rule{}, pe
	}
	if err := r.CheckSafety(); err != nil {
		pe := errAt(actionKey, "rule %d: %v", n, err)
		pe.Err = err
		return Rule{}, pe
	}
	return r, nil
}

// scalarOrList returns a scalar's value, or a list of scalars joined with
// commas.
func scalarOrList(v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", nil
		}
		return v.Value, nil
	case yaml.SequenceNode:
		var items []string
		for _, c := range v.Content {
			if c.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("list item at line %d is %s, not a value", c.Line, kindName(c))
			}
			items = append(items, c.Value)
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("want a value, not %s", kindName(v))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
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

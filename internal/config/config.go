// Package config reads portolan's YAML configuration files (forward rules,
// firewall profiles, knock doors, watch settings) one way: every key is
// checked against the keys its mapping may have, a key given twice is
// refused (YAML would keep the last silently), and every error names the
// file, line and column of the value it is about. Values are read with the
// same parsers the command-line flags use, through Value, so a file and a
// flag can never disagree on what "5s" or "198.18.0.0/15" means.
package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem at a place in a config file.
type Error struct {
	File         string
	Line, Column int    // 1-based; 0 when unknown
	Path         string // where in the document, as "rules: #2: listen"; empty at the top
	Err          error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Node is a value of a parsed file, with its place.
type Node struct {
	file string
	path string
	y    *yaml.Node
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse reads one YAML document. An empty document is an error naming
// what the file should hold (want, as "a rules: list").
func Parse(file string, data []byte, want string) (n Node, err error) {
	// A reload must never take a daemon down: the YAML decoder has
	// panicked on odd input before.
	defer func() {
		if p := recover(); p != nil {
			n, err = Node{}, &Error{File: file, Err: fmt.Errorf("yaml: %v", p)}
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		e := &Error{File: file, Err: errors.New(strings.TrimPrefix(err.Error(), "yaml: "))}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Err = errors.New(m[2])
		}
		return Node{}, e
	}
	if len(doc.Content) == 0 {
		return Node{}, &Error{File: file, Line: 1, Err: fmt.Errorf("empty file: want %s", want)}
	}
	return Node{file: file, y: doc.Content[0]}, nil
}

// Line and Column give the node's place (1-based).
func (n Node) Line() int   { return n.y.Line }
func (n Node) Column() int { return n.y.Column }

// Path is where the node is in the document, as "rules: #2: listen".
func (n Node) Path() string { return n.path }

// As returns the node with its path replaced by label, for a name that
// says more than a position ("rule web" rather than "rules: #3"); errors
// at the node and below it use the label.
func (n Node) As(label string) Node {
	n.path = label
	return n
}

// Errorf makes an error at the node.
func (n Node) Errorf(format string, args ...any) *Error {
	return n.Wrap(fmt.Errorf(format, args...))
}

// Wrap places err at the node. An error that already has a place keeps it.
func (n Node) Wrap(err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return &Error{File: n.file, Line: n.y.Line, Column: n.y.Column, Path: n.path, Err: err}
}

// IsNull reports an empty value ("key:" with nothing after it, or null).
func (n Node) IsNull() bool {
	return n.y.Kind == yaml.ScalarNode && n.y.Tag == "!!null"
}

// IsMapping reports whether the node is a mapping.
func (n Node) IsMapping() bool { return n.y.Kind == yaml.MappingNode }

// Kind names the node's shape for messages: "a mapping", "a list", "the
// value \"x\"".
func (n Node) Kind() string {
	switch n.y.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.y.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// Lookup finds key's value in a mapping without checking the rest, for
// labels in errors (a rule's name) before the mapping is read.
func (n Node) Lookup(key string) (Node, bool) {
	if n.y.Kind != yaml.MappingNode {
		return Node{}, false
	}
	for i := 0; i+1 < len(n.y.Content); i += 2 {
		if n.y.Content[i].Value == key {
			return Node{file: n.file, path: n.child(key), y: n.y.Content[i+1]}, true
		}
	}
	return Node{}, false
}

// Field is one key of a mapping and its value.
type Field struct {
	Key   string
	KeyAt Node // the key itself, for errors about the key
	Value Node
}

// Map reads a mapping whose keys must be among known. A key given twice or
// not among known is an error at the key; an unknown key's error suggests
// the known key it is closest to. Fields come in file order.
func (n Node) Map(known ...string) ([]Field, error) {
	return n.pairs(known, true)
}

// Pairs reads a mapping whose keys are data (say server name patterns),
// not names: any key goes, but not twice.
func (n Node) Pairs() ([]Field, error) {
	return n.pairs(nil, false)
}

func (n Node) pairs(known []string, check bool) ([]Field, error) {
	if n.y.Kind != yaml.MappingNode {
		return nil, n.Errorf("want a mapping, not %s", n.Kind())
	}
	out := make([]Field, 0, len(n.y.Content)/2)
	first := map[string]int{}
	for i := 0; i+1 < len(n.y.Content); i += 2 {
		k, v := n.y.Content[i], n.y.Content[i+1]
		kn := Node{file: n.file, path: n.child(k.Value), y: k}
		if k.Kind != yaml.ScalarNode {
			return nil, kn.Errorf("want a key name, not %s", kn.Kind())
		}
		if line, dup := first[k.Value]; dup {
			return nil, kn.Errorf("given twice (first on line %d)", line)
		}
		first[k.Value] = k.Line
		if check && !slices.Contains(known, k.Value) {
			return nil, kn.As(n.path).Wrap(unknownKey(k.Value, known))
		}
		out = append(out, Field{Key: k.Value, KeyAt: kn, Value: Node{file: n.file, path: kn.path, y: v}})
	}
	return out, nil
}

func (n Node) child(key string) string {
	if n.path == "" {
		return key
	}
	return n.path + ": " + key
}

func unknownKey(key string, known []string) error {
	if s := closest(key, known); s != "" {
		return fmt.Errorf("unknown key %q (did you mean %q?)", key, s)
	}
	return fmt.Errorf("unknown key %q (want one of %s)", key, strings.Join(known, ", "))
}

// closest returns the known key within two edits of key, if any: the
// usual typo, or a flag-style name given with an underscore.
func closest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(strings.ReplaceAll(key, "_", "-"), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of two short strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// List reads a list (a YAML sequence).
func (n Node) List() ([]Node, error) {
	if n.y.Kind != yaml.SequenceNode {
		return nil, n.Errorf("want a list, not %s", n.Kind())
	}
	out := make([]Node, len(n.y.Content))
	for i, c := range n.y.Content {
		out[i] = Node{file: n.file, path: n.child("#" + strconv.Itoa(i+1)), y: c}
	}
	return out, nil
}

// Scalar reads a single value; null reads as "".
func (n Node) Scalar() (string, error) {
	if n.y.Kind != yaml.ScalarNode {
		return "", n.Errorf("want a single value, not %s", n.Kind())
	}
	if n.IsNull() {
		return "", nil
	}
	return n.y.Value, nil
}

// Strings reads a list of single values, or one value that may hold
// several separated by commas ("a:1, b:2"); spaces around each are
// dropped.
func (n Node) Strings() ([]string, error) {
	switch n.y.Kind {
	case yaml.ScalarNode:
		if n.IsNull() {
			return nil, nil
		}
		parts := strings.Split(n.y.Value, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts, nil
	case yaml.SequenceNode:
		items, _ := n.List()
		out := make([]string, 0, len(items))
		for _, it := range items {
			s, err := it.Scalar()
			if err != nil {
				return nil, err
			}
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	}
	return nil, n.Errorf("want a value or a list, not %s", n.Kind())
}

// Bool reads true/false (also yes/no, on/off, as YAML 1.1 and flags do).
func (n Node) Bool() (bool, error) {
	return Value(n, ParseBool)
}

// ParseBool is the flag parser for booleans in files.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, nil
	case "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q: want true or false", s)
}

// Value reads a single value with parse, the parser its flag uses; an error
// is placed at the value.
func Value[T any](n Node, parse func(string) (T, error)) (T, error) {
	var zero T
	s, err := n.Scalar()
	if err != nil {
		return zero, err
	}
	v, err := parse(s)
	if err != nil {
		return zero, n.Wrap(err)
	}
	return v, nil
}

// Values reads a list (or comma-separated value) with parse; an error is
// placed at the list item it is about.
func Values[T any](n Node, parse func(string) (T, error)) ([]T, error) {
	if n.y.Kind == yaml.SequenceNode {
		items, _ := n.List()
		out := make([]T, 0, len(items))
		for _, it := range items {
			v, err := Value(it, func(s string) (T, error) { return parse(strings.TrimSpace(s)) })
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	ss, err := n.Strings()
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(ss))
	for _, s := range ss {
		v, err := parse(s)
		if err != nil {
			return nil, n.Wrap(err)
		}
		out = append(out, v)
	}
	return out, nil
}

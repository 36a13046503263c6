package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// door reads a small document the way a command's loader would: a name,
// a duration, a list of prefixes and a flag.
func door(file, doc string) (name string, d time.Duration, from []netip.Prefix, on bool, err error) {
	top, err := Parse(file, []byte(doc), "a doors: list")
	if err != nil {
		return "", 0, nil, false, err
	}
	fields, err := top.Map("doors")
	if err != nil {
		return "", 0, nil, false, err
	}
	if len(fields) == 0 {
		return "", 0, nil, false, top.Errorf("no doors")
	}
	items, err := fields[0].Value.List()
	if err != nil {
		return "", 0, nil, false, err
	}
	for _, it := range items {
		fs, err := it.Map("name", "open-for", "from", "log")
		if err != nil {
			return "", 0, nil, false, err
		}
		for _, f := range fs {
			switch f.Key {
			case "name":
				name, err = f.Value.Scalar()
			case "open-for":
				d, err = Value(f.Value, time.ParseDuration)
			case "from":
				from, err = Values(f.Value, netip.ParsePrefix)
			case "log":
				on, err = f.Value.Bool()
			}
			if err != nil {
				return "", 0, nil, false, err
			}
		}
	}
	return name, d, from, on, nil
}

func TestLoaderReadsValues(t *testing.T) {
	name, d, from, on, err := door("d.yaml", "doors:\n  - name: ssh\n    open-for: 30s\n    from: [198.18.0.0/15, 'fd00::/8']\n    log: yes\n")
	if err != nil {
		t.Fatal(err)
	}
	if name != "ssh" || d != 30*time.Second || len(from) != 2 || from[1].String() != "fd00::/8" || !on {
		t.Errorf("got %q %v %v %v", name, d, from, on)
	}
	// A comma-separated value is a list too.
	_, _, from, _, err = door("d.yaml", "doors:\n  - from: 198.18.0.0/15, fd00::/8\n")
	if err != nil || len(from) != 2 {
		t.Errorf("comma list: %v %v", from, err)
	}
}

// Every error names the file, the line and column, and where in the
// document it is.
func TestLoaderErrors(t *testing.T) {
	for _, tt := range []struct{ name, doc, want string }{
		{"empty", "", "d.yaml:1: empty file: want a doors: list"},
		{"syntax", "doors: [\n", "d.yaml:1: did not find expected node content"},
		{"not a mapping", "- a\n", "d.yaml:1:1: want a mapping, not a list"},
		{"unknown top key", "door: []\n", `d.yaml:1:1: unknown key "door" (did you mean "doors"?)`},
		{"unknown key, nothing close", "doors:\n  - colour: red\n", `d.yaml:2:5: doors: #1: unknown key "colour" (want one of name, open-for, from, log)`},
		{"flag spelling", "doors:\n  - open_for: 1s\n", `d.yaml:2:5: doors: #1: unknown key "open_for" (did you mean "open-for"?)`},
		{"twice", "doors:\n  - name: a\n    name: b\n", "d.yaml:3:5: doors: #1: name: given twice (first on line 2)"},
		{"top twice", "doors: []\ndoors: []\n", "d.yaml:2:1: doors: given twice (first on line 1)"},
		{"not a list", "doors: ssh\n", `d.yaml:1:8: doors: want a list, not the value "ssh"`},
		{"bad duration", "doors:\n  - open-for: soon\n", `d.yaml:2:15: doors: #1: open-for: time: invalid duration "soon"`},
		{"list for one value", "doors:\n  - name: [a]\n", "d.yaml:2:11: doors: #1: name: want a single value, not a list"},
		{"bad prefix in list", "doors:\n  - from: [198.18.0.0/15, 10.0.0.0/40]\n", `d.yaml:2:27: doors: #1: from: #2: netip.ParsePrefix("10.0.0.0/40"): prefix length out of range`},
		{"bad bool", "doors:\n  - log: maybe\n", `d.yaml:2:10: doors: #1: log: "maybe": want true or false`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, _, err := door("d.yaml", tt.doc)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Errorf("error %T is not a *config.Error", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n  %v\nwant\n  %v", err, tt.want)
			}
		})
	}
}

func TestLookupAndAs(t *testing.T) {
	top, err := Parse("r.yaml", []byte("name: web\nport: x\n"), "a rule")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := top.Lookup("name")
	if s, _ := v.Scalar(); !ok || s != "web" {
		t.Fatalf("Lookup(name) = %q, %v", s, ok)
	}
	fs, _ := top.As("rule web").Map("name", "port")
	err = fs[1].Value.Errorf("bad")
	if got := err.Error(); got != "r.yaml:2:7: rule web: port: bad" {
		t.Errorf("error under a label: %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("doors:\n  - name: ssh\n    open-for: 30s\n    from: [198.18.0.0/15]\n")
	f.Add("doors: [\n")
	f.Add("a: &x [*x]\n")
	f.Add("- - - -\n")
	f.Fuzz(func(t *testing.T, doc string) {
		_, _, _, _, err := door("f.yaml", doc)
		if err == nil {
			return
		}
		e, ok := errors.AsType[*Error](err)
		if !ok {
			t.Fatalf("error %T is not a *config.Error: %v", err, err)
		}
		if !strings.HasPrefix(err.Error(), "f.yaml") || e.Err == nil {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

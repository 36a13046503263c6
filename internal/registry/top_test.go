package registry

import (
	"strings"
	"testing"

	"portolan/internal/portspec"
)

func TestTopLists(t *testing.T) {
	for _, tt := range []struct {
		proto portspec.Proto
		size  int
	}{{portspec.TCP, 1000}, {portspec.UDP, 100}} {
		list, err := Top(tt.proto, tt.size)
		if err != nil {
			t.Fatalf("Top(%v, %d): %v", tt.proto, tt.size, err)
		}
		if len(list) != tt.size {
			t.Errorf("Top(%v, %d) = %d entries", tt.proto, tt.size, len(list))
		}
		seen := make(map[portspec.Port]bool)
		for i, e := range list {
			if seen[e.Port] {
				t.Errorf("Top(%v) entry %d: port %d listed twice", tt.proto, i+1, e.Port)
			}
			seen[e.Port] = true
			if e.Port == 0 || e.Proto != tt.proto {
				t.Errorf("Top(%v) entry %d = %+v", tt.proto, i+1, e)
			}
			if len(strings.Fields(e.Reason)) < 2 {
				t.Errorf("Top(%v) entry %d (port %d) reason %q; want a one-line reason", tt.proto, i+1, e.Port, e.Reason)
			}
			if e.Name != Default().Name(e.Port, tt.proto) {
				t.Errorf("Top(%v) entry %d name %q; want the registry's %q", tt.proto, i+1, e.Name, Default().Name(e.Port, tt.proto))
			}
		}
	}
}

func TestTopStaples(t *testing.T) {
	staples := map[portspec.Proto][]portspec.Port{
		portspec.TCP: {21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 995, 1433, 3306, 3389, 5432, 5900, 8080, 8443},
		portspec.UDP: {53, 67, 69, 123, 137, 161, 500, 514, 1900, 5353},
	}
	for proto, ports := range staples {
		list, err := Top(proto, 100)
		if err != nil {
			t.Fatal(err)
		}
		in := make(map[portspec.Port]bool)
		for _, e := range list {
			in[e.Port] = true
		}
		for _, p := range ports {
			if !in[p] {
				t.Errorf("%d/%v missing from the top 100", p, proto)
			}
		}
	}
}

func TestTopPrefix(t *testing.T) {
	ten, err := Top(portspec.TCP, 10)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := Top(portspec.TCP, 1000)
	for i := range ten {
		if ten[i] != all[i] {
			t.Errorf("Top(tcp, 10)[%d] = %+v; want %+v (the first n of the list)", i, ten[i], all[i])
		}
	}
	if ten[0].Port != 80 || ten[0].Name != "http" {
		t.Errorf("Top(tcp, 10)[0] = %+v; want port 80 named http", ten[0])
	}
	// Callers may append to what they get without touching the shared list.
	_ = append(ten, TopEntry{Port: 1})
	if again, _ := Top(portspec.TCP, 11); again[10].Port == 1 {
		t.Error("append to Top's result changed the shared list")
	}
}

func TestTopErrors(t *testing.T) {
	tests := []struct {
		proto portspec.Proto
		n     int
		want  string
	}{
		{portspec.TCP, 0, "top 0 tcp ports: want 1 to 1000"},
		{portspec.TCP, 1001, "top 1001 tcp ports: want 1 to 1000"},
		{portspec.UDP, 101, "top 101 udp ports: want 1 to 100"},
		{portspec.UDP, -1, "top -1 udp ports: want 1 to 100"},
		{portspec.SCTP, 10, "top ports for sctp: no list"},
		{0, 10, "no list"},
	}
	for _, tt := range tests {
		_, err := Top(tt.proto, tt.n)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Top(%v, %d) error = %v; want %q", tt.proto, tt.n, err, tt.want)
		}
	}
}

var topParseCases = []struct {
	name, in string
	want     string // error text, "" for success
	count    int
}{
	{"ok", "# comment\n\n22\tSSH remote administration\n80 HTTP web servers\n", "", 2},
	{"not a number", "ssh\tSecure shell\n", `top.tsv line 1: "ssh" is not a port in 1-65535`, 0},
	{"zero", "0\tnothing\n", `top.tsv line 1: "0" is not a port in 1-65535`, 0},
	{"too big", "70000\tnothing\n", `top.tsv line 1: "70000" is not a port in 1-65535`, 0},
	{"duplicate", "22\tSSH\n# x\n22\tSSH again\n", "top.tsv line 3: port 22 already on line 1", 0},
	{"no reason", "22\n", "top.tsv line 1: port 22 has no reason", 0},
	{"blank reason", "22\t  \n", "top.tsv line 1: port 22 has no reason", 0},
}

func TestParseTop(t *testing.T) {
	for _, tt := range topParseCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTop("top.tsv", tt.in, portspec.TCP)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("parseTop(%q) error = %v", tt.in, err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("parseTop(%q) error = %v; want %q", tt.in, err, tt.want)
			case len(got) != tt.count:
				t.Errorf("parseTop(%q) = %d entries; want %d", tt.in, len(got), tt.count)
			}
		})
	}
}

func FuzzParseTop(f *testing.F) {
	for _, tt := range topParseCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		list, err := parseTop("fuzz.tsv", in, portspec.UDP)
		if err != nil {
			return
		}
		seen := make(map[portspec.Port]bool)
		for _, e := range list {
			if e.Port == 0 || seen[e.Port] || strings.TrimSpace(e.Reason) == "" {
				t.Fatalf("parseTop(%q) accepted %+v", in, e)
			}
			seen[e.Port] = true
		}
	})
}

package scanjob

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// decodeCases are stored recipes, of version 1 (the scan command's flags as
// JSON, as portolan stored them before recipes had a type) and 2.
var decodeCases = []struct {
	name, in string
	want     Recipe
	err      string
}{
	{"v1 connect", `{"targets":["198.18.0.1"],"target_flags":{"max_hosts":16777216},"ports":"22,80","scan_type":"T","retries":-1,"max_timeout":1250000000,"no_host_down":true,"seed":42}`,
		Recipe{Version: 2, Targets: []string{"198.18.0.1"}, Select: TargetSelect{MaxHosts: 16777216}, Ports: "22,80", Prober: "connect",
			Retries: -1, MaxTimeout: 1250 * time.Millisecond, AssumeUp: true, Seed: 42}, ""},
	{"v1 Go-cased target flags, default type", `{"targets":null,"target_flags":{"InputLists":["hosts.txt"],"MaxHosts":5,"Force":true},"scan_type":"","top_ports":100,"seed":1}`,
		Recipe{Version: 2, Select: TargetSelect{InputLists: []string{"hosts.txt"}, MaxHosts: 5, Force: true}, TopPorts: 100, Seed: 1}, ""},
	{"v1 -sn", `{"targets":["198.18.0.0/24"],"scan_type":"n","seed":3}`,
		Recipe{Version: 2, Targets: []string{"198.18.0.0/24"}, Prober: "connect", DiscoveryOnly: true, Seed: 3}, ""},
	{"v1 -sU and -sS", `{"scan_type":"U","seed":3}`, Recipe{Version: 2, Prober: "udp", Seed: 3}, ""},
	{"v1 source flags", `{"scan_type":"S","iface":"eth1","source":"198.18.0.11","source_port":53,"min_rate":500,"seed":3}`,
		Recipe{Version: 2, Prober: "syn", MinRate: 500, Local: scan.Local{Iface: "eth1", Addr: netip.MustParseAddr("198.18.0.11"), Port: 53}, Seed: 3}, ""},
	{"v2", `{"version":2,"targets":["fd00::1"],"target_flags":{},"prober":"syn","local":{"port":53},"names":{"fd00::1":"db"},"seed":9,"shard":"1/2","scan_id":"weekly"}`,
		Recipe{Version: 2, Targets: []string{"fd00::1"}, Prober: "syn", Local: scan.Local{Port: 53},
			Names: map[netip.Addr]string{netip.MustParseAddr("fd00::1"): "db"}, Seed: 9, Shard: "1/2", Name: "weekly"}, ""},
	{"newer version", `{"version":3}`, Recipe{}, "version 3 is newer"},
	{"bad scan type", `{"scan_type":"X"}`, Recipe{}, `scan type "X"`},
	{"bad source", `{"source":"nope"}`, Recipe{}, "source address"},
	{"not JSON", `{"targets":`, Recipe{}, "scan recipe: unexpected end"},
}

func TestDecodeRecipe(t *testing.T) {
	for _, c := range decodeCases {
		got, err := DecodeRecipe([]byte(c.in))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: DecodeRecipe(%s) = %v; want an error with %q", c.name, c.in, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: DecodeRecipe(%s): %v", c.name, c.in, err)
		case !reflect.DeepEqual(got, c.want):
			t.Errorf("%s: DecodeRecipe(%s) =\n%+v; want\n%+v", c.name, c.in, got, c.want)
		}
		if err != nil {
			continue
		}
		b, err := got.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRecipe(b)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: DecodeRecipe(Encode(r)) = %+v, %v; want %+v", c.name, again, err, got)
		}
	}
}

// FuzzDecodeRecipe: no input panics, and whatever decodes encodes to a
// recipe that decodes to the same encoding.
func FuzzDecodeRecipe(f *testing.F) {
	for _, c := range decodeCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := DecodeRecipe([]byte(in))
		if err != nil {
			return
		}
		b, err := r.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", r, err)
		}
		r2, err := DecodeRecipe(b)
		if err != nil {
			t.Fatalf("DecodeRecipe(%s): %v", b, err)
		}
		b2, _ := r2.Encode()
		if string(b) != string(b2) {
			t.Fatalf("round trip: %s became %s", b, b2)
		}
	})
}

func TestRecipePorts(t *testing.T) {
	parser := portspec.Parser{}
	for _, c := range []struct {
		name  string
		r     Recipe
		n     int
		text  string
		part  string // of a PortError
		proto portspec.Proto
	}{
		{"spec", Recipe{Ports: "22,80-82"}, 4, "-p 22,80-82", "", portspec.TCP},
		{"all", Recipe{Ports: "-"}, 65535, "-p-", "", portspec.TCP},
		{"default top 1000", Recipe{}, 1000, "--top-ports 1000", "", portspec.TCP},
		{"top beyond the list", Recipe{TopPorts: 2000}, 2000, "--top-ports 2000", "", portspec.TCP},
		{"udp spec", Recipe{Prober: "udp", Ports: "53"}, 1, "-p 53", "", portspec.UDP},
		{"excluded", Recipe{Ports: "20-30", ExcludePorts: "25"}, 10, "-p 20-30 --exclude-ports 25", "", portspec.TCP},
		{"discovery only", Recipe{DiscoveryOnly: true}, 1, "-sn", "", portspec.TCP},
		{"udp port in a connect scan", Recipe{Ports: "U:53"}, 0, "", "ports", 0},
		{"nothing left", Recipe{Ports: "22", ExcludePorts: "22"}, 0, "", "exclude-ports", 0},
		{"bad spec", Recipe{Ports: "70000"}, 0, "", "ports", 0},
	} {
		set, err := c.r.PortSet(parser)
		var pe *PortError
		switch {
		case c.part != "":
			if !errors.As(err, &pe) || pe.Part != c.part {
				t.Errorf("%s: PortSet = %v; want a PortError of %s", c.name, err, c.part)
			}
			continue
		case err != nil:
			t.Errorf("%s: PortSet: %v", c.name, err)
			continue
		}
		if set.Len() != c.n || set.Protos()[0] != c.proto {
			t.Errorf("%s: PortSet has %d ports of %v; want %d of %v", c.name, set.Len(), set.Protos(), c.n, c.proto)
		}
		if got := c.r.PortText(); got != c.text {
			t.Errorf("%s: PortText = %q; want %q", c.name, got, c.text)
		}
	}
}

func TestRecipeCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Recipe
		err  string
	}{
		{"zero", Recipe{}, ""},
		{"negative rate", Recipe{Rate: -1}, "must not be negative"},
		{"floor above the cap", Recipe{Rate: 10, MinRate: 100}, "above the rate cap"},
		{"floor without a cap", Recipe{MinRate: 100}, ""},
		{"timeouts crossed", Recipe{MinTimeout: time.Second, MaxTimeout: time.Millisecond}, "longer than"},
		{"discovery only, no discovery", Recipe{DiscoveryOnly: true, AssumeUp: true}, "nothing to do"},
		{"discovery only with ports", Recipe{DiscoveryOnly: true, Ports: "22"}, "scans no ports"},
		{"spec and top", Recipe{Ports: "22", TopPorts: 5}, "exclude each other"},
	} {
		err := c.r.Check()
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: Check() = %v; want %q", c.name, err, c.err)
		}
	}
}

// TestRecipeScanner: the engine gets the recipe's prober by name and
// knobs; a source address or interface drops the ICMP echo of discovery,
// which could not leave from them.
func TestRecipeScanner(t *testing.T) {
	r := Recipe{Prober: "udp", Rate: 100, MinRate: 50, Retries: 2, Seed: 7, Shard: "2/4", Banner: true}
	s, err := r.Scanner()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Prober.(scan.UDPProber); !ok || s.Rate != 100 || s.MinRate != 50 || s.Retries != 2 || s.Seed != 7 ||
		s.Shard != (scan.Shard{Index: 2, Count: 4}) || s.Banners == nil || s.Pinger == nil {
		t.Errorf("Scanner() = %+v", s)
	}
	r = Recipe{Local: scan.Local{Addr: netip.MustParseAddr("198.18.0.11")}}
	if s, err := r.Scanner(); err != nil || s.Pinger != nil || s.Prober != (scan.ConnectProber{Local: r.Local}) {
		t.Errorf("Scanner() with -S = %+v, %v; want a connect prober from it, no pinger", s, err)
	}
	if _, err := (Recipe{Prober: "xmas"}).Scanner(); !errors.Is(err, scan.ErrUnsupported) {
		t.Errorf("Scanner() of prober xmas: %v; want ErrUnsupported", err)
	}
	if _, err := (Recipe{Shard: "5/4"}).Scanner(); err == nil {
		t.Error("Scanner() of shard 5/4: no error")
	}
}

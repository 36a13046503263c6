package firewall

import (
	"hash/maphash"
	"net/netip"
	"reflect"
	"testing"
)

// TestKruleDigest: the kernel rules of every round-trip case hash the same
// when compiled twice, and changing any one field of a rule changes its
// digest. A field added to krule without a case here fails the test.
func TestKruleDigest(t *testing.T) {
	seed := maphash.MakeSeed()
	for name, rs := range roundTripCases(t) {
		rs := rs.Clone()
		assignIDs(rs)
		a, err := compile(rs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := compile(rs.Clone())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range a.rules {
			if a.rules[i].digest(seed) != b.rules[i].digest(seed) {
				t.Errorf("%s: rule %d compiled twice hashes differently", name, i)
			}
		}
	}
	base := krule{dir: In, kind: kindRule, id: 7, verdict: vAccept, protos: []uint8{6}, ports: []portRange{{22, 22}},
		meter: &meter{set: "limit_7_v4", rate: 6, unit: 60, burst: 6}}
	a6 := netip.MustParseAddr("fd00::1")
	changes := map[string]func(k *krule){
		"dir":       func(k *krule) { k.dir = Out },
		"kind":      func(k *krule) { k.kind = kindBase },
		"id":        func(k *krule) { k.id = 8 },
		"expires":   func(k *krule) { k.expires = 1 },
		"comment":   func(k *krule) { k.comment = "x" },
		"iface":     func(k *krule) { k.iface = "eth0" },
		"iif":       func(k *krule) { k.iif = 1 },
		"expireSet": func(k *krule) { k.expireSet = "expire_7" },
		"family":    func(k *krule) { k.family = 6 },
		"saddr":     func(k *krule) { k.saddr = []addrRange{{a6, a6}} },
		"daddr":     func(k *krule) { k.daddr = []addrRange{{a6, a6}} },
		"hopLimit":  func(k *krule) { k.hopLimit = 255 },
		"protos":    func(k *krule) { k.protos = []uint8{17} },
		"ports":     func(k *krule) { k.ports = []portRange{{22, 23}} },
		"origPorts": func(k *krule) { k.origPorts = true },
		"icmpTypes": func(k *krule) { k.icmpTypes = []uint8{135} },
		"ctState":   func(k *krule) { k.ctState = ctEstablished },
		"meter":     func(k *krule) { k.meter = &meter{set: "limit_7_v4", rate: 6, unit: 60, burst: 7} },
		"notIn":     func(k *krule) { k.notIn = &meter{set: "limit_7_v4"} },
		"logLimit":  func(k *krule) { k.logLimit = true },
		"logGroup":  func(k *krule) { k.logGroup = 3 },
		"logPrefix": func(k *krule) { k.logPrefix = "x" },
		"verdict":   func(k *krule) { k.verdict = vDrop },
	}
	if n := reflect.TypeFor[krule]().NumField(); n != len(changes) {
		t.Fatalf("krule has %d fields and the test changes %d: add the new ones to digest and here", n, len(changes))
	}
	for field, change := range changes {
		k := base
		k.meter = &meter{set: "limit_7_v4", rate: 6, unit: 60, burst: 6}
		change(&k)
		if k.digest(seed) == base.digest(seed) {
			t.Errorf("changing %s leaves the digest as it was", field)
		}
	}
}

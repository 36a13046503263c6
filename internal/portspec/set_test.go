package portspec

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSetZeroValue(t *testing.T) {
	var s Set
	if s.Len() != 0 || s.Has(TCP, 0) || s.Protos() != nil || s.Ports(UDP) != nil || s.String() != "" {
		t.Errorf("zero Set is not empty: Len %d, String %q", s.Len(), s.String())
	}
	s.Remove(TCP, 80) // must not allocate or panic
	s.RemoveRange(UDP, 1, 100)
	if s.bits != [3]*bitmap{} {
		t.Errorf("Remove on an empty set allocated bitmaps")
	}
	var nilSet *Set
	if nilSet.Len() != 0 || nilSet.Has(TCP, 1) || nilSet.String() != "" || !nilSet.Equal(&s) {
		t.Errorf("nil *Set does not read as empty")
	}
}

func TestSetBasics(t *testing.T) {
	var s Set
	s.Add(TCP, 22)
	s.Add(TCP, 22)
	s.AddRange(TCP, 8000, 8100)
	s.Add(UDP, 53)
	s.Add(SCTP, 0)
	s.Add(SCTP, 65535)

	checks := []struct {
		name string
		got  any
		want any
	}{
		{"Len", s.Len(), 1 + 101 + 1 + 2},
		{"LenProto(TCP)", s.LenProto(TCP), 102},
		{"LenProto(DCCP)", s.LenProto(DCCP), 0},
		{"Has(TCP, 8050)", s.Has(TCP, 8050), true},
		{"Has(UDP, 22)", s.Has(UDP, 22), false},
		{"Has(DCCP, 22)", s.Has(DCCP, 22), false},
		{"Protos", s.Protos(), []Proto{TCP, UDP, SCTP}},
		{"Ports(SCTP)", s.Ports(SCTP), []Port{0, 65535}},
		{"String", s.String(), "T:22,8000-8100,U:53,S:0,65535"},
		{"LenRange(TCP, 0, 8000)", s.LenRange(TCP, 0, 8000), 2},
		{"LenRange(TCP, Registered)", s.LenRange(TCP, 1024, 49151), 101},
		{"LenRange(TCP, reversed)", s.LenRange(TCP, 9000, 10), 0},
	}
	for _, c := range checks {
		if !equalAny(c.got, c.want) {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}

	s.RemoveRange(TCP, 8001, 8099)
	s.Remove(SCTP, 0)
	s.Remove(SCTP, 0)
	if got, want := s.String(), "T:22,8000,8100,U:53,S:65535"; got != want {
		t.Errorf("after removals String() = %q; want %q", got, want)
	}
	if got := s.Len(); got != 5 {
		t.Errorf("after removals Len() = %d; want 5", got)
	}
}

func equalAny(a, b any) bool {
	switch a := a.(type) {
	case []Proto:
		return slices.Equal(a, b.([]Proto))
	case []Port:
		return slices.Equal(a, b.([]Port))
	}
	return a == b
}

func TestSetAddPanicsOnDCCP(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("Add(DCCP, 1) did not panic")
		}
	}()
	var s Set
	s.Add(DCCP, 1)
}

func TestSetEach(t *testing.T) {
	var s Set
	s.Add(UDP, 53)
	s.Add(TCP, 443)
	s.Add(TCP, 22)
	s.AddRange(SCTP, 65534, 65535)
	type pair struct {
		proto Proto
		port  Port
	}
	var got []pair
	for proto, p := range s.All() {
		got = append(got, pair{proto, p})
	}
	want := []pair{{TCP, 22}, {TCP, 443}, {UDP, 53}, {SCTP, 65534}, {SCTP, 65535}}
	if !slices.Equal(got, want) {
		t.Errorf("All() = %v; want %v", got, want)
	}
	got = got[:0]
	s.Each(func(proto Proto, p Port) bool {
		got = append(got, pair{proto, p})
		return len(got) < 3
	})
	if !slices.Equal(got, want[:3]) {
		t.Errorf("Each stopping after 3 = %v; want %v", got, want[:3])
	}
}

func TestSetEqualCloneAddSet(t *testing.T) {
	var a, b Set
	a.AddRange(TCP, 1, 100)
	b.AddRange(TCP, 1, 100)
	b.Add(UDP, 7)
	b.Remove(UDP, 7) // allocated but empty: still equal
	if !a.Equal(&b) || !b.Equal(&a) {
		t.Errorf("%q.Equal(%q) = false; want true", a.String(), b.String())
	}
	c := a.Clone()
	c.Add(TCP, 200)
	if a.Has(TCP, 200) {
		t.Errorf("Clone shares bitmaps with its source")
	}
	if a.Equal(c) {
		t.Errorf("%q.Equal(%q) = true; want false", a.String(), c.String())
	}
	var u Set
	u.Add(UDP, 53)
	u.AddSet(c)
	if got, want := u.String(), "T:1-100,200,U:53"; got != want {
		t.Errorf("AddSet: got %q; want %q", got, want)
	}
	u.RemoveSet(&a)
	if got, want := u.String(), "T:200,U:53"; got != want || u.Len() != 2 {
		t.Errorf("RemoveSet: got %q (Len %d); want %q", got, u.Len(), want)
	}
}

func TestSetText(t *testing.T) {
	var s Set
	if err := s.UnmarshalText([]byte("T:22,80,U:53")); err != nil {
		t.Fatal(err)
	}
	b, _ := s.MarshalText()
	if string(b) != "T:22,80,U:53" {
		t.Errorf("MarshalText = %q; want %q", b, "T:22,80,U:53")
	}
	if err := s.UnmarshalText([]byte("ssh")); err == nil {
		t.Errorf("UnmarshalText(ssh) = nil; want an error (no registry)")
	}
}

// TestSetModel checks the bitmap set against a map through random
// operations, including ranges that cross and align with word edges.
func TestSetModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	model := map[Proto]map[Port]bool{TCP: {}, UDP: {}, SCTP: {}}
	var s Set
	randPort := func() Port {
		if r.IntN(4) == 0 { // near word edges
			return Port(r.IntN(1024)*64 + r.IntN(3) - 1)
		}
		return Port(r.IntN(65536))
	}
	for i := range 3000 {
		proto := Protos[r.IntN(3)]
		lo := randPort()
		hi := lo
		if r.IntN(2) == 0 {
			hi = lo + Port(r.IntN(300))
			if hi < lo {
				hi = 65535
			}
		}
		add := r.IntN(3) > 0
		if add {
			s.AddRange(proto, lo, hi)
		} else {
			s.RemoveRange(proto, lo, hi)
		}
		for p := int(lo); p <= int(hi); p++ {
			if add {
				model[proto][Port(p)] = true
			} else {
				delete(model[proto], Port(p))
			}
		}
		if i%100 != 0 {
			continue
		}
		for _, proto := range Protos {
			if s.LenProto(proto) != len(model[proto]) {
				t.Fatalf("step %d: LenProto(%v) = %d; want %d", i, proto, s.LenProto(proto), len(model[proto]))
			}
			var want []Port
			for p := range model[proto] {
				want = append(want, p)
			}
			slices.Sort(want)
			if got := s.Ports(proto); !slices.Equal(got, want) {
				t.Fatalf("step %d: Ports(%v) differs from the model", i, proto)
			}
			a, b := randPort(), randPort()
			n := 0
			for p := range model[proto] {
				if p >= a && p <= b {
					n++
				}
			}
			if got := s.LenRange(proto, a, b); got != n {
				t.Fatalf("step %d: LenRange(%v, %d, %d) = %d; want %d", i, proto, a, b, got, n)
			}
		}
		back, err := Parse(s.String())
		if s.Len() > 0 && (err != nil || !back.Equal(&s)) {
			t.Fatalf("step %d: Parse(String()) does not round-trip: %v", i, err)
		}
	}
}

// TestSetSpansModel checks sets of a few runs, kept as lists, and their
// move into bitmaps past maxSpans runs, against a map: random ranges near
// each other so that they merge, split and grow past the list's limit,
// with AddSet, RemoveSet and Equal across both forms.
func TestSetSpansModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	type model = map[Port]bool
	toSet := func(m model) *Set {
		var s Set
		for p := range m {
			s.Add(TCP, p)
		}
		return &s
	}
	check := func(step int, what string, s *Set, m model) {
		t.Helper()
		var want []Port
		for p := range m {
			want = append(want, p)
		}
		slices.Sort(want)
		if got := s.Ports(TCP); !slices.Equal(got, want) || s.LenProto(TCP) != len(want) {
			t.Fatalf("step %d (%s): Ports(TCP) = %v (Len %d); want %v", step, what, got, s.LenProto(TCP), want)
		}
		for p := Port(0); p < 70; p++ {
			if s.Has(TCP, p) != m[p] {
				t.Fatalf("step %d (%s): Has(TCP, %d) = %v; want %v", step, what, p, !m[p], m[p])
			}
		}
		if n := s.LenRange(TCP, 10, 40); n != s.Clone().LenRange(TCP, 10, 40) {
			t.Fatalf("step %d (%s): LenRange differs in a clone", step, what)
		}
		if want := toSet(m); !s.Equal(want) || !want.Equal(s) {
			t.Fatalf("step %d (%s): %q is not Equal to %q", step, what, s, want)
		}
		// A bitmap holding the same ports is Equal both ways.
		var big Set
		big.AddSet(s)
		for p := Port(1000); p < 1040; p += 2 {
			big.Add(TCP, p)
		}
		big.RemoveRange(TCP, 1000, 1040)
		if !big.Equal(s) || !s.Equal(&big) {
			t.Fatalf("step %d (%s): a bitmap of %q is not Equal to it", step, what, s)
		}
	}
	for round := range 200 {
		var s Set
		m := model{}
		for i := range 30 {
			lo := Port(r.IntN(60))
			hi := lo + Port(r.IntN(4))
			o := model{}
			var os Set
			for p := lo; p <= hi; p++ {
				o[p] = true
			}
			os.AddRange(TCP, lo, hi)
			if r.IntN(5) == 0 { // the other set as a bitmap
				os.AddRange(TCP, 2000, 2000+2*maxSpans)
				for p := Port(2001); p < 2000+2*maxSpans; p += 2 {
					os.Remove(TCP, p)
				}
				os.RemoveRange(TCP, 2000, 2000+2*maxSpans)
			}
			switch r.IntN(4) {
			case 0:
				s.AddRange(TCP, lo, hi)
				maps.Copy(m, o)
			case 1:
				s.RemoveRange(TCP, lo, hi)
				for p := range o {
					delete(m, p)
				}
			case 2:
				s.AddSet(&os)
				maps.Copy(m, o)
			case 3:
				s.RemoveSet(&os)
				for p := range o {
					delete(m, p)
				}
			}
			check(round*100+i, "", &s, m)
		}
		s.RemoveSet(&s)
		check(round, "RemoveSet of itself", &s, model{})
	}
}

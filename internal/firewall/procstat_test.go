package firewall

import "testing"

var statCases = []struct {
	in   string
	comm string
	ppid int
	ok   bool
}{
	{"1234 (sshd) S 1 1234 1234 0 -1 4194560", "sshd", 1, true},
	{"77 (sshd-session) S 76 77 77 0", "sshd-session", 76, true},
	{"9 (a (b) c) R 8 9", "a (b) c", 8, true},
	{"9 (x) R", "", 0, false},
	{"9 x R 8", "", 0, false},
	{"9 (x) R -3", "", 0, false},
	{"", "", 0, false},
}

func TestParseStat(t *testing.T) {
	for _, tt := range statCases {
		comm, ppid, err := parseStat("stat", []byte(tt.in))
		if (err == nil) != tt.ok || comm != tt.comm || ppid != tt.ppid {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, ok %v", tt.in, comm, ppid, err, tt.comm, tt.ppid, tt.ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, tt := range statCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		comm, ppid, err := parseStat("stat", []byte(s))
		if err == nil && ppid < 0 {
			t.Errorf("parseStat(%q) = %q, %d: negative pid", s, comm, ppid)
		}
	})
}

package knock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var oneTimeCases = []struct {
	name  string
	in    string
	seqs  []string
	lines []int
	err   string
}{
	{"two", "7000,8000/udp,9000\n7100,7200/udp\n", []string{"7000,8000/udp,9000", "7100,7200/udp"}, []int{1, 2}, ""},
	{"comments and used", "# for the laptop\n#used 2026-12-07T19:00:00Z 1,2,3\n\n  4,5,6\n", []string{"4,5,6"}, []int{4}, ""},
	{"empty", "", nil, nil, ""},
	{"bad port", "1,2\n  3,x\n", nil, nil, `s.txt:2:3: sequence "3,x": column 3: "x" is not a port`},
	{"bad proto", "1/icmp\n", nil, nil, `s.txt:1:1: sequence "1/icmp": column 3: protocol "icmp"`},
	{"too long", strings.Repeat("1,", 32) + "1\n", nil, nil, "s.txt:1:1: sequence of 33 knocks; at most 32"},
}

func TestParseOneTime(t *testing.T) {
	for _, tc := range oneTimeCases {
		ot, err := ParseOneTime("s.txt", []byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("%s: ParseOneTime = %v; want an error starting %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: ParseOneTime: %v", tc.name, err)
		}
		var got []string
		for _, s := range ot.Seqs {
			got = append(got, FormatSequence(s))
		}
		if !cmp.Equal(got, tc.seqs) || !cmp.Equal(ot.Lines, tc.lines) {
			t.Errorf("%s: ParseOneTime = %q at lines %v; want %q at %v", tc.name, got, ot.Lines, tc.seqs, tc.lines)
		}
	}
}

func FuzzParseOneTime(f *testing.F) {
	for _, tc := range oneTimeCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ot, err := ParseOneTime("f.txt", []byte(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.txt:") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if len(ot.Seqs) != len(ot.Lines) {
			t.Fatalf("%d sequences, %d lines", len(ot.Seqs), len(ot.Lines))
		}
		for _, s := range ot.Seqs {
			if len(s) == 0 || len(s) > maxSequence {
				t.Fatalf("sequence of %d knocks", len(s))
			}
		}
	})
}

// TestMarkUsed comments out the used line, keeps the file's mode, and
// refuses a line that no longer holds the sequence.
func TestMarkUsed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssh.sequences")
	if err := os.WriteFile(path, []byte("# laptop\n7000,8000/udp\n9000\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	seq, _ := ParseSequence("7000,8000/udp")
	now := time.Date(2026, 12, 7, 19, 50, 0, 0, time.UTC)
	if err := markUsed(path, 2, seq, now); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "# laptop\n#used 2026-12-07T19:50:00Z 7000,8000/udp\n9000\n"; string(b) != want {
		t.Errorf("file after markUsed:\n%s\nwant\n%s", b, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v after markUsed; want 0640", st.Mode().Perm())
	}
	if err := markUsed(path, 2, seq, now); err == nil || !strings.Contains(err.Error(), "no longer holds 7000,8000/udp") {
		t.Errorf("markUsed of a used line = %v; want it refused", err)
	}
	if err := markUsed(path, 9, seq, now); err == nil {
		t.Error("markUsed of line 9 of 4: no error")
	}
}

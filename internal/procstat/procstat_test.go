package procstat

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

var cases = []struct {
	name    string
	in      string
	want    Stat
	wantErr string
}{
	{"plain", "1234 (nginx) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5555 1000 100",
		Stat{PID: 1234, Comm: "nginx", State: 'S', PPID: 1, Flags: 4194560, StartTicks: 5555}, ""},
	{"kthread", "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0",
		Stat{PID: 2, Comm: "kthreadd", State: 'S', Flags: 2129984, StartTicks: 2}, ""},
	{"name with spaces and parens", "77 (a) b (c) R 5 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0",
		Stat{PID: 77, Comm: "a) b (c", State: 'R', PPID: 5, StartTicks: 99}, ""},
	{"newline", "8 (x) Z 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0\n", Stat{PID: 8, Comm: "x", State: 'Z', PPID: 1, StartTicks: 42}, ""},
	{"empty", "", Stat{}, "no ')'"},
	{"no paren", "77 a R 5", Stat{}, "no ')'"},
	{"bad pid", "x7 (a) R 5 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", Stat{}, `field 1 (pid) "x7"`},
	{"short", "7 (x) S 1 2 3", Stat{}, "4 fields after the command name at offset 5"},
	{"bad state", "7 (x) Sx 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", Stat{}, `field 3 (state) "Sx"`},
	{"bad ppid", "77 (a) R x 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", Stat{}, `field 4 (parent pid) "x"`},
	{"bad start", "7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 soon 0", Stat{}, `field 22 (start time) "soon"`},
}

func TestParse(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.in))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "proc stat ") {
					t.Errorf("Parse(%q) = %+v, %v; want error with %q", c.in, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			}
		})
	}
}

func TestReadSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	st, err := Read(os.Getpid())
	if err != nil || st.PID != os.Getpid() || st.PPID != os.Getppid() || st.StartTicks == 0 || st.Flags&FlagKthread != 0 {
		t.Errorf("Read(self) = %+v, %v; want this process, parent %d, a start time, not a kernel thread", st, err, os.Getppid())
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Parse(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "proc stat ") {
				t.Fatalf("Parse(%q) error %q does not name the input", b, err)
			}
			return
		}
		if st.PID < 0 || st.PPID < 0 {
			t.Fatalf("Parse(%q) = %+v: negative pid", b, st)
		}
	})
}

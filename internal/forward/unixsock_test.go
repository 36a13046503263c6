package forward

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

var unixAddrCases = []struct {
	in, want, err string
}{
	{in: "unix:/run/app.sock", want: "/run/app.sock"},
	{in: "unix:rel.sock", want: "rel.sock"},
	{in: "unix:@portolan", want: "@portolan"},
	{in: "unix:", err: `"unix:": empty path after unix: (at 5)`},
	{in: "unix:@", err: `"unix:@": empty path after unix: (at 6)`},
	{in: "unix:/a\x00b", err: `NUL byte at 7`},
	{in: "unix:/run/", err: `a directory`},
	{in: "unix:/" + strings.Repeat("a", 107), err: "path of 108 bytes: at most 107"},
	{in: "/run/app.sock", err: "want unix:PATH or unix:@NAME"},
}

func TestParseUnixAddr(t *testing.T) {
	for _, tc := range unixAddrCases {
		got, err := ParseUnixAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseUnixAddr(%q) = %q, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseUnixAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseUnixAddr(f *testing.F) {
	for _, tc := range unixAddrCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		path, err := ParseUnixAddr(in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), strconv.Quote(in)) {
				t.Fatalf("ParseUnixAddr(%q) error %q does not name the input", in, err)
			}
			return
		}
		if unixPrefix+path != in || path == "" || len(path) > maxUnixPath || strings.ContainsRune(path, 0) {
			t.Fatalf("ParseUnixAddr(%q) = %q: accepted a bad path", in, path)
		}
	})
}

func TestParseUnixModeAndOwner(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want os.FileMode
		err  string
	}{
		{in: "0660", want: 0o660},
		{in: "600", want: 0o600},
		{in: "0", err: "from 0001 to 0777"},
		{in: "1777", err: "from 0001 to 0777"},
		{in: "rw", err: `"rw": want octal`},
		{in: "0689", err: "want octal"},
	} {
		got, err := ParseUnixMode(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseUnixMode(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("ParseUnixMode(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in       string
		uid, gid int
		err      string
	}{
		{in: "65534", uid: 65534, gid: -1},
		{in: "65534:65534", uid: 65534, gid: 65534},
		{in: "root:0", uid: 0, gid: 0},
		{in: ":0", uid: -1, gid: 0},
		{in: "", err: "want USER[:GROUP]"},
		{in: "0:", err: "empty group after : (at 2)"},
		{in: "no-such-user-portolan", err: `user "no-such-user-portolan": no such name`},
		{in: "0:no-such-group-portolan", err: `group "no-such-group-portolan": no such name`},
	} {
		uid, gid, err := ParseUnixOwner(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseUnixOwner(%q) = %d, %d, %v; want error with %q", tc.in, uid, gid, err, tc.err)
			}
		} else if err != nil || uid != tc.uid || gid != tc.gid {
			t.Errorf("ParseUnixOwner(%q) = %d, %d, %v; want %d, %d", tc.in, uid, gid, err, tc.uid, tc.gid)
		}
	}
}

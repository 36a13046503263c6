package owners

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const cid = "4b1d4c1e8f3a0c7d2e5b6a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d"

var cgroupCases = []struct {
	path string
	want Cgroup
}{
	{"/", Cgroup{}},
	{"/init.scope", Cgroup{Unit: "init.scope"}},
	{"/system.slice/nginx.service", Cgroup{Unit: "nginx.service"}},
	{"/user.slice/user-1000.slice/session-2.scope", Cgroup{Unit: "session-2.scope"}},
	{"/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-123.scope", Cgroup{Unit: "app-gnome-firefox-123.scope"}},
	{"/user.slice/user-1000.slice/user@1000.service/app.slice/dev-server.service", Cgroup{Unit: "dev-server.service"}},
	{"/system.slice/docker-" + cid + ".scope", Cgroup{Unit: "docker-" + cid + ".scope", Runtime: "docker", Container: cid}},
	{"/docker/" + cid, Cgroup{Runtime: "docker", Container: cid}},
	{"/machine.slice/libpod-" + cid + ".scope/container", Cgroup{Unit: "libpod-" + cid + ".scope", Runtime: "podman", Container: cid}},
	{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope", Cgroup{Unit: "libpod-" + cid + ".scope", Runtime: "podman", Container: cid}},
	{"/machine.slice/libpod-conmon-" + cid + ".scope", Cgroup{Unit: "libpod-conmon-" + cid + ".scope"}},
	{"/libpod_parent/libpod-" + cid, Cgroup{Runtime: "podman", Container: cid}},
	{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-" + cid + ".scope",
		Cgroup{Unit: "cri-containerd-" + cid + ".scope", Runtime: "containerd", Container: cid, Pod: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
	{"/kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/crio-" + cid + ".scope",
		Cgroup{Unit: "crio-" + cid + ".scope", Runtime: "cri-o", Container: cid, Pod: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
	{"/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/" + cid,
		Cgroup{Runtime: "kubernetes", Container: cid, Pod: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
	{"/system.slice/nerdctl-" + cid + ".scope", Cgroup{Unit: "nerdctl-" + cid + ".scope", Runtime: "containerd", Container: cid}},
	{"/lxc.payload.web1/system.slice/nginx.service", Cgroup{Unit: "nginx.service", Runtime: "lxc", Container: "web1"}},
	{"/lxc/web2", Cgroup{Runtime: "lxc", Container: "web2"}},
	{"/process_api/80061132fb01d518927d8412f26132af", Cgroup{}},
}

func TestParseCgroupPath(t *testing.T) {
	for _, tc := range cgroupCases {
		want := tc.want
		want.Path = tc.path
		if d := cmp.Diff(&want, ParseCgroupPath(tc.path)); d != "" {
			t.Errorf("ParseCgroupPath(%q) (-want +got):\n%s", tc.path, d)
		}
	}
}

var procCgroupCases = []struct {
	name, in, want, err string
}{
	{"v2 only", "0::/system.slice/sshd.service\n", "/system.slice/sshd.service", ""},
	{"hybrid, unified at the root", "12:pids:/\n1:name=systemd:/system.slice/cron.service\n0::/\n", "/system.slice/cron.service", ""},
	{"hybrid, unified set", "1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", "/system.slice/b.service", ""},
	{"v1 only", "4:memory:/docker/abc\n3:cpu:/docker/abc\n", "/docker/abc", ""},
	{"everything at the root", "0::/\n", "/", ""},
	{"empty", "", "", ""},
	{"damaged", "0:/x\n", "", "line 1"},
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range procCgroupCases {
		got, err := ParseProcCgroup([]byte(tc.in))
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: ParseProcCgroup(%q) = %q, %v; want %q, error with %q", tc.name, tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	for _, tc := range cgroupCases {
		f.Add(tc.path)
	}
	for _, tc := range procCgroupCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c := ParseCgroupPath(s); c.Path != s {
			t.Fatalf("ParseCgroupPath(%q).Path = %q", s, c.Path)
		}
		p, err := ParseProcCgroup([]byte(s))
		if err == nil && p != "" && !strings.Contains(s, p) {
			t.Fatalf("ParseProcCgroup(%q) = %q, not in the input", s, p)
		}
	})
}

var passwdCases = []struct {
	name string
	in   string
	want map[uint32]string
}{
	{"usual", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		map[uint32]string{0: "root", 65534: "nobody"}},
	{"comments, NIS and damage skipped", "# comment\n+::::::\n-bad:x:1:1::/:/bin/sh\nbroken line\nx:y:notanumber:1::/:\n:x:5:5::/:\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n",
		map[uint32]string{1000: "alice"}},
	{"first of a uid wins", "root:x:0:0::/:\ntoor:x:0:0::/:\n", map[uint32]string{0: "root"}},
	{"no trailing newline, short line", "bob:x:1001:1001", map[uint32]string{1001: "bob"}},
	{"empty", "", map[uint32]string{}},
}

func TestParsePasswd(t *testing.T) {
	for _, tc := range passwdCases {
		got, err := parsePasswd(strings.NewReader(tc.in))
		if err != nil {
			t.Fatalf("%s: parsePasswd: %v", tc.name, err)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: parsePasswd(%q) (-want +got):\n%s", tc.name, tc.in, d)
		}
	}
}

func FuzzParsePasswd(f *testing.F) {
	for _, tc := range passwdCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		users, _ := parsePasswd(strings.NewReader(s))
		for _, name := range users {
			if name == "" || strings.ContainsAny(name, ":\n") {
				t.Fatalf("parsePasswd(%q) gave user name %q", s, name)
			}
		}
	})
}

var mountinfoCases = []struct {
	name, in string
	want     []string // point fstype opts
	err      string
}{
	{"proc and cgroup2",
		"22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw,hidepid=invisible\n35 24 0:30 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate\n",
		[]string{"/proc proc rw,hidepid=invisible", "/sys/fs/cgroup/unified cgroup2 rw,nsdelegate"}, ""},
	{"no optional fields, escaped space", "40 1 8:1 / /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n", []string{"/mnt/my disk ext4 rw"}, ""},
	{"no superblock options", "40 1 8:1 / /x rw - tmpfs tmpfs\n", []string{"/x tmpfs "}, ""},
	{"no separator", "40 1 8:1 / /x rw tmpfs\n", nil, "line 1"},
}

func TestParseMountinfo(t *testing.T) {
	for _, tc := range mountinfoCases {
		var got []string
		err := ParseMountinfo([]byte(tc.in), func(point, fstype, opts string) { got = append(got, point+" "+fstype+" "+opts) })
		if !slices.Equal(got, tc.want) || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: ParseMountinfo(%q) = %q, %v; want %q, error with %q", tc.name, tc.in, got, err, tc.want, tc.err)
		}
	}
	for opts, want := range map[string]bool{"rw": false, "rw,hidepid=2": true, "hidepid=invisible,gid=3": true, "hidepid=0": false, "hidepid=ptraceable": false, "hidepid=1": true} {
		if got := hidesPids(opts); got != want {
			t.Errorf("hidesPids(%q) = %v; want %v", opts, got, want)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	for _, tc := range mountinfoCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseMountinfo([]byte(s), func(point, fstype, opts string) {})
		unescapeMount(s)
	})
}

var procFileCases = []struct {
	name, in string
}{
	{"status", "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t33\t33\t33\nGid:\t0\t0\t0\t0\n"},
	{"status without uid", "Name:\tx\n"},
	{"status short uid", "Uid:\t5\n"},
	{"stat", "cpu  1 2 3 4\nbtime 1764000000\nprocesses 42\n"},
	{"cmdline", "/usr/sbin/nginx\x00-g\x00daemon off;\x00"},
	{"socket link", "socket:[12345]"},
	{"pipe link", "pipe:[12345]"},
}

func TestParseProcFiles(t *testing.T) {
	if uid, err := parseStatus([]byte(procFileCases[0].in)); uid != 33 || err != nil {
		t.Errorf("parseStatus = %d, %v; want the effective uid 33", uid, err)
	}
	if _, err := parseStatus([]byte(procFileCases[1].in)); err == nil || !strings.Contains(err.Error(), "no Uid line") {
		t.Errorf("parseStatus without Uid: err %v", err)
	}
	if _, err := parseStatus([]byte(procFileCases[2].in)); err == nil || !strings.Contains(err.Error(), "want 4 ids") {
		t.Errorf("parseStatus with one uid: err %v", err)
	}
	if bt, err := parseBootTime([]byte(procFileCases[3].in)); bt != 1764000000 || err != nil {
		t.Errorf("parseBootTime = %d, %v; want 1764000000", bt, err)
	}
	if got := parseCmdline([]byte(procFileCases[4].in)); !slices.Equal(got, []string{"/usr/sbin/nginx", "-g", "daemon off;"}) {
		t.Errorf("parseCmdline = %q", got)
	}
	if parseCmdline(nil) != nil {
		t.Error("parseCmdline(nil) not nil")
	}
	for in, want := range map[string]uint32{"socket:[12345]": 12345, "socket:[4294967295]": 4294967295} {
		if got, ok := parseSocketLink([]byte(in)); !ok || got != want {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"pipe:[12345]", "socket:[]", "socket:[4294967296]", "socket:[12a]", "socket:[1", "/dev/null"} {
		if got, ok := parseSocketLink([]byte(in)); ok {
			t.Errorf("parseSocketLink(%q) = %d; want no inode", in, got)
		}
	}
}

func FuzzParseProcFiles(f *testing.F) {
	for _, tc := range procFileCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parseStatus([]byte(s))
		parseBootTime([]byte(s))
		parseCmdline([]byte(s))
		if ino, ok := parseSocketLink([]byte(s)); ok && !strings.HasPrefix(s, "socket:[") {
			t.Fatalf("parseSocketLink(%q) = %d", s, ino)
		}
	})
}

// Package owners finds the processes holding sockets open, by the
// sockets' inodes (a BPF task_file iterator when root, else a walk of
// /proc), says why none can be seen when so, and what a user needs about
// them: their user, cgroup, unit or container, process tree, and how to
// stop them. It knows nothing of the socket table: package sockets reads
// that and asks here for each socket's owners.
package owners

// The types, and the parsing of what the walk reads (passwd, cgroup paths,
// status, cmdline, mountinfo); the walk itself is in find_linux.go.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Process is a process holding a socket.
type Process struct {
	PID  int
	Comm string // the command name (/proc/PID/comm), at most 15 bytes
	UID  uint32 // effective user
	User string // its name, or the number when /etc/passwd has none

	// Filled with Options.Details:
	Cmdline []string  // arguments; empty for kernel threads and zombies
	Start   time.Time // start time, to the second
	Cgroup  *Cgroup   // nil when unknown
}

// Unseen says why a socket has no owner to show.
type Unseen uint8

const (
	// Seen: owners were found, or not looked for.
	Seen Unseen = iota
	// NoProcess: no file refers to the socket (TIME_WAIT, a pending
	// connection, or one closed but still draining): the kernel holds it.
	NoProcess
	// Denied: it belongs to another user, whose processes we may not look
	// into without root (or CAP_SYS_PTRACE).
	Denied
	// Hidden: /proc is mounted with hidepid, so other users' processes are
	// not listed at all.
	Hidden
	// NotFound: no visible process holds it: a socket of the kernel itself
	// (NFS, WireGuard, a tunnel), one held by a process in another PID
	// namespace or in flight between processes, or its process exited since
	// the table was read.
	NotFound
	// Skipped: the search for owners stopped early (cancelled, or told to
	// stop at the first holder of other sockets).
	Skipped
)

func (u Unseen) String() string {
	switch u {
	case Seen:
		return "seen"
	case NoProcess:
		return "no-process"
	case Denied:
		return "denied"
	case Hidden:
		return "hidden"
	case NotFound:
		return "not-found"
	case Skipped:
		return "skipped"
	}
	return fmt.Sprintf("unseen(%d)", uint8(u))
}

// MarshalText writes the short name ("denied").
func (u Unseen) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText reads a short name.
func (u *Unseen) UnmarshalText(b []byte) error {
	for v := Seen; v <= Skipped; v++ {
		if v.String() == string(b) {
			*u = v
			return nil
		}
	}
	return fmt.Errorf("unknown owner visibility %q", b)
}

// Options say how far Find looks.
type Options struct {
	// First stops at the first process found for each socket, rather than
	// every process sharing it (a pre-forked server's workers); the walk
	// ends as soon as every socket has one. Zero: find them all.
	First bool
	// Details reads each owner's command line, start time and cgroup;
	// zero reads only the command name and user.
	Details bool
}

// Query is a socket whose holders are sought.
type Query struct {
	// Inode is the socket's inode, what /proc/PID/fd links name
	// ("socket:[Inode]"); 0 when no file refers to it: no process holds it.
	Inode uint32
	// UID is the socket's user: another user's socket whose holder cannot
	// be seen is Denied (or Hidden), not NotFound.
	UID uint32
	// CgroupID is the cgroup v2 id the socket was made in (0: unknown),
	// named in Result.Cgroup when no process is seen.
	CgroupID uint64
}

// Result is what Find learned of one Query.
type Result struct {
	// Procs are the processes holding the socket open, the lowest pid
	// first.
	Procs []*Process
	// Unseen says why Procs is empty.
	Unseen Unseen
	// Cgroup is the socket's cgroup (from Query.CgroupID) when no process
	// could be seen, so there is still a unit or container to show.
	Cgroup *Cgroup
}

// Cgroup is the control group of a process or socket, with what its path
// tells: the systemd unit, the container.
type Cgroup struct {
	Path      string `json:"path"`                // in the unified (v2) hierarchy, or the systemd one: "/system.slice/nginx.service"
	Unit      string `json:"unit,omitempty"`      // systemd unit: "nginx.service", "session-2.scope"
	Container string `json:"container,omitempty"` // container id (usually 64 hex digits; a name for LXC)
	Runtime   string `json:"runtime,omitempty"`   // docker, podman, containerd, cri-o, kubernetes, lxc
	Pod       string `json:"pod,omitempty"`       // Kubernetes pod UID
}

// scopeRuntimes names the runtime of a container from the prefix of its
// systemd scope ("docker-<id>.scope") or cgroupfs directory ("libpod-<id>").
var scopeRuntimes = []struct{ prefix, runtime string }{
	{"docker-", "docker"}, {"libpod-", "podman"}, {"cri-containerd-", "containerd"},
	{"crio-", "cri-o"}, {"nerdctl-", "containerd"},
}

// isContainerID reports whether s is a 64-digit lower-case hex id.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// scopeContainer reads "<runtime>-<id>.scope" or "<runtime>-<id>".
func scopeContainer(p string) (runtime, id string, ok bool) {
	p = strings.TrimSuffix(p, ".scope")
	for _, r := range scopeRuntimes {
		if id, found := strings.CutPrefix(p, r.prefix); found && isContainerID(id) {
			return r.runtime, id, true
		}
	}
	return "", "", false
}

// podUID reads the pod of a Kubernetes cgroup: "kubepods-besteffort-pod<uid>.slice"
// (systemd driver, '_' for '-') or "pod<uid>" (cgroupfs driver).
func podUID(p string) (string, bool) {
	if s, ok := strings.CutSuffix(p, ".slice"); ok {
		if i := strings.LastIndex(s, "pod"); i >= 0 && (i == 0 || s[i-1] == '-') {
			p = s[i:]
		}
	}
	uid, ok := strings.CutPrefix(p, "pod")
	if !ok || len(uid) != 36 {
		return "", false
	}
	uid = strings.ReplaceAll(uid, "_", "-")
	for i := 0; i < len(uid); i++ {
		if c := uid[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == '-') {
			return "", false
		}
	}
	return uid, true
}

// ParseCgroupPath reads what a cgroup path says about its owner: the
// innermost systemd service or scope, and a container of docker
// (systemd or cgroupfs driver), podman, containerd, CRI-O, Kubernetes or
// LXC.
func ParseCgroupPath(path string) *Cgroup {
	c := &Cgroup{Path: path}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		switch {
		case strings.HasSuffix(p, ".service") || strings.HasSuffix(p, ".scope"):
			c.Unit = p
		}
		if rt, id, ok := scopeContainer(p); ok {
			c.Runtime, c.Container = rt, id
		} else if isContainerID(p) && i > 0 {
			switch parent := parts[i-1]; {
			case parent == "docker":
				c.Runtime, c.Container = "docker", p
			case parent == "libpod_parent":
				c.Runtime, c.Container = "podman", p
			case strings.HasPrefix(parts[0], "kubepods"):
				c.Runtime, c.Container = "kubernetes", p
			}
		} else if pod, ok := podUID(p); ok && strings.HasPrefix(parts[0], "kubepods") {
			c.Pod = pod
			if c.Runtime == "" {
				c.Runtime = "kubernetes"
			}
		} else if name, ok := strings.CutPrefix(p, "lxc.payload."); ok && i == 0 {
			c.Runtime, c.Container = "lxc", name
		} else if i == 1 && parts[0] == "lxc" {
			c.Runtime, c.Container = "lxc", p
		}
	}
	return c
}

// ParseProcCgroup picks the path from /proc/PID/cgroup: the unified
// hierarchy's ("0::/..."), unless it is the root while systemd's named v1
// hierarchy knows better (hybrid setups), else the first one.
func ParseProcCgroup(b []byte) (string, error) {
	var unified, systemd, first string
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		f := bytes.SplitN(line, []byte{':'}, 3)
		if len(f) != 3 {
			return "", fmt.Errorf("proc cgroup line %d %.60q: want ID:CONTROLLERS:PATH", i+1, line)
		}
		p := string(f[2])
		switch {
		case string(f[0]) == "0" && len(f[1]) == 0:
			unified = p
		case string(f[1]) == "name=systemd":
			systemd = p
		}
		if first == "" {
			first = p
		}
	}
	switch {
	case unified != "" && unified != "/":
		return unified, nil
	case systemd != "" && systemd != "/":
		return systemd, nil
	case unified != "":
		return unified, nil
	}
	return first, nil
}

// parseSocketLink reads the inode of an fd link "socket:[12345]".
func parseSocketLink(l []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(l) < len(prefix)+2 || string(l[:len(prefix)]) != prefix || l[len(l)-1] != ']' {
		return 0, false
	}
	var ino uint64
	for _, c := range l[len(prefix) : len(l)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		ino = ino*10 + uint64(c-'0')
		if ino > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(ino), true
}

// parseCmdline splits /proc/PID/cmdline: NUL-terminated arguments. A
// process that rewrote its arguments may leave one space-separated string.
func parseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// parseStatus reads the effective uid from /proc/PID/status ("Uid:\treal\teffective\t...").
func parseStatus(b []byte) (uid uint32, err error) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			return 0, fmt.Errorf("proc status Uid line %q: want 4 ids", line)
		}
		u, err := strconv.ParseUint(string(f[1]), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("proc status Uid line %q: effective uid: %w", line, err)
		}
		return uint32(u), nil
	}
	return 0, fmt.Errorf("proc status: no Uid line")
}

// parseBootTime reads btime (seconds since the epoch) from /proc/stat.
func parseBootTime(b []byte) (int64, error) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			t, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("proc stat btime %q: %w", v, err)
			}
			return t, nil
		}
	}
	return 0, fmt.Errorf("proc stat: no btime line")
}

// parsePasswd reads user names by uid from an /etc/passwd file. Lines
// that are not name:password:uid:... (comments, NIS "+" entries, damage)
// are skipped, as the C library does; the first entry of a uid wins.
func parsePasswd(r io.Reader) (map[uint32]string, error) {
	users := make(map[uint32]string)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.SplitN(line, ":", 4)
		if len(f) < 4 || f[0] == "" {
			continue
		}
		uid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := users[uint32(uid)]; !dup {
			users[uint32(uid)] = f[0]
		}
	}
	if err := sc.Err(); err != nil {
		return users, fmt.Errorf("read passwd: %w", err)
	}
	return users, nil
}

// users maps uids to names from /etc/passwd, read once.
var users = sync.OnceValue(func() map[uint32]string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return nil
	}
	defer f.Close()
	u, _ := parsePasswd(f)
	return u
})

// LookupUser returns the name of uid from /etc/passwd, or the number.
func LookupUser(uid uint32) string {
	if n, ok := users()[uid]; ok {
		return n
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// ParseMountinfo calls fn for each mount in /proc/self/mountinfo with its
// mount point, filesystem type and superblock options.
func ParseMountinfo(b []byte, fn func(point, fstype, opts string)) error {
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		f := strings.Fields(string(line))
		sep := -1
		for j := 6; j < len(f); j++ {
			if f[j] == "-" {
				sep = j
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			return fmt.Errorf("mountinfo line %d %.60q: want ID PARENT DEV ROOT POINT OPTS ... - TYPE SOURCE OPTS", i+1, line)
		}
		opts := ""
		if sep+3 < len(f) {
			opts = f[sep+3]
		}
		fn(unescapeMount(f[4]), f[sep+1], opts)
	}
	return nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hidesPids reports whether proc mount options hide other users'
// processes (hidepid=1/2/noaccess/invisible; 0, off and 4/ptraceable do not).
func hidesPids(opts string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if v, ok := strings.CutPrefix(o, "hidepid="); ok {
			switch v {
			case "1", "2", "noaccess", "invisible":
				return true
			}
		}
	}
	return false
}

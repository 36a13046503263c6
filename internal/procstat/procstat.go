// Package procstat reads /proc/PID/stat, the kernel's one-line status of a
// process: the fields portolan needs (parent, flags, start time), parsed
// once for every package that asks (owners, kill, freeport, store, netlab,
// firewall).
package procstat

import (
	"bytes"
	"fmt"
	"strconv"
)

// Flags of Stat.Flags (PF_* of include/linux/sched.h).
const (
	// FlagKthread is PF_KTHREAD: a kernel thread.
	FlagKthread = 0x00200000
	// FlagForkNoExec is PF_FORKNOEXEC: forked, and not exec'd since.
	FlagForkNoExec = 0x00000040
)

// Stat is what portolan reads of /proc/PID/stat.
type Stat struct {
	PID   int
	Comm  string // field 2, without its parentheses; at most 15 bytes from the kernel
	State byte   // field 3: R, S, D, Z, T, ...
	PPID  int    // field 4
	Flags uint64 // field 9
	// StartTicks is field 22, the start time in clock ticks after boot;
	// with the pid it names a process uniquely (pids are reused).
	StartTicks uint64
}

// fieldNames name the numeric fields read, for errors.
var fieldNames = map[int]string{1: "pid", 4: "parent pid", 9: "flags", 22: "start time"}

// Parse reads the text of /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields
// after it are counted from the last ')'. Errors start "proc stat" and
// quote the input.
func Parse(b []byte) (Stat, error) {
	var st Stat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return st, fmt.Errorf("proc stat %.40q: no ')' closing the command name", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid < 0 {
		return st, fmt.Errorf("proc stat %.40q: field 1 (pid) %q: not a number", b, bytes.TrimSpace(b[:open]))
	}
	st.PID, st.Comm = pid, string(b[open+1:end])
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 20 {
		return st, fmt.Errorf("proc stat %.40q: %d fields after the command name at offset %d, want at least 20", b, len(f), end+1)
	}
	if len(f[0]) != 1 {
		return st, fmt.Errorf("proc stat %.40q: field 3 (state) %q: want one letter", b, f[0])
	}
	st.State = f[0][0]
	var v [3]uint64
	for j, n := range []int{4, 9, 22} {
		x, err := strconv.ParseUint(string(f[n-3]), 10, 64)
		if err != nil {
			return st, fmt.Errorf("proc stat %.40q: field %d (%s) %q: not a number", b, n, fieldNames[n], f[n-3])
		}
		v[j] = x
	}
	if v[0] > 1<<31-1 {
		return st, fmt.Errorf("proc stat %.40q: field 4 (parent pid) %d: out of range", b, v[0])
	}
	st.PPID, st.Flags, st.StartTicks = int(v[0]), v[1], v[2]
	return st, nil
}

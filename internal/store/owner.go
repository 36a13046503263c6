package store

import "os"

// owner identifies the process running a scan: its pid and, where the
// system says, when it started, so a pid reused by an unrelated process
// after a crash does not pass for the scan's.
type owner struct {
	pid   int
	start int64 // system-specific start time; 0 when unknown
}

// self is the owner this process records.
func self() owner {
	pid := os.Getpid()
	start, _ := processStart(pid)
	return owner{pid, start}
}

// alive reports whether o is a running process other than this one.
func (o owner) alive() bool {
	if o.pid <= 0 || o == self() {
		return false
	}
	start, err := processStart(o.pid)
	if err != nil {
		return false
	}
	return o.start == 0 || start == 0 || start == o.start
}

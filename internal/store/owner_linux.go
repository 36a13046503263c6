package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// processStart returns when process pid started, in clock ticks since boot
// (field 22 of /proc/PID/stat); an error when there is no such process.
func processStart(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start behind the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return 0, errors.New("malformed /proc stat")
	}
	return strconv.ParseInt(string(f[19]), 10, 64) // field 22 = index 19 after field 2
}

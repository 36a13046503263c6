package firewall

import (
	"bytes"
	"fmt"
	"strconv"
)

// parseStat reads the command name and parent pid from the text of
// /proc/PID/stat ("PID (COMM) STATE PPID ..."). COMM may hold spaces and
// parentheses, so it runs to the last ')'.
func parseStat(name string, b []byte) (comm string, ppid int, err error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("parse %s: no command name in parentheses at offset %d", name, max(open, 0))
	}
	f := bytes.Fields(b[end+1:])
	if len(f) < 2 {
		return "", 0, fmt.Errorf("parse %s: no parent pid after offset %d", name, end+1)
	}
	ppid, err = strconv.Atoi(string(f[1]))
	if err != nil || ppid < 0 {
		return "", 0, fmt.Errorf("parse %s: parent pid %q at field 4 is not a number", name, f[1])
	}
	return string(b[open+1 : end]), ppid, nil
}

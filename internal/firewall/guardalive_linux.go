package firewall

import (
	"bytes"
	"os"
	"strconv"
)

// guardAlive reports whether p's rollback guard still runs: a process
// with its pid whose command line names p's token (a pid alone may have
// been reused since). A guard that was never recorded is not alive.
func guardAlive(p *Pending) bool {
	if p.GuardPID <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.GuardPID) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("\x00rollback-guard\x00")) && bytes.Contains(b, []byte("\x00"+p.Token+"\x00"))
}

package procstat

import (
	"fmt"
	"os"
	"strconv"
)

// Read reads /proc/PID/stat of process pid.
func Read(pid int) (Stat, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(name)
	if err != nil {
		return Stat{}, err
	}
	st, err := Parse(b)
	if err != nil {
		return st, fmt.Errorf("read %s: %w", name, err)
	}
	return st, nil
}

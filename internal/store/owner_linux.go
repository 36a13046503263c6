package store

import "portolan/internal/procstat"

// processStart returns when process pid started, in clock ticks since boot
// (field 22 of /proc/PID/stat); an error when there is no such process.
func processStart(pid int) (int64, error) {
	st, err := procstat.Read(pid)
	if err != nil {
		return 0, err
	}
	return int64(st.StartTicks), nil
}

// Package daemon is what portolan's long-running commands share (forward
// now; the knock daemon and the watcher next): signal handling (SIGTERM
// and SIGINT drain, a second one forces the stop, SIGHUP reloads and keeps
// the running configuration when the new one is bad), logs that never
// make the work wait (LogWriter), a Prometheus registry with the process
// and Go collectors served over HTTP, and systemd readiness
// notifications (Type=notify).
//
// It knows nothing of flags or terminals: internal/cli builds the
// Options from them.
package daemon

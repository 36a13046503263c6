// Command portolan is one tool for everything done with network ports.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"portolan/internal/cli"
)

func main() {
	// Process-wide settings live here, not in command code. Most commands
	// build one answer and exit within a second (ls over tens of thousands
	// of sockets): collecting garbage while the heap is small costs more
	// than the memory it frees. A larger growth factor (unless GOGC says
	// otherwise) means few collections for them and a modest heap for the
	// daemons. The open-files limit is already raised by Go at start-up.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

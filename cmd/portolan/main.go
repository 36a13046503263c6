// Command portolan is one tool for everything done with network ports.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"portolan/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

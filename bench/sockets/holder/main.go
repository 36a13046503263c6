// Command holder fills the socket table for bench/sockets/run.sh: it holds
// many loopback sockets, in one process or spread over many, until it is
// told to stop (SIGTERM or SIGINT) or its -max lifetime ends. Loopback only; every loop is bounded.
//
//	holder -mode one  -n 20000 -port 8080 -ready FILE
//	    one process: a listener on 127.0.0.1:PORT (opened first, as a
//	    server opens its listener before it accepts), then 100 listeners and
//	    connections to them up to about n sockets (both ends held here).
//	holder -mode many -procs 1000 -per 20 -port 8080 -ready FILE
//	    procs processes (sleep) holding per listeners each; the middle one
//	    holds 127.0.0.1:PORT.
//
// It writes "ready" and the numbers to FILE when the sockets are in place.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// keep holds every socket: an unreferenced net.Conn is closed by its
// finalizer at the next garbage collection.
var keep []any

func main() {
	mode := flag.String("mode", "one", "one: a single process holds the sockets; many: many processes hold listeners")
	n := flag.Int("n", 20000, "mode one: about how many sockets to hold")
	procs := flag.Int("procs", 1000, "mode many: how many processes")
	per := flag.Int("per", 20, "mode many: listeners per process")
	port := flag.Int("port", 8080, "the port whose holder the benchmark asks for")
	ready := flag.String("ready", "", "file to write when ready")
	maxLife := flag.Duration("max", 15*time.Minute, "exit after this long in any case")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("holder: ")

	if limit := raiseNofile(uint64(*n + 1000)); *mode == "one" && uint64(*n) > limit-64 {
		log.Printf("the open-file limit is %d (raising it needs CAP_SYS_RESOURCE): holding %d sockets, not %d", limit, limit-64, *n)
		*n = int(limit - 64)
	}
	var summary string
	var stop func()
	switch *mode {
	case "one":
		var conns []net.Conn
		summary, conns = holdOne(*n, *port)
		stop = func() {
			// Reset rather than close: 20,000 TIME_WAIT sockets would
			// linger in the next scenario's table for a minute.
			for _, c := range conns {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		}
	case "many":
		summary, stop = holdMany(*procs, *per, *port)
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready "+summary+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Print("ready: ", summary)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*maxLife):
		log.Print("-max reached")
	}
	stop()
}

// raiseNofile lifts RLIMIT_NOFILE towards want, beyond the hard limit when
// allowed (CAP_SYS_RESOURCE), and returns the limit it got.
func raiseNofile(want uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Fatal(err)
	}
	if rl.Cur >= want {
		return rl.Cur
	}
	if rl.Max < want {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err == nil {
			return want
		}
	}
	rl.Cur = min(want, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Fatalf("raise the open-file limit to %d: %v", rl.Cur, err)
	}
	return rl.Cur
}

func listen(addr string) *net.TCPListener {
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		log.Fatalf("listen %s: %v", addr, err)
	}
	return l.(*net.TCPListener)
}

// holdOne holds the target listener, 100 more listeners and connections to
// them until there are about n sockets.
func holdOne(n, port int) (string, []net.Conn) {
	keep = append(keep, listen(fmt.Sprintf("127.0.0.1:%d", port)))
	const nl = 100
	var ls []*net.TCPListener
	for i := range nl {
		// Spread over 127.0.0.0/8 so the connections do not all share one
		// destination's port space.
		ls = append(ls, listen(fmt.Sprintf("127.0.%d.%d:0", 1+i/250, 1+i%250)))
	}
	accepted := make(chan net.Conn, 1024)
	for _, l := range ls {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	var held []net.Conn
	pairs := (n - nl - 1) / 2
	for i := range pairs {
		c, err := net.Dial("tcp4", ls[i%nl].Addr().String())
		if err != nil {
			log.Fatalf("connection %d of %d: %v", i+1, pairs, err)
		}
		held = append(held, c, <-accepted)
	}
	keep = append(keep, ls, held)
	return fmt.Sprintf("pid %d holds %d sockets: 127.0.0.1:%d, %d listeners, %d connected pairs", os.Getpid(), 1+nl+len(held), port, nl, pairs), held
}

// holdMany starts procs sleep processes, each holding per listeners passed
// to it as extra files; the middle one gets the target port.
func holdMany(procs, per, port int) (string, func()) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		log.Fatal(err)
	}
	var cmds []*exec.Cmd
	middle := procs / 2
	for p := range procs {
		var files []*os.File
		for i := range per {
			addr := fmt.Sprintf("127.%d.%d.%d:0", 2+p/62500, p/250%250, 1+p%250)
			if p == middle && i == 0 {
				addr = fmt.Sprintf("127.0.0.1:%d", port)
			}
			l := listen(addr)
			f, err := l.File()
			if err != nil {
				log.Fatal(err)
			}
			l.Close()
			files = append(files, f)
		}
		cmd := exec.Command(sleep, "900")
		cmd.ExtraFiles = files
		if err := cmd.Start(); err != nil {
			log.Fatalf("process %d of %d: %v", p+1, procs, err)
		}
		for _, f := range files {
			f.Close()
		}
		cmds = append(cmds, cmd)
	}
	stop := func() {
		for _, c := range cmds {
			c.Process.Kill()
		}
		for _, c := range cmds {
			c.Wait()
		}
	}
	return fmt.Sprintf("%d processes hold %d listeners each; pid %d (process %d) holds 127.0.0.1:%d", procs, per, cmds[middle].Process.Pid, middle+1, port), stop
}

package wait_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"portolan/internal/wait"
)

func ExampleWait() {
	l, err := net.Listen("tcp", "127.0.0.1:0") // a server that is up
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	t, err := wait.ParseTarget(l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := wait.Wait(ctx, []wait.Target{t}, wait.Options{})
	if err != nil {
		for _, s := range st {
			if !s.Ready {
				fmt.Printf("%s: %s\n", s.Target, s.Reason)
			}
		}
		return
	}
	fmt.Println("ready:", st[0].Ready)
	// Output: ready: true
}

func ExampleParseTarget() {
	for _, s := range []string{"db:5432", "[::1]:8080", ":3000", "unix:/run/app.sock", "https://api.example/health", "api:8080/health"} {
		t, err := wait.ParseTarget(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		switch t.Kind {
		case wait.Unix:
			fmt.Printf("%s: unix socket %s\n", s, t.Path)
		case wait.HTTP:
			fmt.Printf("%s: GET %s from %s port %d\n", s, t.URL, t.Host, t.Port)
		default:
			fmt.Printf("%s: tcp %s port %d\n", s, t.Host, t.Port)
		}
	}
	// Output:
	// db:5432: tcp db port 5432
	// [::1]:8080: tcp ::1 port 8080
	// :3000: tcp localhost port 3000
	// unix:/run/app.sock: unix socket /run/app.sock
	// https://api.example/health: GET https://api.example/health from api.example port 443
	// path "/health" needs an http:// or https:// URL at column 9 in target "api:8080/health"
}

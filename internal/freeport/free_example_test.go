package freeport_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"portolan/internal/freeport"
)

// A test of a server program reserves its ports so that tests running in
// parallel, in this process or in others, never get the same one.
func ExampleReserve() {
	ctx := context.Background()
	r, err := freeport.Reserve(ctx, 2, time.Minute, freeport.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Release()

	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(int(r.Ports[0])))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println(len(r.Ports), "ports reserved; the first one bound")
	// Output: 2 ports reserved; the first one bound
}

func ExampleFind() {
	p, err := freeport.Find(context.Background(), freeport.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(freeport.CheckFree(p) == nil)
	// Output: true
}

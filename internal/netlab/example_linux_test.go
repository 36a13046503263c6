package netlab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"portolan/internal/netlab"
)

// A scanner and a target in two namespaces; the target listens, the
// scanner connects over the link.
func Example() {
	lab, err := netlab.New()
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()
	scanner, err := lab.AddHost("scanner")
	if err != nil {
		log.Fatal(err)
	}
	target, err := lab.AddHost("target")
	if err != nil {
		log.Fatal(err)
	}
	link, err := lab.Link(scanner, target)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := target.Listen("tcp", netip.AddrPortFrom(link.B4, 22).String())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	c, err := scanner.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	c.Close()
	fmt.Println("connected to", ln.Addr())
}

// Running a tool such as nmap inside a host.
func ExampleHost_Command() {
	lab, err := netlab.New()
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()
	scanner, _ := lab.AddHost("scanner")
	target, _ := lab.AddHost("target")
	link, _ := lab.Link(scanner, target)
	out, err := scanner.Command(context.Background(), "nmap", "-n", "-Pn", "-p", "1-1024", link.B4.String()).Output()
	fmt.Printf("%s %v\n", out, err)
}

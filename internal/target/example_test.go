package target_test

import (
	"context"
	"fmt"

	"portolan/internal/portspec"
	"portolan/internal/target"
)

func ExampleParse() {
	set, err := target.Parse(context.Background(),
		[]string{"198.18.0.0/30, 198.18.0.10-20", "fd00::1-5"},
		[]string{"198.18.0.1"},
		target.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(set, set.Len())
	fmt.Println(set.At(0), set.At(3))

	_, err = target.Parse(context.Background(), []string{"198.18.0.1,224.0.0.1"}, nil, target.Options{})
	fmt.Println(err)
	// Output:
	// 198.18.0.0,198.18.0.2/31,198.18.0.10-20,fd00::1-5 19
	// 198.18.0.0 198.18.0.10
	// 224.0.0.1 is multicast (224.0.0.0/4): refused
}

func ExampleSpace() {
	hosts, _ := target.Parse(context.Background(), []string{"198.18.0.1-2"}, nil, target.Options{})
	ports, _ := portspec.Parse("22,80,U:53")
	space, _ := target.NewSpace(hosts, ports)
	fmt.Println(space.Size())
	for i := range space.Size() {
		addr, port, proto := space.At(i)
		fmt.Printf("%d %v %d/%v\n", i, addr, port, proto)
	}
	i, _ := space.Index(hosts.At(1), 53, portspec.UDP)
	fmt.Println(i)
	// Output:
	// 6
	// 0 198.18.0.1 22/tcp
	// 1 198.18.0.1 80/tcp
	// 2 198.18.0.1 53/udp
	// 3 198.18.0.2 22/tcp
	// 4 198.18.0.2 80/tcp
	// 5 198.18.0.2 53/udp
	// 5
}

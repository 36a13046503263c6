package scan_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// The permutation is a pure function of the size and the seed: the same
// seed visits the same order on any machine, which is what makes resuming
// and sharding work. The output below pins the algorithm: stored scans
// resume by it, so it must not change.
func ExamplePermutation() {
	p := scan.NewPermutation(10, 42)
	for i := range p.Len() {
		fmt.Print(p.At(i), " ")
	}
	fmt.Println()
	// Output: 1 0 3 5 9 2 8 7 6 4
}

// Three scanners split one scan between them; together they cover every
// position once.
func ExampleShard_Range() {
	for i := uint64(1); i <= 3; i++ {
		lo, hi := scan.Shard{Index: i, Count: 3}.Range(1000)
		fmt.Printf("shard %d/3: positions [%d, %d)\n", i, lo, hi)
	}
	// Output:
	// shard 1/3: positions [0, 333)
	// shard 2/3: positions [333, 666)
	// shard 3/3: positions [666, 1000)
}

// one is a space of a single TCP port.
type one netip.AddrPort

func (one) Size() uint64 { return 1 }

func (o one) At(uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	return netip.AddrPort(o).Addr(), portspec.Port(netip.AddrPort(o).Port()), portspec.TCP
}

func ExampleScanner() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()

	s := scan.Scanner{
		OnResult: func(r scan.Result) { fmt.Println(r.State, r.Reason) },
	}
	sum, err := s.Run(context.Background(), one(netip.MustParseAddrPort(ln.Addr().String())))
	fmt.Println(sum.Complete, sum.Open, err)
	// Output:
	// open syn-ack
	// true 1 <nil>
}

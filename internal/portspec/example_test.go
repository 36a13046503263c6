package portspec_test

import (
	"fmt"

	"portolan/internal/portspec"
)

func ExampleParse() {
	s, err := portspec.Parse("22, 80, 8000-8100, U:53, 443/tcp, !8080")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s, s.Len(), s.LenProto(portspec.UDP))
	// Output: T:22,80,443,8000-8100,U:53 105 1
}

func ExampleParse_error() {
	_, err := portspec.Parse("22,80,70000")
	fmt.Println(err)
	// Output: port 70000 out of range 0-65535 at column 7 in "22,80,70000"
}

func ExampleSet() {
	var s portspec.Set // the zero value is an empty set
	s.AddRange(portspec.TCP, 1, 1024)
	s.Remove(portspec.TCP, 80)
	s.Add(portspec.UDP, 53)
	fmt.Println(s.String(), s.Has(portspec.TCP, 80), s.Protos())
	// Output: T:1-79,81-1024,U:53 false [tcp udp]
}

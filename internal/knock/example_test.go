package knock_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"time"

	"portolan/internal/knock"
	"portolan/internal/portspec"
)

func ExampleParseSequence() {
	seq, err := knock.ParseSequence("7000,8000/udp,9000")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, k := range seq {
		fmt.Println(k.Port, k.Proto)
	}
	_, err = knock.ParseSequence("7000,80x")
	fmt.Println(err)
	// Output:
	// 7000 tcp
	// 8000 udp
	// 9000 tcp
	// sequence "7000,80x": column 6: "80x" is not a port from 1 to 65535
}

// A client signs a request; the server parses it and finds the key by its
// id in the authorized keys.
func ExampleParseSPA() {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	client := &knock.ClientKey{Alg: knock.Ed25519, Private: priv}
	req := knock.Request{
		Time:    time.UnixMilli(1_800_000_000_000),
		AllowIP: netip.MustParseAddr("198.18.0.2"),
		Ports:   []knock.DoorPort{{Proto: portspec.TCP, Port: 22}},
	}
	datagram, err := client.Sign(&req)
	if err != nil {
		fmt.Println(err)
		return
	}
	keys, _ := knock.ParseAuthorizedKeys("keys", client.PublicLine("laptop"))

	got, _, _, err := knock.ParseSPA(datagram)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(datagram), "bytes from key", keys[got.KeyID].Name, "for", got.AllowIP, got.Ports[0].Port, got.Ports[0].Proto)
	// Output:
	// 125 bytes from key laptop for 198.18.0.2 22 tcp
}

package registry_test

import (
	"fmt"

	"portolan/internal/portspec"
	"portolan/internal/registry"
)

func ExampleRegistry_ByPort() {
	for _, e := range registry.Default().ByPort(80, portspec.TCP) {
		fmt.Printf("%s/%s %s: %s\n", e.Ports(), e.Proto, e.Name, e.Description)
	}
	// Output:
	// 80/tcp http: World Wide Web HTTP
	// 80/tcp www: World Wide Web HTTP
	// 80/tcp www-http: World Wide Web HTTP
}

func ExampleRegistry_ByPort_unassigned() {
	r := registry.Default()
	for _, e := range r.ByPort(11440, portspec.UDP) {
		fmt.Printf("%s: %s\n", e.Ports(), e.Description)
	}
	fmt.Println(len(r.ByPort(49160, 0)), portspec.ClassOf(49160).Describe())
	// Output:
	// 11435-11488: Unassigned
	// 0 dynamic/private range (49152-65535)
}

func ExampleRegistry_Name() {
	r := registry.Default()
	fmt.Println(r.Name(22, portspec.TCP), r.Name(53, portspec.UDP), r.Name(3389, portspec.TCP))
	fmt.Printf("%q\n", r.Name(49160, portspec.TCP))
	// Output:
	// ssh domain ms-wbt-server
	// ""
}

func ExampleRegistry_ByName() {
	for _, e := range registry.Default().ByName("HTTPS") {
		fmt.Printf("%q %s %q\n", e.Ports(), e.Proto, e.Description)
	}
	// Output:
	// "443" tcp "http protocol over TLS/SSL"
	// "443" udp "http protocol over TLS/SSL"
	// "443" sctp "HTTPS"
	// "" tcp "HTTP over SSL/TLS"
}

func ExampleRegistry_PortsByName() {
	r := registry.Default()
	ports, _ := r.PortsByName("www*", portspec.TCP)
	fmt.Println(ports)
	_, err := r.PortsByName("nosuchservice", portspec.TCP)
	fmt.Println(err)
	// Output:
	// [80 1760 2784]
	// "nosuchservice": not a service name in the IANA registry
}

func ExampleRegistry_Search() {
	for _, e := range registry.Default().Search("kerberos administration") {
		fmt.Printf("%s/%s %s\n", e.Ports(), e.Proto, e.Name)
	}
	// Output:
	// 749/tcp kerberos-adm
	// 749/udp kerberos-adm
}

func ExampleTop() {
	top, _ := registry.Top(portspec.UDP, 3)
	for _, e := range top {
		fmt.Printf("%d/%s %s: %s\n", e.Port, e.Proto, e.Name, e.Reason)
	}
	// Output:
	// 53/udp domain: DNS queries
	// 123/udp ntp: NTP time synchronisation
	// 161/udp snmp: SNMP agents on network gear, printers and servers
}

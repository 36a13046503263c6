package firewall

import (
	"net/netip"
	"testing"
	"time"

	"portolan/internal/portspec"
)

func TestSSHDoor(t *testing.T) {
	now := time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
	ssh := DoorPort{Proto: portspec.TCP, Port: 22}
	pkt := func(src string) Packet {
		return Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: 22}
	}
	holders := []DoorHolder{
		{Src: netip.MustParseAddr("198.18.0.2"), Port: ssh, Expires: now.Add(30 * time.Second)},
		{Src: netip.MustParseAddr("198.18.0.3"), Port: DoorPort{Proto: portspec.TCP, Port: 2222}, Expires: now.Add(time.Minute)},
		{Src: netip.MustParseAddr("fd00::2"), Port: ssh, Expires: now.Add(-time.Second)}, // the kernel has not swept it yet
	}
	tests := []struct {
		name      string
		p         Packet
		protected []DoorPort
		want      string
		ok        bool
	}{
		{"no door", pkt("198.18.0.2"), nil, "", false},
		{"a door on another port", pkt("198.18.0.2"), []DoorPort{{Proto: portspec.TCP, Port: 2222}}, "", false},
		{"a door on 22/udp", pkt("198.18.0.2"), []DoorPort{{Proto: portspec.UDP, Port: 22}}, "", false},
		{"open for the client", pkt("198.18.0.2"), []DoorPort{ssh}, "a knock door protects 22/tcp: it is open for 198.18.0.2 until 2026-12-07T19:00:30Z, then new SSH connections from it need a knock or SPA request first", true},
		{"mapped address", pkt("::ffff:198.18.0.2"), []DoorPort{ssh}, "a knock door protects 22/tcp: it is open for 198.18.0.2 until 2026-12-07T19:00:30Z, then new SSH connections from it need a knock or SPA request first", true},
		{"open on another port only", pkt("198.18.0.3"), []DoorPort{ssh}, "a knock door protects 22/tcp and is closed for 198.18.0.3: new SSH connections from it need a knock or SPA request first (open sessions stay up)", true},
		{"expired", pkt("fd00::2"), []DoorPort{ssh}, "a knock door protects 22/tcp and is closed for fd00::2: new SSH connections from it need a knock or SPA request first (open sessions stay up)", true},
	}
	for _, tt := range tests {
		got, ok := SSHDoor(tt.p, tt.protected, holders, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: SSHDoor(%v) = %q, %v; want %q, %v", tt.name, tt.p, got, ok, tt.want, tt.ok)
		}
	}
}

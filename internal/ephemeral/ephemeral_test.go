package ephemeral

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

const snmpSample = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12345
Icmp: InMsgs InErrors
Icmp: 3 0
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails
Tcp: 1 200 120000 -1 5813 2401 17
Udp: InDatagrams NoPorts
Udp: 100 2
`

const netstatSample = `TcpExt: SyncookiesSent TW TWRecycled TWKilled
TcpExt: 0 4011 12 0
IpExt: InNoRoutes InOctets
IpExt: 0 18446744073709551615
`

var snmpCases = []struct {
	name    string
	in      string
	want    map[string]map[string]int64
	wantErr string
}{
	{"snmp", snmpSample, map[string]map[string]int64{
		"Ip":   {"Forwarding": 1, "DefaultTTL": 64, "InReceives": 12345},
		"Icmp": {"InMsgs": 3, "InErrors": 0},
		"Tcp":  {"RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1, "ActiveOpens": 5813, "PassiveOpens": 2401, "AttemptFails": 17},
		"Udp":  {"InDatagrams": 100, "NoPorts": 2},
	}, ""},
	{"netstat with a wrapped counter", netstatSample, map[string]map[string]int64{
		"TcpExt": {"SyncookiesSent": 0, "TW": 4011, "TWRecycled": 12, "TWKilled": 0},
		"IpExt":  {"InNoRoutes": 0, "InOctets": -1},
	}, ""},
	{"empty", "", map[string]map[string]int64{}, ""},
	{"no colon", "Tcp ActiveOpens\n", nil, "line 1"},
	{"count mismatch", "Tcp: A B\nTcp: 1\n", nil, "line 2: 1 values for 2 names"},
	{"group mismatch", "Tcp: A\nUdp: 1\n", nil, `line 2: values for "Udp" follow the names of "Tcp"`},
	{"not a number", "Tcp: A B\nTcp: 1 x\n", nil, `Tcp B = "x": not a number`},
	{"names only", "Tcp: A B\n", nil, "without a line of values"},
}

func TestParseSNMP(t *testing.T) {
	for _, c := range snmpCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseSNMP("snmp", []byte(c.in))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "snmp") {
					t.Errorf("parseSNMP(%q) = %v, %v; want an error naming the file and %q", c.in, got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSNMP(%q) = %v", c.in, err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("parseSNMP(%q) (-want +got):\n%s", c.in, d)
			}
		})
	}
}

func FuzzParseSNMP(f *testing.F) {
	for _, c := range snmpCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := parseSNMP("snmp", []byte(s)); err != nil && !strings.HasPrefix(err.Error(), "snmp") {
			t.Errorf("parseSNMP(%q) error %q does not name the file", s, err)
		}
	})
}

// FuzzEphemeralReservedPorts fuzzes the ip_local_reserved_ports parser
// (free.go) that the ephemeral report relies on.
func FuzzEphemeralReservedPorts(f *testing.F) {
	for _, s := range []string{"", "\n", "8080\n", "8080,9000-9010\n", "1-65535", "x", "9000-8000", "70000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := sockets.ParseReservedPorts(s)
		if err != nil && !strings.HasPrefix(err.Error(), "ip_local_reserved_ports") {
			t.Errorf("ParseReservedPorts(%q) error %q does not name the sysctl", s, err)
		}
		if err == nil && strings.TrimSpace(s) == "" && set != nil {
			t.Errorf("ParseReservedPorts(%q) = %v; want nil for nothing reserved", s, set)
		}
	})
}

func TestTCPCounters(t *testing.T) {
	snmp, _ := parseSNMP("snmp", []byte(snmpSample))
	netstat, _ := parseSNMP("netstat", []byte(netstatSample))
	c := tcpCounters(snmp, netstat)
	if want := (Counters{ActiveOpens: 5813, PassiveOpens: 2401, TimeWaitEnded: 4011, TimeWaitReused: 12}); c != want {
		t.Errorf("tcpCounters = %+v; want %+v", c, want)
	}
	later := Counters{ActiveOpens: 5913, PassiveOpens: 2401, TimeWaitEnded: 4041, TimeWaitReused: 12}
	d := later.delta(c, 2*time.Second)
	if d.ActiveOpens != 100 || d.PerSecond(d.ActiveOpens) != 50 || d.TimeWaitEnded != 30 {
		t.Errorf("delta = %+v; want 100 opens (50/s), 30 TIME_WAIT ended", d)
	}
}

func TestAnalyze(t *testing.T) {
	ap := netip.MustParseAddrPort
	reserved, _ := sockets.ParseReservedPorts("40009,50000")
	conn := func(local, remote string, st sockets.State) sockets.Socket {
		return sockets.Socket{Proto: portspec.TCP, Family: sockets.IPv4, State: st, Local: ap(local), Remote: ap(remote), Inode: 1}
	}
	in := &ephemeralInput{
		lo: 40000, hi: 40009, reserved: reserved, twReuse: 2, timestamps: 1,
		socks: []sockets.Socket{
			{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.Listen, Local: ap("0.0.0.0:40005"), Inode: 1},
			conn("127.0.0.1:40005", "127.0.0.1:51000", sockets.Established), // accepted by the listener: not ephemeral
			{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.Close, Local: ap("127.0.0.1:40006"), Inode: 1},
			conn("198.18.0.1:40000", "198.18.0.2:80", sockets.Established),
			conn("198.18.0.1:40001", "198.18.0.2:80", sockets.TimeWait),
			conn("198.18.0.1:40002", "198.18.0.2:80", sockets.TimeWait),
			conn("198.18.0.1:40003", "198.18.0.2:80", sockets.TimeWait),
			conn("198.18.0.1:40004", "198.18.0.2:80", sockets.CloseWait),
			conn("198.18.0.1:40007", "198.18.0.2:80", sockets.TimeWait),
			conn("198.18.0.1:40008", "198.18.0.2:80", sockets.Established),
			conn("198.18.0.1:40000", "198.18.0.2:443", sockets.Established),
			conn("198.18.0.1:40009", "198.18.0.2:443", sockets.Established), // on a reserved port: bound explicitly
			{Proto: portspec.UDP, Family: sockets.IPv4, State: sockets.Close, Local: ap("0.0.0.0:40001"), Inode: 1},
		},
	}
	r := analyze(in)
	if r.Size != 10 || r.Reserved != 1 || len(r.Held) != 2 || r.Usable != 7 {
		t.Errorf("size %d reserved %d held %v usable %d; want 10, 1, 2 held (40005 LISTEN, 40006 bound), 7", r.Size, r.Reserved, r.Held, r.Usable)
	}
	if len(r.Destinations) != 2 {
		t.Fatalf("destinations %+v; want 2", r.Destinations)
	}
	hot := r.Destinations[0]
	wantStates := []StateCount{{sockets.TimeWait, 4}, {sockets.Established, 2}, {sockets.CloseWait, 1}}
	if hot.Remote != ap("198.18.0.2:80") || hot.InUse != 7 || hot.Headroom != 0 || hot.TimeWait != 4 || !cmp.Equal(hot.States, wantStates) {
		t.Errorf("busiest = %+v; want 198.18.0.2:80, 7 in use %v, no headroom", hot, wantStates)
	}
	if d := r.Destinations[1]; d.InUse != 1 || d.Headroom != 6 {
		t.Errorf("second = %+v; want 1 in use, 6 left", d)
	}
	if !r.Exhausted || r.Connections != 9 || r.TimeWait != 4 || r.UDP != 1 {
		t.Errorf("exhausted %v connections %d time-wait %d udp %d; want true, 9, 4, 1", r.Exhausted, r.Connections, r.TimeWait, r.UDP)
	}
	for _, want := range []string{
		"exhausted: connections from 198.18.0.1 to 198.18.0.2:80 take all 7 usable local ports",
		"reuse connections to 198.18.0.2:80",
		"here it is 2 (loopback only), so it does not apply to 198.18.0.2",
		"widen the range: sysctl -w net.ipv4.ip_local_port_range='10000 65535'",
		"IP_BIND_ADDRESS_NO_PORT",
		"1 listener(s) sit inside the ephemeral range (40005)",
		"bound but neither listening nor connected (40006)",
	} {
		if !strings.Contains(strings.Join(r.Advice, "\n"), want) {
			t.Errorf("advice lacks %q:\n%s", want, strings.Join(r.Advice, "\n"))
		}
	}

	in.dest, in.destPort = netip.MustParseAddr("198.18.0.2"), 443
	if r := analyze(in); len(r.Destinations) != 1 || r.Destinations[0].Remote.Port() != 443 {
		t.Errorf("filtered to :443: %+v", r.Destinations)
	}
}

func TestTWReuseAdvice(t *testing.T) {
	lo, far := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.18.0.2")
	cases := []struct {
		mode, ts int
		remote   netip.Addr
		want     string
	}{
		{2, 1, lo, "it is on for 127.0.0.1 (net.ipv4.tcp_tw_reuse=2)"},
		{2, 1, far, "loopback only"},
		{1, 1, far, "it is on for 198.18.0.2"},
		{0, 1, far, "it is off: sysctl -w net.ipv4.tcp_tw_reuse=1"},
		{1, 0, far, "tcp_timestamps is 0, so it cannot apply"},
	}
	for _, c := range cases {
		got := twReuseAdvice(c.mode, c.ts, c.remote)
		if !strings.Contains(got, c.want) || !strings.Contains(got, "does nothing for incoming connections") {
			t.Errorf("twReuseAdvice(%d, %d, %v) = %q; want %q and the limits", c.mode, c.ts, c.remote, got, c.want)
		}
	}
}

package importer

import (
	"context"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/output"
	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
	"portolan/internal/scandiff"
	"portolan/internal/store"
)

const nmapOK = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -sT -p 20-25 -oX x.xml 198.18.0.2 198.18.0.3" start="1796659331" version="7.93" xmloutputversion="1.05">
<scaninfo type="connect" protocol="tcp" numservices="6" services="20-25"/>
<host starttime="1796659332" endtime="1796659338"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="198.18.0.2" addrtype="ipv4"/>
<hostnames><hostname name="gw.example" type="user"/></hostnames>
<ports><extraports state="closed" count="4">
<extrareasons reason="conn-refused" count="4" proto="tcp" ports="20-21,23-24"/>
</extraports>
<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="ssh" product="OpenSSH" version="9.2p1" extrainfo="Debian 2" method="probed" conf="10"/></port>
<port protocol="tcp" portid="25"><state state="filtered" reason="no-response" reason_ttl="0"/><service name="smtp" method="table" conf="3"/></port>
</ports>
<times srtt="164" rttvar="145" to="100000"/>
</host>
<host><status state="down" reason="no-response" reason_ttl="0"/><address addr="198.18.0.3" addrtype="ipv4"/></host>
<runstats><finished time="1796659338" elapsed="6.52" exit="success"/><hosts up="1" down="1" total="2"/></runstats>
</nmaprun>
`

// nmapOld is a file without port lists in <extrareasons> (nmap before
// 7.90), stopped before <runstats>.
const nmapOld = `<?xml version="1.0"?>
<nmaprun scanner="nmap" args="nmap -p 1-3 fd00::2" start="1700000000" version="7.80">
<scaninfo type="syn" protocol="tcp" numservices="3" services="1-3"/>
<host starttime="1700000001"><status state="up" reason="echo-reply"/>
<address addr="fd00::2" addrtype="ipv6"/>
<ports><extraports state="filtered" count="2"><extrareasons reason="no-responses" count="2"/></extraports>
<port protocol="tcp" portid="2"><state state="closed" reason="reset"/></port>
</ports></host>
</nmaprun>
`

const masscanJSON = `[
{   "ip": "198.18.0.2",   "timestamp": "1796659426", "ports": [ {"port": 22, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64} ] }
,
{   "ip": "198.18.0.2",   "timestamp": "1796659427", "ports": [ {"port": 22, "proto": "tcp", "service": {"name": "ssh", "banner": "SSH-2.0-OpenSSH_9.2p1"} } ] }
,
{   "ip": "198.18.0.4",   "timestamp": "1796659428", "ports": [ {"port": 53, "proto": "udp", "status": "open", "reason": "udp-response", "ttl": 64} ] }
,
]
`

const masscanList = `#masscan
open tcp 80 198.18.0.5 1796659431
banner tcp 80 198.18.0.5 1796659432 http HTTP/1.0 200 OK\x0d\x0aServer: nginx/1.22.1\x0d\x0a\x0d\x0a
banner tcp 80 198.18.0.5 1796659432 title Welcome
open tcp 443 198.18.0.6 1796659433
# end
`

func TestParse(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // "ADDR PORT/PROTO STATE REASON SERVICE BANNER"
		targets    string
		ports      string
		status     store.Status
	}{
		{name: "nmap.xml", data: nmapOK, targets: "198.18.0.2,198.18.0.3", ports: "20-25", status: store.Done, want: []string{
			"198.18.0.2 20/tcp closed conn-refused ftp-data ", "198.18.0.2 21/tcp closed conn-refused ftp ",
			"198.18.0.2 22/tcp open syn-ack ssh ", "198.18.0.2 23/tcp closed conn-refused telnet ",
			"198.18.0.2 24/tcp closed conn-refused  ", "198.18.0.2 25/tcp filtered no-response smtp ",
		}},
		{name: "old.xml", data: nmapOld, targets: "fd00::2", ports: "1-3", status: store.Interrupted, want: []string{
			"fd00::2 1/tcp filtered no-responses tcpmux ", "fd00::2 2/tcp closed reset  ", "fd00::2 3/tcp filtered no-responses  ",
		}},
		{name: "m.json", data: masscanJSON, targets: "198.18.0.2,198.18.0.4", ports: "T:22,U:53", status: store.Done, want: []string{
			"198.18.0.2 22/tcp open syn-ack ssh SSH-2.0-OpenSSH_9.2p1", "198.18.0.4 53/udp open udp-response domain ",
		}},
		{name: "m.txt", data: masscanList, targets: "198.18.0.5-6", ports: "80,443", status: store.Done, want: []string{
			"198.18.0.5 80/tcp open  http HTTP/1.0 200 OK\r\nServer: nginx/1.22.1\r\n\r\n", "198.18.0.6 443/tcp open  https ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.name, []byte(tt.data), "")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range s.Results {
				got = append(got, r.Addr.String()+" "+portProto(r)+" "+r.State.String()+" "+r.Reason+" "+r.Service+" "+r.Banner)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Parse(%s) results:\n%s\nwant:\n%s", tt.name, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			si := s.Info
			if si.Targets != tt.targets || si.Ports != tt.ports || si.Status != tt.status || si.Started.IsZero() {
				t.Errorf("Parse(%s) = targets %q ports %q status %s started %v; want %q %q %s", tt.name, si.Targets, si.Ports, si.Status, si.Started, tt.targets, tt.ports, tt.status)
			}
		})
	}
}

func portProto(r scan.Result) string {
	return strconv.Itoa(int(r.Port)) + "/" + r.Proto.String()
}

func TestParseNmapDetails(t *testing.T) {
	s, err := Parse("nmap.xml", []byte(nmapOK), NmapXML)
	if err != nil {
		t.Fatal(err)
	}
	si := s.Info
	if si.Hosts != 2 || si.Counts.HostsUp != 1 || si.Counts.Open != 1 || si.Counts.Closed != 4 || si.Counts.Filtered != 1 || si.Space != 12 {
		t.Errorf("hosts %d counts %+v space %d; want 2 hosts, 1 up, 1 open, 4 closed, 1 filtered, space 12", si.Hosts, si.Counts, si.Space)
	}
	if si.Command != "nmap -sT -p 20-25 -oX x.xml 198.18.0.2 198.18.0.3" || si.Version != "nmap 7.93" || si.Prober != "connect" {
		t.Errorf("command %q version %q prober %q", si.Command, si.Version, si.Prober)
	}
	if got, want := si.Finished.Unix()-si.Started.Unix(), int64(7); got != want {
		t.Errorf("finished - started = %ds; want %ds", got, want)
	}
	vs, err := si.Versions()
	if err != nil {
		t.Fatal(err)
	}
	k := store.VersionKey{Addr: netip.MustParseAddr("198.18.0.2"), Port: 22, Proto: portspec.TCP}
	if v := vs[k]; v != (scan.Version{Product: "OpenSSH", Version: "9.2p1", Extra: "Debian 2"}) {
		t.Errorf("version of %s = %+v", k, v)
	}
	if r := s.Results[2]; r.RTT != 164*time.Microsecond || r.Time.Unix() != 1796659332 {
		t.Errorf("22/tcp rtt %v time %v; want 164µs, the host's start", r.RTT, r.Time)
	}
	if !strings.Contains(string(si.Options), `"names":{"198.18.0.2":"gw.example"}`) {
		t.Errorf("options %s: want the user-given host name", si.Options)
	}
}

// errorCases are malformed files and the errors they give: file, line,
// problem. FuzzParse starts from them too.
var errorCases = []struct {
	name, data string
	format     Format
	want       string
}{
	{"empty", "", "", "empty:1: not nmap XML, masscan JSON or masscan list output (give --format)"},
	{"a.xml", "<nmaprun scanner=\"nmap\">\n<host>\n</nmaprun>\n", "", "a.xml:3: element <host> closed by </nmaprun>"},
	{"b.xml", "<?xml version=\"1.0\"?>\n<foo/>\n", "", "b.xml: no <nmaprun> element: not an nmap XML file"},
	{"c.xml", "<nmaprun scanner=\"zmap\"/>", "", `c.xml:1: scanner "zmap": not an nmap XML file`},
	{"d.xml", strings.Replace(nmapOK, `portid="22"`, `portid="70000"`, 1), "", `d.xml:11: port "70000": not a port number`},
	{"e.xml", strings.Replace(nmapOK, `addr="198.18.0.2"`, `addr="198.18.0.999"`, 1), "", `e.xml:5: host: ParseAddr("198.18.0.999"): IPv4 field has value >255`},
	{"f.xml", strings.Replace(nmapOK, `state="open"`, `state="ajar"`, 1), "", `f.xml:11: unknown port state "ajar" (want open, closed, filtered, open|filtered, unfiltered or closed|filtered)`},
	{"g.xml", strings.Replace(nmapOK, `start="1796659331"`, `start="yesterday"`, 1), "", `g.xml:3: start "yesterday": not a unix time`},
	{"h.xml", strings.Replace(nmapOK, `ports="20-21,23-24"`, `ports="20-21,x"`, 1), "", `h.xml:8: extrareasons ports "20-21,x": not a list of port numbers and ranges`},
	{"a.json", "[\n{\"ip\": \"198.18.0.2\", \"timestamp\": \"1\", \"ports\": [{\"port\": 1, \"proto\": \"tcp\", \"status\": \"open\"}]},\n{\"ip\": 5}\n]\n", "", "a.json:3: json: cannot unmarshal number into Go struct field masscanRecord.ip of type string"},
	{"b.json", "[\n{\"ip\": \"198.18.0.2\", \"timestamp\": \"1\", \"ports\": [{\"port\": 1, \"proto\": \"tcp\", \"status\": \"open\"}]}\n,\n{\"ip\": \"198.18.0.2\", \"timestamp\": \"1\", \"ports\": [{\"port\": 1, \"proto\": \"tcp\", \"status\": \"ajar\"}]}\n]\n", "", `b.json:4: unknown port state "ajar"`},
	{"c.json", "[\n{\"ip\": \"198.18.0.2\",\n", "", "c.json:3: unexpected EOF"},
	{"d.json", "[\n{\"ip\": \"198.18.0.2\", \"timestamp\": \"1\", \"ports\": [{\"port\": 99999, \"proto\": \"tcp\", \"status\": \"open\"}]}\n]", "", "d.json:2: port 99999 out of range 0-65535"},
	{"e.json", "{}", "", "e.json:1: want a JSON array of masscan records"},
	{"a.txt", "#masscan\nopen tcp 80 198.18.0.5 1796659431\nopen tcp 80 198.18.0.5\n", "", `a.txt:3: want "STATE PROTO PORT ADDR TIME", got "open tcp 80 198.18.0.5"`},
	{"b.txt", "#masscan\nopen tcp http 198.18.0.5 1796659431\n", "", `b.txt:2: port "http": not a number`},
	{"c.txt", "#masscan\nopen tcp 80 198.18.0.5 1796659431\nopen tcp 81 example.com 1796659431\n", "", `c.txt:3: ParseAddr("example.com"): unexpected character (at "example.com")`},
	{"d.txt", "#masscan\nopen xtp 80 198.18.0.5 1796659431\n", "", `d.txt:2: unknown protocol "xtp"`},
	{"e.txt", "#masscan\nopen tcp 80 198.18.0.5 -1\n", "", `e.txt:2: timestamp "-1": not a unix time`},
	{"f.txt", "#masscan\n# end\n", "", "f.txt: no time in the file: nothing says when the scan ran"},
	{"forced", nmapOK, MasscanList, `forced:1: want "STATE PROTO PORT ADDR TIME", got "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"`},
}

// TestParseErrors checks that bad files are refused with the file and line.
func TestParseErrors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.name, []byte(tt.data), tt.format)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Parse(%s) = %v; want %s", tt.name, err, tt.want)
			}
		})
	}
}

// TestImportRoundTrip stores a scan, writes it as nmap XML as portolan show
// does, imports the file into the store, and diffs the two: nothing changed.
func TestImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ports, _ := portspec.Parse("1-40")
	start := time.Unix(1796659331, 0)
	id, err := st.CreateScan(ctx, store.ScanInfo{Started: start, Targets: "198.18.0.1-2", Ports: "1-40", PortSet: ports, Prober: "connect", Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	var rs []scan.Result
	for _, a := range []string{"198.18.0.1", "198.18.0.2"} {
		for p := portspec.Port(1); p <= 40; p++ {
			r := scan.Result{Addr: netip.MustParseAddr(a), Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
				Service: registry.PortName(p, portspec.TCP), Time: start.Add(time.Second), Pos: uint64(len(rs))}
			switch {
			case p == 22:
				r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "SSH-2.0-OpenSSH_9.2p1 Debian-2"
			case p == 25 && a == "198.18.0.2":
				r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "220 mx ESMTP Postfix (Debian/GNU)"
			case p > 30:
				r.State, r.Reason = scan.Filtered, scan.ReasonNoResponse
			}
			rs = append(rs, r)
		}
	}
	if err := st.AddResults(ctx, id, rs); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishScan(ctx, id, store.Done, store.Counts{}); err != nil {
		t.Fatal(err)
	}
	si, err := st.Scan(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	meta := output.ScanMeta{ID: id, Args: "portolan scan 198.18.0.1-2 -p 1-40", Version: "v1", Start: si.Started, End: si.Finished, Ports: si.PortSet}
	if err := output.WriteScan(&b, output.FormatXML, meta, rs, false); err != nil {
		t.Fatal(err)
	}
	s, err := Parse("own.xml", []byte(b.String()), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Info.Targets != "198.18.0.1-2" || s.Info.Ports != "1-40" || s.Info.Version != "v1" {
		t.Errorf("imported targets %q ports %q version %q; want 198.18.0.1-2, 1-40, v1", s.Info.Targets, s.Info.Ports, s.Info.Version)
	}
	id2, err := st.ImportScan(ctx, s.Info, s.Results)
	if err != nil {
		t.Fatal(err)
	}
	si2, err := st.Scan(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	d, err := scandiff.CompareStored(ctx, st, si, si2)
	if err != nil {
		t.Fatal(err)
	}
	if d.Changed() || d.Summary.PortsCompared != 80 {
		t.Errorf("diff of a scan and its re-import: %+v (hosts %v ports %v); want no change over 80 ports", d.Summary, d.Hosts, d.Ports)
	}
	got, err := st.Results(ctx, id2, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 80 || got[21].Banner != rs[21].Banner || got[21].State != scan.Open {
		t.Errorf("re-imported results: %d, port 22 %+v", len(got), got[21])
	}
}

// TestImportAtomic checks that a scan that cannot be stored whole leaves
// nothing behind.
func TestImportAtomic(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := Parse("m.json", []byte(masscanJSON), "")
	if err != nil {
		t.Fatal(err)
	}
	bad := append(s.Results, scan.Result{Port: 1, Proto: portspec.TCP, State: scan.Open}) // no address
	if _, err := st.ImportScan(ctx, s.Info, bad); err == nil {
		t.Fatal("ImportScan of a result without an address: no error")
	}
	scans, err := st.Scans(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(scans) != 0 {
		t.Errorf("after a failed import the store holds %d scans; want 0", len(scans))
	}
}

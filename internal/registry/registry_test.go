package registry

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

// The registry is what portspec resolves names with.
var _ portspec.Resolver = (*Registry)(nil)

const (
	wantSHA256  = "e51ffed8519db0f71b0e04f40c6a27ab682a8d202b77b665684018350eb27ac4" // as in README.md
	wantRecords = 14500
)

// TestEmbeddedFile checks the embedded CSV is the snapshot README.md
// describes, read independently of Parse.
func TestEmbeddedFile(t *testing.T) {
	sum := sha256.Sum256([]byte(ianaCSV))
	if got := hex.EncodeToString(sum[:]); got != wantSHA256 {
		t.Errorf("sha256 of the embedded CSV = %s; want %s (update README.md with the data)", got, wantSHA256)
	}
	cr := csv.NewReader(strings.NewReader(ianaCSV))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("read embedded CSV: %v", err)
	}
	if diff := cmp.Diff(header, recs[0]); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	if got := len(recs) - 1; got != wantRecords {
		t.Errorf("records = %d; want %d", got, wantRecords)
	}
	multiline := 0
	for i, r := range recs {
		if len(r) != 12 {
			t.Errorf("record %d has %d fields; want 12", i, len(r))
		}
		for _, f := range r {
			if strings.Contains(f, "\n") {
				multiline++
			}
		}
	}
	if multiline != 445 {
		t.Errorf("fields with line breaks = %d; want 445", multiline)
	}
	if got := Default().Len(); got != wantRecords {
		t.Errorf("Default().Len() = %d; want %d", got, wantRecords)
	}
}

func TestSnapshotIsNewestDate(t *testing.T) {
	newest := ""
	for _, e := range Default().All() {
		newest = max(newest, e.Registered, e.Modified)
	}
	if newest != Snapshot {
		t.Errorf("newest date in the registry = %s; Snapshot = %s", newest, Snapshot)
	}
}

func TestShape(t *testing.T) {
	var noPort, ranges, noProto int
	for _, e := range Default().All() {
		switch {
		case !e.HasPort:
			noPort++
		case e.Low != e.High:
			ranges++
		}
		if e.Proto == 0 {
			noProto++
		}
	}
	// 762 rows are written as ranges; 6 of them are one port wide ("4748-4748").
	if noPort != 1056 || ranges != 756 || noProto != 1464 {
		t.Errorf("rows without port, ranges, without protocol = %d, %d, %d; want 1056, 756, 1464", noPort, ranges, noProto)
	}
}

// names lists the service names of entries.
func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestByPort(t *testing.T) {
	tests := []struct {
		name  string
		port  portspec.Port
		proto portspec.Proto
		want  []string // service names, "" for an Unassigned/Reserved row
		desc  string   // description of the first row
	}{
		{"ssh", 22, portspec.TCP, []string{"ssh"}, "The Secure Shell (SSH) Protocol"},
		{"domain udp", 53, portspec.UDP, []string{"domain"}, "Domain Name Server"},
		{"ntp", 123, portspec.UDP, []string{"ntp"}, "Network Time Protocol"},
		{"https tcp", 443, portspec.TCP, []string{"https"}, "http protocol over TLS/SSL"},
		{"https udp", 443, portspec.UDP, []string{"https"}, "http protocol over TLS/SSL"},
		{"rdp", 3389, portspec.TCP, []string{"ms-wbt-server"}, "MS WBT Server"},
		{"mdns", 5353, portspec.UDP, []string{"mdns"}, "Multicast DNS"},
		{"ollama", 11434, portspec.TCP, []string{"ollama"}, "Ollama"},
		{"ollama udp is reserved", 11434, portspec.UDP, []string{""}, "Reserved"},
		{"http has three names", 80, portspec.TCP, []string{"http", "www", "www-http"}, "World Wide Web HTTP"},
		{"every protocol", 80, 0, []string{"http", "http", "www", "www", "www-http", "www-http", "http"}, "World Wide Web HTTP"},
		{"reserved", 1023, portspec.TCP, []string{""}, "Reserved"},
		{"port zero", 0, portspec.UDP, []string{""}, "Reserved"},
		{"unassigned range without protocol", 11440, portspec.UDP, []string{""}, "Unassigned"},
		{"named range", 6001, portspec.TCP, []string{"x11"}, "X Window System"},
		{"named range without protocol", 27005, portspec.SCTP, []string{"flex-lm"}, "FLEX LM (1-10)"},
		{"last registered port", 49151, portspec.TCP, []string{""}, "Reserved"},
		{"dynamic", 49160, 0, nil, ""},
		{"top of range", 65535, portspec.TCP, nil, ""},
	}
	r := Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.ByPort(tt.port, tt.proto)
			if diff := cmp.Diff(tt.want, names(got)); diff != "" {
				t.Errorf("ByPort(%d, %v) names mismatch (-want +got):\n%s", tt.port, tt.proto, diff)
			}
			if len(got) > 0 && got[0].Description != tt.desc {
				t.Errorf("ByPort(%d, %v)[0].Description = %q; want %q", tt.port, tt.proto, got[0].Description, tt.desc)
			}
			for _, e := range got {
				if !e.Covers(tt.port) || !matchProto(e.Proto, tt.proto) {
					t.Errorf("ByPort(%d, %v) returned %+v", tt.port, tt.proto, e)
				}
			}
		})
	}
}

func TestName(t *testing.T) {
	tests := []struct {
		port  portspec.Port
		proto portspec.Proto
		want  string
	}{
		{22, portspec.TCP, "ssh"},
		{22, portspec.SCTP, "ssh"},
		{80, portspec.TCP, "http"},
		{80, 0, "http"},
		{443, portspec.UDP, "https"},
		{53, portspec.UDP, "domain"},
		{3389, portspec.TCP, "ms-wbt-server"},
		{11434, portspec.TCP, "ollama"},
		{11434, portspec.UDP, ""},
		{11434, 0, "ollama"},
		{1023, portspec.TCP, ""},
		{6063, portspec.UDP, "x11"},            // range
		{27009, portspec.DCCP, "flex-lm"},      // range without protocol
		{6400, portspec.UDP, "boe-cms"},        // single port without protocol
		{750, 0, "rfile"},                      // TCP first
		{750, portspec.UDP, "kerberos-iv"},     // a described row before the undescribed "loadav"
		{2049, portspec.TCP, "nfs"},            // a described row before the undescribed "shilp"
		{113, portspec.TCP, "auth"},            // a described row before "ident"
		{49160, portspec.TCP, ""},              // dynamic
		{80, portspec.Proto(9), ""},            // unknown protocol
		{211, portspec.TCP, "914c-g"},          // registry order: the canonical name before its alias
		{4, portspec.TCP, ""},                  // unassigned
		{65535, portspec.UDP, ""},              // dynamic
		{5353, portspec.UDP, "mdns"},           // mDNS
		{123, portspec.UDP, "ntp"},             // NTP
		{161, portspec.UDP, "snmp"},            // SNMP
		{3306, portspec.TCP, "mysql"},          // MySQL
		{5432, portspec.TCP, "postgresql"},     // PostgreSQL
		{8080, portspec.TCP, "http-alt"},       // alternate HTTP
		{1433, portspec.TCP, "ms-sql-s"},       // SQL Server
		{6379, portspec.TCP, "redis"},          // Redis
		{27017, portspec.TCP, "mongodb"},       // MongoDB
		{9418, portspec.TCP, "git"},            // git daemon
		{25, portspec.TCP, "smtp"},             // SMTP
		{445, portspec.TCP, "microsoft-ds"},    // SMB
		{2049, portspec.UDP, "nfs"},            // NFS
		{5060, portspec.UDP, "sip"},            // SIP
		{1194, portspec.UDP, "openvpn"},        // OpenVPN
		{500, portspec.UDP, "isakmp"},          // IKE
		{67, portspec.UDP, "bootps"},           // DHCP
		{69, portspec.UDP, "tftp"},             // TFTP
		{514, portspec.UDP, "syslog"},          // syslog
		{1900, portspec.UDP, "ssdp"},           // SSDP
		{5900, portspec.TCP, "rfb"},            // VNC
		{3478, portspec.UDP, "stun"},           // STUN
		{51820, portspec.UDP, ""},              // WireGuard: not registered
		{9100, portspec.TCP, "hp-pdl-datastr"}, // raw printing
	}
	r := Default()
	for _, tt := range tests {
		if got := r.Name(tt.port, tt.proto); got != tt.want {
			t.Errorf("Name(%d, %v) = %q; want %q", tt.port, tt.proto, got, tt.want)
		}
	}
}

// TestNameAgreesWithByPort checks the O(1) table against a slow path for
// every port and protocol: the first assigned row of the best rank (a
// described single port, then any single port, then a range).
func TestNameAgreesWithByPort(t *testing.T) {
	r := Default()
	// Group rows by port once instead of calling ByPort 4*65536 times.
	var byPort [1 << 16][]int
	for i, e := range r.All() {
		if e.HasPort {
			for p := int(e.Low); p <= int(e.High); p++ {
				byPort[p] = append(byPort[p], i)
			}
		}
	}
	for p := range 1 << 16 {
		for proto := portspec.TCP; proto <= portspec.DCCP; proto++ {
			want, wantRank := "", uint8(3)
			for _, i := range byPort[p] {
				e := r.All()[i]
				if rank := primaryRank(&e); e.Name != "" && matchProto(e.Proto, proto) && rank < wantRank {
					want, wantRank = e.Name, rank
				}
			}
			if got := r.Name(portspec.Port(p), proto); got != want {
				t.Fatalf("Name(%d, %v) = %q; want %q", p, proto, got, want)
			}
		}
	}
}

func TestDynamicRangeUnassigned(t *testing.T) {
	r := Default()
	for _, e := range r.All() {
		if e.HasPort && e.High >= 49152 {
			t.Errorf("row %+v reaches into the dynamic range", e)
		}
	}
	for p := 49152; p <= 65535; p++ {
		if name := r.Name(portspec.Port(p), 0); name != "" {
			t.Fatalf("Name(%d, 0) = %q; want \"\"", p, name)
		}
	}
}

// TestEveryLowPortAnswered checks that every port below the dynamic range
// has a row (assigned, unassigned or reserved, for some protocol), so a
// lookup always has something to say about it.
func TestEveryLowPortAnswered(t *testing.T) {
	var seen [49152]bool
	for _, e := range Default().All() {
		for p := int(e.Low); e.HasPort && p <= int(e.High); p++ {
			seen[p] = true
		}
	}
	for p, ok := range seen {
		if !ok {
			t.Errorf("port %d has no row", p)
		}
	}
}

func TestByName(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string // distinct names in registry order
		ports   []string // distinct Ports() in registry order
	}{
		{"ssh", []string{"ssh"}, []string{"22", ""}}, // "" is the DNS-SD row
		{"SSH", []string{"ssh"}, []string{"22", ""}},
		{"https", []string{"https"}, []string{"443", ""}},
		{"cailic", []string{"CAIlic"}, []string{"216"}},
		{"x11", []string{"x11"}, []string{"6000-6063"}},
		{"914c/g", []string{"914c/g"}, []string{"211"}},
		{"zeromq", []string{"zeromq"}, []string{""}},
		{"?ttps", []string{"https"}, []string{"443", ""}},
		{"www*", []string{"www", "www-http", "www-ldap-gw", "www-dev"}, []string{"80", "1760", "2784"}},
		{"*-http", nil, nil}, // checked for shape below
		{"ollam?", []string{"ollama"}, []string{"11434"}},
		{"nosuchservice", nil, nil},
		{"", nil, nil},
		{"ssh*x", nil, nil},
	}
	r := Default()
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			got := r.ByName(tt.pattern)
			if tt.pattern == "*-http" {
				if len(got) < 10 {
					t.Fatalf("ByName(%q) = %d rows; want many", tt.pattern, len(got))
				}
				for _, e := range got {
					if !strings.HasSuffix(strings.ToLower(e.Name), "-http") {
						t.Errorf("ByName(%q) returned %q", tt.pattern, e.Name)
					}
				}
				return
			}
			var gotNames, gotPorts []string
			for _, e := range got {
				if !slices.Contains(gotNames, e.Name) {
					gotNames = append(gotNames, e.Name)
				}
				if !slices.Contains(gotPorts, e.Ports()) {
					gotPorts = append(gotPorts, e.Ports())
				}
			}
			if diff := cmp.Diff(tt.want, gotNames); diff != "" {
				t.Errorf("ByName(%q) names mismatch (-want +got):\n%s", tt.pattern, diff)
			}
			if diff := cmp.Diff(tt.ports, gotPorts); diff != "" {
				t.Errorf("ByName(%q) ports mismatch (-want +got):\n%s", tt.pattern, diff)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"http", "http", true},
		{"http", "https", false},
		{"http*", "http", true},
		{"http*", "https", true},
		{"http*", "xhttp", false},
		{"*http", "www-http", true},
		{"*http*", "sun-as-jpda-https", true},
		{"h?tp", "http", true},
		{"h?tp", "htp", false},
		{"*", "", true},
		{"*", "anything", true},
		{"?", "", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*b*c", "abcbc", true},
		{"**x", "yx", true},
		{"*a", "aaaa", true},
		{"*ab", "aab", true},
		{"", "", true},
		{"", "a", false},
		{"*", "*0", true}, // a '*' in the name is not a wildcard
		{"a*", "a*b", true},
		{"cailic", "CAIlic", true},
		{"c?il*", "CAIlic", true},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.name); got != tt.want {
			t.Errorf("glob(%q, %q) = %v; want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// FuzzGlob compares glob with the same pattern as a case-insensitive
// regular expression.
func FuzzGlob(f *testing.F) {
	f.Add("a*b*c", "aXXbYYc")
	f.Add("h?tp", "http")
	f.Add("*", "")
	f.Add("**x", "yx")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 64 || len(name) > 64 || !ascii(pattern) || !ascii(name) {
			return
		}
		pattern = strings.ToLower(pattern) // as eachName passes it
		var re strings.Builder
		re.WriteString(`(?si)\A`)
		for _, c := range pattern {
			switch c {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString(`\z`)
		want := regexp.MustCompile(re.String()).MatchString(name)
		if got := glob(pattern, name); got != want {
			t.Errorf("glob(%q, %q) = %v; want %v", pattern, name, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestPortsByName(t *testing.T) {
	tests := []struct {
		pattern string
		proto   portspec.Proto
		want    []portspec.Port
		wantErr error
		errText string
	}{
		{pattern: "ssh", proto: portspec.TCP, want: []portspec.Port{22}},
		{pattern: "SSH", proto: 0, want: []portspec.Port{22}},
		{pattern: "domain", proto: portspec.UDP, want: []portspec.Port{53}},
		{pattern: "http", proto: portspec.TCP, want: []portspec.Port{80}},
		{pattern: "www*", proto: portspec.TCP, want: []portspec.Port{80, 1760, 2784}},
		{pattern: "ollama", proto: portspec.TCP, want: []portspec.Port{11434}},
		{pattern: "kerberos-iv", proto: 0, want: []portspec.Port{750}},
		{pattern: "boe-cms", proto: portspec.TCP, want: []portspec.Port{6400}},
		{pattern: "nosuchservice", proto: portspec.TCP, wantErr: ErrUnknownService, errText: `"nosuchservice": not a service name in the IANA registry`},
		{pattern: "", proto: portspec.TCP, wantErr: ErrUnknownService, errText: `"": not a service name`},
		{pattern: "ollama", proto: portspec.UDP, wantErr: ErrNoPort, errText: `"ollama": no port registered for udp`},
		{pattern: "zeromq", proto: 0, wantErr: ErrNoPort, errText: `"zeromq": no port registered (a DNS-SD name only)`},
	}
	r := Default()
	for _, tt := range tests {
		got, err := r.PortsByName(tt.pattern, tt.proto)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("PortsByName(%q, %v) error = %v; want %q wrapping %v", tt.pattern, tt.proto, err, tt.errText, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("PortsByName(%q, %v) error = %v", tt.pattern, tt.proto, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("PortsByName(%q, %v) mismatch (-want +got):\n%s", tt.pattern, tt.proto, diff)
		}
	}

	x11, err := r.PortsByName("x11", portspec.TCP)
	if err != nil || len(x11) != 64 || x11[0] != 6000 || x11[63] != 6063 {
		t.Errorf("PortsByName(x11, tcp) = %d ports from %v, err %v; want 6000-6063", len(x11), x11[:min(len(x11), 2)], err)
	}
	https, err := r.PortsByName("http*", portspec.TCP)
	if err != nil || !slices.IsSorted(https) || !slices.Contains(https, 443) || !slices.Contains(https, 8080) {
		t.Errorf("PortsByName(http*, tcp) = %v, %v; want sorted and holding 443 and 8080", https, err)
	}
}

func TestSearch(t *testing.T) {
	r := Default()
	tests := []struct {
		text      string
		first     string // name of the best hit
		atLeast   int
		mustHave  []string
		mustAvoid []string
	}{
		{text: "kerberos", first: "kerberos", atLeast: 10, mustHave: []string{"kerberos-adm", "kerberos-iv", "kftp"}},
		{text: "Kerberos administration", first: "kerberos-adm", atLeast: 2, mustAvoid: []string{"kftp"}},
		{text: "secure shell", first: "ssh", atLeast: 2},
		{text: "ollama", first: "ollama", atLeast: 1},
		{text: "multicast dns", first: "mdns", atLeast: 2},
		{text: "compressnet", first: "compressnet", atLeast: 6}, // also in the notes of the reserved rows for 2 and 3
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got := r.Search(tt.text)
			if len(got) < tt.atLeast {
				t.Fatalf("Search(%q) = %d rows; want at least %d", tt.text, len(got), tt.atLeast)
			}
			if got[0].Name != tt.first {
				t.Errorf("Search(%q)[0] = %q; want %q", tt.text, got[0].Name, tt.first)
			}
			n := names(got)
			for _, want := range tt.mustHave {
				if !slices.Contains(n, want) {
					t.Errorf("Search(%q) lacks %q", tt.text, want)
				}
			}
			for _, avoid := range tt.mustAvoid {
				if slices.Contains(n, avoid) {
					t.Errorf("Search(%q) has %q; every word must match", tt.text, avoid)
				}
			}
			for _, e := range got {
				hay := strings.ToLower(e.Name + " " + e.Description + " " + e.Notes)
				for _, w := range strings.Fields(strings.ToLower(tt.text)) {
					if !strings.Contains(hay, w) {
						t.Errorf("Search(%q) returned %q (%q) without %q", tt.text, e.Name, e.Description, w)
					}
				}
			}
		})
	}
	for _, none := range []string{"", "   ", "zzqqxxnotaword", "kerberos zzqqxx"} {
		if got := r.Search(none); len(got) != 0 {
			t.Errorf("Search(%q) = %d rows; want none", none, len(got))
		}
	}
}

func TestEntryPorts(t *testing.T) {
	tests := []struct {
		e    Entry
		want string
	}{
		{Entry{Low: 80, High: 80, HasPort: true}, "80"},
		{Entry{Low: 11435, High: 11488, HasPort: true}, "11435-11488"},
		{Entry{Name: "zeromq"}, ""},
		{Entry{Low: 0, High: 0, HasPort: true}, "0"},
	}
	for _, tt := range tests {
		if got := tt.e.Ports(); got != tt.want {
			t.Errorf("%+v.Ports() = %q; want %q", tt.e, got, tt.want)
		}
	}
}

const hdr = "Service Name,Port Number,Transport Protocol,Description,Assignee,Contact,Registration Date,Modification Date,Reference,Service Code,Unauthorized Use Reported,Assignment Notes\n"

var parseErrorCases = []struct {
	name, in, want string
}{
	{"empty", "", "read registry header: EOF"},
	{"wrong header", strings.Replace(hdr, "Port Number", "Port", 1), `registry header column 2 is "Port"; want "Port Number"`},
	{"short header", "Service Name,Port Number\n", "wrong number of fields"},
	{"short record", hdr + "ssh,22,tcp\n", "record on line 2: wrong number of fields"},
	{"port not a number", hdr + "ssh,2x,tcp,,,,,,,,,\n", `registry line 2 column 5: port "2x": "2x" is not a port number`},
	{"port too big", hdr + "ssh,70000,tcp,,,,,,,,,\n", `registry line 2 column 5: port "70000": port 70000 out of range 0-65535`},
	{"range backwards", hdr + ",20-10,,Unassigned,,,,,,,,\n", `registry line 2 column 2: port range "20-10" runs backwards`},
	{"range open", hdr + ",20-,,Unassigned,,,,,,,,\n", `registry line 2 column 2: port "20-": "" is not a port number`},
	{"bad protocol", hdr + "ssh,22,icmp,,,,,,,,,\n", `registry line 2 column 8: unknown protocol "icmp"`},
	{"neither name nor port", hdr + ",,tcp,,,,,,,,,\n", "registry line 2: row has neither a service name nor a port"},
	{"bad quote", hdr + "ssh,22,tcp,\"unterminated,,,,,,,,\n", "extraneous or missing \" in quoted-field"},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %v; want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseSmall(t *testing.T) {
	in := hdr +
		"ssh,22,tcp,The Secure Shell (SSH) Protocol,[RFC4251],[Tatu_Ylonen],,,[RFC4251],,,\n" +
		",23-30,,Unassigned,,,,,,,,\n" +
		"zeromq,,udp,\"High performance\nbrokerless messaging\",,,2012-04-24,,,,,Defined TXT keys\n"
	r, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Name: "ssh", Low: 22, High: 22, HasPort: true, Proto: portspec.TCP, Description: "The Secure Shell (SSH) Protocol", Assignee: "[RFC4251]", Contact: "[Tatu_Ylonen]", Reference: "[RFC4251]"},
		{Low: 23, High: 30, HasPort: true, Description: "Unassigned"},
		{Name: "zeromq", Proto: portspec.UDP, Description: "High performance\nbrokerless messaging", Registered: "2012-04-24", Notes: "Defined TXT keys"},
	}
	if diff := cmp.Diff(want, r.All()); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
	if got := r.Name(22, portspec.TCP); got != "ssh" {
		t.Errorf("Name(22, tcp) = %q; want ssh", got)
	}
}

// FuzzParse feeds Parse arbitrary registries: it must return an error or a
// registry whose rows are well-formed and whose Name table agrees with them.
func FuzzParse(f *testing.F) {
	for _, tt := range parseErrorCases {
		f.Add(tt.in)
	}
	f.Add(hdr + "ssh,22,tcp,SSH,,,,,,,,\n,23-30,,Unassigned,,,,,,,,\nx,6000-6003,,X,,,,,,,,\n")
	// The first hundred records of the real file.
	lines := 0
	i := strings.IndexFunc(ianaCSV, func(r rune) bool {
		if r == '\n' {
			lines++
		}
		return lines == 100
	})
	f.Add(ianaCSV[:i+1])
	f.Fuzz(func(t *testing.T, in string) {
		r, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, e := range r.All() {
			if e.Name == "" && !e.HasPort {
				t.Fatalf("row without name or port: %+v", e)
			}
			if e.HasPort && e.Low > e.High {
				t.Fatalf("backwards row: %+v", e)
			}
			if e.Name != "" && e.HasPort && e.Proto != 0 {
				if got := r.Name(e.Low, e.Proto); got == "" {
					t.Fatalf("Name(%d, %v) = \"\" despite row %+v", e.Low, e.Proto, e)
				}
			}
		}
	})
}

func TestParseReader(t *testing.T) {
	// Parse reads from any reader, not only the embedded string.
	_, err := Parse(io.MultiReader(strings.NewReader(hdr), strings.NewReader("ssh,22,tcp,,,,,,,,,\n")))
	if err != nil {
		t.Errorf("Parse(multi reader) = %v", err)
	}
}

package cli

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

var lookupArgCases = []struct {
	arg     string
	want    lookupQuery
	wantErr string
}{
	{arg: "22", want: lookupQuery{port: 22, isPort: true}},
	{arg: "0", want: lookupQuery{port: 0, isPort: true}},
	{arg: "65535", want: lookupQuery{port: 65535, isPort: true}},
	{arg: "5353/udp", want: lookupQuery{port: 5353, isPort: true, proto: portspec.UDP}},
	{arg: "tcp/443", want: lookupQuery{port: 443, isPort: true, proto: portspec.TCP}},
	{arg: "443/TCP", want: lookupQuery{port: 443, isPort: true, proto: portspec.TCP}},
	{arg: "sctp/9", want: lookupQuery{port: 9, isPort: true, proto: portspec.SCTP}},
	{arg: "https", want: lookupQuery{name: "https"}},
	{arg: "http*", want: lookupQuery{name: "http*"}},
	{arg: "ssh/tcp", want: lookupQuery{name: "ssh", proto: portspec.TCP}},
	{arg: "udp/domain", want: lookupQuery{name: "domain", proto: portspec.UDP}},
	{arg: "914c/g", want: lookupQuery{name: "914c/g"}}, // a registered name with a slash
	{arg: "/udp", want: lookupQuery{name: "/udp"}},
	{arg: "tcp/", want: lookupQuery{name: "tcp/"}},
	{arg: "tcp", want: lookupQuery{name: "tcp"}},
	{arg: "70000", wantErr: "port 70000 out of range 0-65535"},
	{arg: "70000/udp", wantErr: "port 70000 out of range 0-65535"},
	{arg: "udp/99999999999999999999", wantErr: "port 99999999999999999999 out of range 0-65535"},
	{arg: "", wantErr: "empty argument"},
	{arg: "  ", wantErr: "empty argument"},
}

func TestParseLookupArg(t *testing.T) {
	for _, tt := range lookupArgCases {
		got, err := parseLookupArg(tt.arg)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseLookupArg(%q) error = %v; want %q", tt.arg, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseLookupArg(%q) error = %v", tt.arg, err)
			continue
		}
		tt.want.arg = tt.arg
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(lookupQuery{})); diff != "" {
			t.Errorf("parseLookupArg(%q) mismatch (-want +got):\n%s", tt.arg, diff)
		}
	}
}

// FuzzParseLookupArg checks that any argument parses to a port, a name or an
// error, and that a parsed port round-trips through its decimal form.
func FuzzParseLookupArg(f *testing.F) {
	for _, tt := range lookupArgCases {
		f.Add(tt.arg)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		q, err := parseLookupArg(arg)
		if err != nil {
			return
		}
		if q.isPort == (q.name != "") {
			t.Fatalf("parseLookupArg(%q) = %+v; want exactly one of port and name", arg, q)
		}
		if q.isPort {
			again, err := parseLookupArg(strconv.Itoa(int(q.port)))
			if err != nil || again.port != q.port || !again.isPort {
				t.Fatalf("parseLookupArg(%q) = port %d, which does not round-trip: %+v, %v", arg, q.port, again, err)
			}
		}
	})
}

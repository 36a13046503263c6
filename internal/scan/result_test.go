package scan

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

func TestStateText(t *testing.T) {
	for _, s := range []State{Unknown, Open, Closed, Filtered, OpenFiltered, Unfiltered, ClosedFiltered} {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
	if got := OpenFiltered.String(); got != "open|filtered" {
		t.Errorf("OpenFiltered.String() = %q; want open|filtered", got)
	}
	if _, err := ParseState("ajar"); err == nil {
		t.Error(`ParseState("ajar") succeeded`)
	}
}

func TestResultJSON(t *testing.T) {
	r := Result{
		Addr: netip.MustParseAddr("198.18.0.2"), Port: 443, Proto: portspec.TCP,
		State: Open, Reason: ReasonSynAck, RTT: 1234567 * time.Nanosecond,
		Service: "https", Banner: "TLS 1.3 alpn=h2",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Pos: 17,
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"addr":"198.18.0.2","port":443,"proto":"tcp","state":"open","reason":"syn-ack","rtt_ms":1.235,` +
		`"service":"https","banner":"TLS 1.3 alpn=h2","time":"2026-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Fatalf("json.Marshal(result) = %s; want %s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	r.RTT = r.RTT.Round(time.Microsecond)
	r.Pos = 0 // not in JSON
	if diff := cmp.Diff(r, back, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	// Closed and filtered ports carry no service or banner fields.
	b, _ = json.Marshal(Result{Addr: netip.MustParseAddr("::1"), Port: 1, Proto: portspec.TCP, State: Filtered, Reason: ReasonNoResponse})
	if want := `{"addr":"::1","port":1,"proto":"tcp","state":"filtered","reason":"no-response","rtt_ms":0}`; string(b) != want {
		t.Errorf("json.Marshal(filtered) = %s; want %s", b, want)
	}
}

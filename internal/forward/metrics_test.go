package forward

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metricsText gathers s's metrics through a pedantic registry (which
// checks them against their descriptions) and renders the text format a
// scrape would get.
func metricsText(t *testing.T, s *Server) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// metricValue finds one series' value in a scrape, or fails.
func metricValue(t *testing.T, text, series string) string {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, text)
	return ""
}

// TestMetricsCountBytesAsTheyMove: a long tunnel's bytes showed only when
// it ended (an idle graph, then a spike); now they show while it runs.
func TestMetricsCountBytesAsTheyMove(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		rule         Rule
	}{
		{"loop", "", Rule{Name: "tunnel", Listen: "127.0.0.1:0"}},
		// Connections from a trusted proxy relay on the goroutine path.
		{"handoff", "PROXY TCP4 198.18.0.9 198.18.0.1 4000 80\r\n", Rule{Name: "tunnel", Listen: "127.0.0.1:0", TrustedProxies: mustPrefixes("127.0.0.0/8")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rule
			r.Targets = []string{backend(t, echo)}
			s, _ := start(t, r)
			c := dial(t, s, "tunnel")
			io.WriteString(c, tc.header)
			msg := strings.Repeat("x", 100000)
			roundTrip(t, c, msg)
			want := fmt.Sprint(len(msg))
			waitFor(t, "bytes in the metrics while the connection is open", func() bool {
				m := metricsText(t, s)
				return metricValue(t, m, `portolan_forward_bytes_total{direction="to_target",proto="tcp",rule="tunnel"}`) == want &&
					metricValue(t, m, `portolan_forward_bytes_total{direction="to_client",proto="tcp",rule="tunnel"}`) == want
			})
			c.Close()
		})
	}
	s, _ := start(t, Rule{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpBackend(t, udpEcho)}})
	u, err := net.Dial("udp", s.Addr("u").String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	udpExchange(t, u, "twelve bytes")
	waitFor(t, "UDP bytes while the session is open", func() bool {
		return metricValue(t, metricsText(t, s), `portolan_forward_bytes_total{direction="to_client",proto="udp",rule="u"}`) == "12"
	})
}

// TestMetricsPerTargetAndRejections: per-target series, PROXY header
// failures counted, and connections_total counting only what was
// relayed (it counted dial failures too).
func TestMetricsPerTargetAndRejections(t *testing.T) {
	up := backend(t, echo)
	down := closedPort(t)
	s, _ := start(t,
		Rule{Name: "two", Listen: "127.0.0.1:0", Targets: []string{down, up}, Balance: FirstHealthy, MaxFails: -1},
		Rule{Name: "dead", Listen: "127.0.0.1:0", Targets: []string{down}},
		Rule{Name: "proxied", Listen: "127.0.0.1:0", Targets: []string{up}, TrustedProxies: mustPrefixes("127.0.0.0/8"), ConnectTimeout: 5 * time.Second})
	c := dial(t, s, "two")
	roundTrip(t, c, "hello")
	expectReset(t, s, "dead", "all targets down")
	bad := dial(t, s, "proxied")
	io.WriteString(bad, "PROXY NONSENSE\r\n")
	expectResetOn(t, bad, "bad PROXY header")

	m := metricsText(t, s)
	for series, want := range map[string]string{
		`portolan_forward_target_connections_active{proto="tcp",rule="two",target="` + up + `"}`:  "1",
		`portolan_forward_target_connections_total{proto="tcp",rule="two",target="` + up + `"}`:   "1",
		`portolan_forward_target_dial_errors_total{proto="tcp",rule="two",target="` + down + `"}`: "1",
		`portolan_forward_target_up{proto="tcp",rule="two",target="` + up + `"}`:                  "1",
		`portolan_forward_target_up{proto="tcp",rule="dead",target="` + down + `"}`:               "0",
		`portolan_forward_connections_total{proto="tcp",rule="two"}`:                              "1",
		`portolan_forward_connections_total{proto="tcp",rule="dead"}`:                             "0",
		`portolan_forward_dial_errors_total{proto="tcp",rule="dead"}`:                             "1",
		`portolan_forward_rejected_total{proto="tcp",reason="proxy_header",rule="proxied"}`:       "1",
	} {
		if got := metricValue(t, m, series); got != want {
			t.Errorf("%s = %s; want %s", series, got, want)
		}
	}
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

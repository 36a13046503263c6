package scan

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
)

// TestScanBanners runs the whole engine with banners: open ports get a
// banner and a service guessed from it, which beats the registry's name.
func TestScanBanners(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer web.Close()
	ssh := server(t, "SSH-2.0-test\r\n", nil)
	a := netip.MustParseAddr("127.0.0.1")
	closed := closedPort(t, a)
	webPort := portspec.Port(addrPort(t, web.URL).Port())
	sshPort := portspec.Port(ssh.Port())
	s := Scanner{
		Banners:     &Grabber{Wait: 100 * time.Millisecond},
		ServiceName: func(portspec.Port, portspec.Proto) string { return "registry-name" },
	}
	got, sum := collect(t, s, space{addrs: []netip.Addr{a}, ports: []portspec.Port{webPort, sshPort, closed}})
	want := map[portspec.Port][2]string{
		webPort: {"http", "HTTP/1."},
		sshPort: {"ssh", "SSH-2.0-test"},
		closed:  {"registry-name", ""},
	}
	for p, w := range want {
		r := got[portKey{a, p}]
		if r.Service != w[0] || !strings.HasPrefix(r.Banner, w[1]) || (w[1] == "" && r.Banner != "") {
			t.Errorf("port %d: service %q banner %q; want %q and a banner starting %q", p, r.Service, r.Banner, w[0], w[1])
		}
	}
	if sum.Open != 2 || !sum.Complete {
		t.Errorf("summary %+v; want 2 open, complete", sum)
	}
}

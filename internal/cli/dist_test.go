package cli

import (
	"os"
	"strings"
	"testing"
)

// TestSystemdUnitMatchesDocs: the unit shipped in dist/ is the one
// docs/forward.md shows, and it runs the relay without root and with
// readiness notification, as the docs say.
func TestSystemdUnitMatchesDocs(t *testing.T) {
	unit, err := os.ReadFile("../../dist/portolan-forward.service")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/forward.md")
	if err != nil {
		t.Fatal(err)
	}
	body := string(unit[strings.Index(string(unit), "[Unit]"):])
	if !strings.Contains(string(doc), "```ini\n"+body+"```") {
		t.Error("dist/portolan-forward.service differs from the unit in docs/forward.md")
	}
	for _, want := range []string{"Type=notify", "DynamicUser=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "forward --check -c", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(body, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}

// TestDaemonUnitsMatchDocs: knockd's and watch's units are the ones their
// docs show, each a notify service of an unprivileged dynamic user with
// CAP_NET_ADMIN alone (TestDaemonsRunWithOnlyCapNetAdmin runs them so).
func TestDaemonUnitsMatchDocs(t *testing.T) {
	for _, d := range []string{"knockd", "watch"} {
		unit, err := os.ReadFile("../../dist/portolan-" + d + ".service")
		if err != nil {
			t.Fatal(err)
		}
		doc, err := os.ReadFile("../../docs/" + strings.TrimSuffix(d, "d") + ".md")
		if err != nil {
			t.Fatal(err)
		}
		body := string(unit[strings.Index(string(unit), "[Unit]"):])
		if !strings.Contains(string(doc), "```ini\n"+body+"```") {
			t.Errorf("dist/portolan-%s.service differs from the unit in its docs", d)
		}
		for _, want := range []string{"Type=notify", "DynamicUser=yes", "AmbientCapabilities=CAP_NET_ADMIN\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "ExecReload=/bin/kill -HUP $MAINPID", "portolan " + d + " "} {
			if !strings.Contains(body, want) {
				t.Errorf("the %s unit lacks %q", d, want)
			}
		}
	}
}

package cli

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
)

// TestScanResumeOldRecipe resumes scans stored by portolan before recipes
// had a type of their own: their options are the scan command's flags as
// JSON, with nmap's scan type letter, and the oldest have Go-cased target
// flags. The resume must rebuild the same space and finish the scan.
func TestScanResumeOldRecipe(t *testing.T) {
	ln := newCountingListener(t)
	closed := unusedPort(t, ln.addr)
	ports := fmt.Sprintf("%d,%d", ln.port, closed)
	cases := []struct{ name, options string }{
		{"flag keys", `{"targets":["` + ln.addr.String() + `"],"target_flags":{"max_hosts":16777216},"ports":"` + ports +
			`","scan_type":"T","retries":-1,"max_timeout":2000000000,"names":{},"seed":99}`},
		{"Go-cased target flags, no scan type", `{"targets":["` + ln.addr.String() + `"],"target_flags":{"MaxHosts":16777216,"IncludeReserved":true},"ports":"` + ports +
			`","scan_type":"","seed":99}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "scans.db")
			st, err := store.Open(t.Context(), db)
			if err != nil {
				t.Fatal(err)
			}
			set := &portspec.Set{}
			set.Add(portspec.TCP, ln.port)
			set.Add(portspec.TCP, closed)
			id, err := st.CreateScan(t.Context(), store.ScanInfo{
				Started: time.Now(), Status: store.Running, Command: "portolan scan " + ln.addr.String() + " -p " + ports,
				Version: "old", Targets: ln.addr.String(), Ports: "-p " + ports, PortSet: set, Prober: "connect",
				Seed: 99, Hosts: 1, Space: 2, Options: []byte(c.options),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.FinishScan(t.Context(), id, store.Interrupted, store.Counts{}); err != nil {
				t.Fatal(err)
			}
			st.Close()

			r := runChild(t, portolanCmd(t, t.Context(), "scan", "--resume", fmt.Sprint(id), "--db", db, "--format", "jsonl"))
			if r.code != 0 {
				t.Fatalf("resume of a scan with an old recipe: %v", r)
			}
			got := resultSet(t, "resumed", jsonlResults(t, r.stdout))
			want := map[resultKey]resultOutcome{
				{ln.addr, ln.port, portspec.TCP}: {scan.Open.String(), scan.ReasonSynAck},
				{ln.addr, closed, portspec.TCP}:  {scan.Closed.String(), scan.ReasonConnRefused},
			}
			diffSets(t, "resumed", got, want)
			si, _ := storedScan(t, db, id)
			if si.Status != store.Done {
				t.Errorf("scan %d after the resume: %s; want done", id, si.Status)
			}
		})
	}
}

// TestStoredRecipeProber: a resume runs the prober the scan ran, which a
// version-1 recipe does not say when it fell back or left it to the start.
func TestStoredRecipeProber(t *testing.T) {
	for _, c := range []struct{ options, recorded, want string }{
		{`{"scan_type":"S","fallback":true,"seed":1}`, "connect", "connect"},
		{`{"scan_type":"","seed":1}`, "syn", "syn"},
		{`{"scan_type":"U","seed":1}`, "udp", "udp"},
		{`{"version":2,"prober":"udp","seed":1}`, "", "udp"},
		{`{"scan_type":"","seed":1}`, "", "connect"},
	} {
		r, err := storedRecipe(store.ScanInfo{ID: 1, Prober: c.recorded, Options: []byte(c.options)})
		if err != nil || r.Prober != c.want {
			t.Errorf("storedRecipe(%s, prober %q) = %q, %v; want %q", c.options, c.recorded, r.Prober, err, c.want)
		}
	}
}

package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"portolan/internal/testenv"
)

// TestFleetScripts runs the scripts of testdata/fleet: named scans run as
// shard processes (this test binary as portolan) against a real PostgreSQL
// server, a throwaway cluster; each script gets a database of its own in
// $PORTOLAN_DB, and the server as $PGURL_BASE for scripts that need more.
func TestFleetScripts(t *testing.T) {
	pg := testenv.StartPostgres(t)
	cmds := map[string]func(ts *testscript.TestScript, neg bool, args []string){"sameresults": cmdSameResults}
	for k, v := range scriptCmds {
		cmds[k] = v
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/fleet",
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			url, err := pg.CreateDatabase()
			if err != nil {
				return err
			}
			env.Setenv("PORTOLAN_DB", url)
			return nil
		},
		Cmds: cmds,
	})
}

// cmdSameResults compares two JSON Lines result files as a user would:
// the same ports in the same states for the same reasons, each once.
//
//	sameresults A.jsonl B.jsonl
func cmdSameResults(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sameresults A.jsonl B.jsonl")
	}
	a, b := readVerdicts(ts, args[0]), readVerdicts(ts, args[1])
	same := slices.Equal(a, b)
	if same == neg {
		ts.Fatalf("%s has %d results, %s has %d; same: %v\n%s: %v\n%s: %v", args[0], len(a), args[1], len(b), same, args[0], a, args[1], b)
	}
}

// readVerdicts reads "addr port/proto state reason" of each result of a
// JSON Lines file, sorted; a port given twice fails.
func readVerdicts(ts *testscript.TestScript, name string) []string {
	f, err := os.Open(ts.MkAbs(name))
	ts.Check(err)
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			Addr   string `json:"addr"`
			Port   int    `json:"port"`
			Proto  string `json:"proto"`
			State  string `json:"state"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			ts.Fatalf("%s: %v", name, err)
		}
		key := fmt.Sprintf("%s %d/%s", r.Addr, r.Port, r.Proto)
		if seen[key] {
			ts.Fatalf("%s: %s twice", name, key)
		}
		seen[key] = true
		out = append(out, key+" "+r.State+" "+r.Reason)
	}
	ts.Check(sc.Err())
	slices.Sort(out)
	return out
}

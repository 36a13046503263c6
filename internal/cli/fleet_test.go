package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
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

// TestShardFromEnv: --shard VAR/N takes a 0-based index from the
// environment, as a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX.
func TestShardFromEnv(t *testing.T) {
	t.Setenv("JOB_COMPLETION_INDEX", "0")
	t.Setenv("AWS_BATCH_JOB_ARRAY_INDEX", "15")
	t.Setenv("BAD_INDEX", "x")
	tests := []struct {
		in, want, err string
	}{
		{"3/16", "3/16", ""},
		{"", "", ""},
		{"JOB_COMPLETION_INDEX/16", "1/16", ""},
		{"AWS_BATCH_JOB_ARRAY_INDEX/16", "16/16", ""},
		{"NOT_SET_ANYWHERE/4", "", "the environment variable NOT_SET_ANYWHERE is not set"},
		{"BAD_INDEX/4", "", `BAD_INDEX="x" is not a 0-based index`},
		{"lower/4", "lower/4", ""}, // not a variable's name: ParseShard's to refuse
	}
	for _, tt := range tests {
		got, err := shardFromEnv(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("shardFromEnv(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzShardFromEnv(f *testing.F) {
	for _, s := range []string{"3/16", "JOB_COMPLETION_INDEX/16", "A/", "/4", "_/1", "1A/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := shardFromEnv(s)
		name, n, ok := strings.Cut(s, "/")
		switch {
		case !ok || name == "" || !isEnvName(name):
			if err != nil || out != s {
				t.Errorf("shardFromEnv(%q) = %q, %v; want it unchanged", s, out, err)
			}
		case err == nil && !strings.HasSuffix(out, "/"+n):
			t.Errorf("shardFromEnv(%q) = %q; want the count %q kept", s, out, n)
		}
	})
}

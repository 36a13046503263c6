package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// noJSON are the commands without a --json result, and why.
var noJSON = map[string]string{
	"completion":       "writes a shell script",
	"man":              "writes man pages",
	"help":             "prints help",
	"watch":            "a stream of JSON Lines while it runs (watchports_linux_test.go reads them)",
	"store load-spill": "needs a real spill file: TestFleetDatabaseDown decodes its --json",
}

// TestJSONEverywhere runs every command with --json and checks what a
// program reading it relies on: the output decodes (one document, or JSON
// Lines), every key is snake_case, and an empty answer is [] or {}, never
// nothing. A command added without a case here fails the test.
func TestJSONEverywhere(t *testing.T) {
	testenv.RequireRoot(t) // the firewall's commands, in a lab namespace
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("PORTOLAN_RUNTIME_DIR", t.TempDir())
	t.Setenv("PORTOLAN_CONFIG_DIR", t.TempDir())  // enable's saved rules
	t.Setenv("PORTOLAN_SYSTEMD_DIR", t.TempDir()) // and its boot unit
	lab, err := netlab.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	h, err := lab.AddHost("fw")
	if err != nil {
		t.Fatal(err)
	}
	ns := h.Netns()

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	profile := filepath.Join(dir, "p.yaml")
	os.WriteFile(profile, []byte("rules:\n  - allow: 22/tcp\n"), 0o644)

	// Each command with the arguments of one real answer, and where one
	// exists, of an empty one. Order matters: the scan stores scan 1.
	cases := map[string][][]string{
		"ephemeral":    {{"ephemeral"}},
		"free":         {{"free", "-n", "2"}},
		"history":      {{"history"}},
		"kill":         {{"kill", port, "--dry-run"}},
		"lookup":       {{"lookup", "ssh"}, {"lookup", "--search", "zzqqxxnothing"}},
		"ls":           {{"ls"}, {"ls", "--port", "1"}},
		"ports":        {{"ports", "22,80-82"}},
		"scan":         {{"scan", "127.0.0.1", "-p", port, "-oX", filepath.Join(dir, "scan.xml")}, {"scan", "127.0.0.1", "-p", port}},
		"show":         {{"show", "1"}, {"show", "1", "--state", "filtered"}},
		"targets":      {{"targets", "198.18.0.0/30"}},
		"version":      {{"version"}},
		"wait":         {{"wait", "127.0.0.1:" + port}},
		"who":          {{"who", port}, {"who", "1"}},
		"why":          {{"why", "127.0.0.1:" + port}},
		"forward":      {{"forward", "--check", ":1", "198.18.0.2:1"}},
		"knock":        {{"knock", "127.0.0.1", "7000", "8000/udp"}},
		"knock keygen": {{"knock", "keygen", "-o", filepath.Join(dir, "client.key")}},
		"knockd":       {{"knockd", "--check", "--protect", "22/tcp", "--sequence", "7000,8000/udp"}},
		"events":       {{"events", "--since", "1h"}},
		"diff":         {{"diff", "1", "2"}},
		"report":       {{"report", "2", "-o", filepath.Join(dir, "report.html")}},
		"import":       {{"import", filepath.Join(dir, "scan.xml")}},

		"firewall list":           {{"firewall", "--netns", ns, "list"}},
		"firewall plan":           {{"firewall", "--netns", ns, "plan", "-f", profile}},
		"firewall apply":          {{"firewall", "--netns", ns, "apply", "-f", profile}},
		"firewall allow":          {{"firewall", "--netns", ns, "allow", "80/tcp"}},
		"firewall deny":           {{"firewall", "--netns", ns, "deny", "23/tcp"}},
		"firewall reject":         {{"firewall", "--netns", ns, "reject", "24/tcp"}},
		"firewall limit":          {{"firewall", "--netns", ns, "limit", "25/tcp"}},
		"firewall log":            {{"firewall", "--netns", ns, "log", "26/tcp"}},
		"firewall delete":         {{"firewall", "--netns", ns, "delete", "deny", "23/tcp"}},
		"firewall default-policy": {{"firewall", "--netns", ns, "default-policy", "accept"}},
		"firewall export":         {{"firewall", "--netns", ns, "export"}},
		"firewall save":           {{"firewall", "--netns", ns, "save", "-f", filepath.Join(dir, "saved")}},
		"firewall restore":        {{"firewall", "--netns", ns, "restore", "-f", filepath.Join(dir, "saved")}},
		"firewall confirm":        {{"firewall", "--netns", ns, "confirm"}},
		"firewall enable":         {{"firewall", "--netns", ns, "enable"}},
		"firewall disable":        {{"firewall", "--netns", ns, "disable"}, {"firewall", "--netns", ns, "disable"}},
		"firewall reset":          {{"firewall", "--netns", ns, "reset"}},
	}
	// scan stores scan 1 for show; the firewall's table is made, changed,
	// saved and restored, then removed.
	order := []string{"scan", "show", "ephemeral", "free", "history", "kill", "lookup", "ls", "ports",
		"targets", "version", "wait", "who", "why", "forward", "knock", "knock keygen", "knockd", "events", "diff", "report", "import",
		"firewall list", "firewall plan", "firewall apply", "firewall allow", "firewall deny",
		"firewall reject", "firewall limit", "firewall log", "firewall delete", "firewall default-policy",
		"firewall export", "firewall save", "firewall restore", "firewall confirm", "firewall enable",
		"firewall disable", "firewall reset"}
	for name := range cases {
		if !slices.Contains(order, name) {
			t.Errorf("case %q is missing from the order", name)
		}
	}

	// Every leaf command has a case or a reason.
	var walk func(path []string, c *cobra.Command)
	walk = func(path []string, c *cobra.Command) {
		for _, sub := range c.Commands() {
			p := append(slices.Clone(path), sub.Name())
			name := strings.Join(p, " ")
			if sub.Hidden || noJSON[name] != "" {
				continue
			}
			if sub.HasSubCommands() {
				walk(p, sub)
				continue
			}
			if _, ok := cases[name]; !ok {
				t.Errorf("portolan %s has no --json case in TestJSONEverywhere (or a reason in noJSON)", name)
			}
		}
	}
	walk(nil, NewRoot(&Globals{io: IO{Out: io.Discard, ErrOut: io.Discard}}))

	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	for _, name := range order {
		for _, args := range cases[name] {
			args = append(args, "--json")
			var out, errOut bytes.Buffer
			code := Main(context.Background(), args, strings.NewReader(""), &out, &errOut)
			what := "portolan " + strings.Join(args, " ")
			if code != ExitOK && code != ExitNotFound && code != ExitError {
				t.Errorf("%s: exit %d\n%s", what, code, errOut.String())
				continue
			}
			if strings.TrimSpace(out.String()) == "" {
				t.Errorf("%s: exit %d and no JSON on stdout; want [] or {} for nothing\nstderr: %s", what, code, errOut.String())
				continue
			}
			dec := json.NewDecoder(&out)
			for n := 0; ; n++ {
				var v any
				if err := dec.Decode(&v); err == io.EOF {
					break
				} else if err != nil {
					t.Errorf("%s: document %d does not decode: %v", what, n+1, err)
					break
				}
				for _, k := range keys(v) {
					if !snake.MatchString(k) {
						t.Errorf("%s: key %q is not snake_case", what, k)
					}
				}
			}
		}
	}
}

// keys returns every object key in v, at any depth, once each. Keys of
// objects that are maps of data (a count per state, say) are keys too, so
// data-named keys must be snake_case as well, or live in a list.
func keys(v any) []string {
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				seen[k] = true
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}

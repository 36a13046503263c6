// Command firewall-bench times portolan's firewall apply and plan on a
// large profile against `nft -f` of the same rules, in network namespaces
// of its own (internal/netlab), in one run: the first apply of N rules,
// re-applying the identical file, and applying it with one rule changed.
// Run it as root through bench/firewall/run.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"portolan/internal/firewall"
	"portolan/internal/netlab"
)

func main() {
	n := flag.Int("n", 10000, "rules in the profile")
	rounds := flag.Int("rounds", 5, "timed rounds of each step")
	portolan := flag.String("portolan", "", "the portolan binary (required)")
	baseline := flag.String("baseline", "", "another portolan binary (an older build) to time in the same rounds, in a namespace of its own")
	limit := flag.Duration("limit", 300*time.Second, "time limit of one command")
	flag.Parse()
	if *portolan == "" {
		fmt.Fprintln(os.Stderr, "firewall-bench: -portolan is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *portolan, *baseline, *n, *rounds, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "firewall-bench:", err)
		os.Exit(1)
	}
}

// rules returns n distinct rules of the kinds a large profile holds:
// open ports, ports closed to a source, refused ranges, IPv6 sources.
// changed alters the rule in the middle.
func rules(n int, changed bool) []firewall.RuleSpec {
	out := make([]firewall.RuleSpec, n)
	for i := range n {
		port := 1024 + i%60000
		switch i % 4 {
		case 0:
			out[i] = firewall.RuleSpec{Action: "allow", Ports: strconv.Itoa(port) + "/tcp"}
		case 1:
			out[i] = firewall.RuleSpec{Action: "deny", Ports: strconv.Itoa(port) + "/udp", From: fmt.Sprintf("198.18.%d.%d", i/256%256, i%256)}
		case 2:
			out[i] = firewall.RuleSpec{Action: "reject", Ports: fmt.Sprintf("%d-%d/tcp", port, port+2), From: "198.18.0.0/15"}
		case 3:
			out[i] = firewall.RuleSpec{Action: "allow", Ports: strconv.Itoa(port), From: fmt.Sprintf("fd00::%x", i)}
		}
	}
	if changed {
		out[n/2].Ports = "9/tcp"
	}
	return out
}

// profile writes rules as a portolan profile.
func profile(specs []firewall.RuleSpec) string {
	var b strings.Builder
	b.WriteString("policy: accept\nrules:\n")
	for _, s := range specs {
		fmt.Fprintf(&b, "  - %s: %s\n", s.Action, s.Ports)
		if s.From != "" {
			fmt.Fprintf(&b, "    from: %s\n", s.From)
		}
	}
	return b.String()
}

// nftFile writes the same rules as an nft script that replaces its table
// atomically, the usual `nft -f` idiom: the chain portolan writes, line for
// line (firewall.Ruleset.NFT), in a table of nft's own.
func nftFile(specs []firewall.RuleSpec) (string, error) {
	rs := &firewall.Ruleset{}
	for _, s := range specs {
		r, err := s.Rule(nil, time.Now())
		if err != nil {
			return "", err
		}
		rs.Rules = append(rs.Rules, r)
	}
	lines, err := rs.NFT()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("table inet nftbench\ndelete table inet nftbench\ntable inet nftbench {\n\tchain input {\n")
	for _, l := range lines {
		b.WriteString("\t\t" + l + "\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

type step struct {
	name  string
	times []time.Duration
}

func run(ctx context.Context, portolan, baseline string, n, rounds int, limit time.Duration) error {
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s: %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "firewall-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			panic(err)
		}
		return p
	}
	a, b := rules(n, false), rules(n, true)
	profA, profB := write("a.yaml", profile(a)), write("b.yaml", profile(b))
	na, err := nftFile(a)
	if err != nil {
		return err
	}
	nb, err := nftFile(b)
	if err != nil {
		return err
	}
	nftA, nftB := write("a.nft", na), write("b.nft", nb)

	lab, err := netlab.New()
	if err != nil {
		return err
	}
	defer lab.Close()
	plHost, err := lab.AddHost("pl")
	if err != nil {
		return err
	}
	nftHost, err := lab.AddHost("nft")
	if err != nil {
		return err
	}
	var baseHost *netlab.Host
	if baseline != "" {
		if baseHost, err = lab.AddHost("base"); err != nil {
			return err
		}
	}
	// Both tools run the same way, through ip netns exec.
	cmd := func(h *netlab.Host, name string, args ...string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		c := h.Command(cctx, name, args...)
		c.Env = append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+filepath.Join(dir, "run-"+h.Name()), "SSH_CONNECTION=")
		start := time.Now()
		out, err := c.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			return d, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
		}
		return d, nil
	}
	pl := func(args ...string) (time.Duration, error) {
		return cmd(plHost, portolan, append([]string{"firewall"}, args...)...)
	}
	nft := func(file string) (time.Duration, error) { return cmd(nftHost, "nft", "-f", file) }
	base := func(args ...string) (time.Duration, error) {
		return cmd(baseHost, baseline, append([]string{"firewall"}, args...)...)
	}

	fmt.Printf("%d rules; %d rounds; portolan %s\n", n, rounds, portolan)
	firstPL, err := pl("apply", "-f", profA)
	if err != nil {
		return err
	}
	firstNFT, err := nft(nftA)
	if err != nil {
		return err
	}
	// The same rules in both namespaces: compare the chains.
	if err := sameChains(ctx, plHost, nftHost); err != nil {
		return err
	}
	var firstBase time.Duration
	if baseline != "" {
		if firstBase, err = base("apply", "-f", profA); err != nil {
			return err
		}
	}
	steps := []*step{{name: "portolan apply, identical"}, {name: "nft -f, identical"},
		{name: "portolan apply, one rule changed"}, {name: "nft -f, one rule changed"},
		{name: "portolan plan, identical"}, {name: "portolan plan, one rule changed"}}
	if baseline != "" {
		steps = append(steps, &step{name: "baseline apply, identical"}, &step{name: "baseline apply, one rule changed"})
	}
	record := func(s *step, d time.Duration, err error) error {
		s.times = append(s.times, d)
		return err
	}
	for r := range rounds {
		// The table holds A at the start of every round.
		order := []func() error{
			func() error { d, err := pl("apply", "-f", profA); return record(steps[0], d, err) },
			func() error { d, err := nft(nftA); return record(steps[1], d, err) },
			func() error { d, err := pl("plan", "-f", profA); return record(steps[4], d, err) },
			func() error { d, err := pl("plan", "-f", profB); return record(steps[5], d, err) },
			func() error {
				if d, err := pl("apply", "-f", profB); record(steps[2], d, err) != nil {
					return err
				}
				d, err := pl("apply", "-f", profA)
				return record(steps[2], d, err)
			},
			func() error {
				if d, err := nft(nftB); record(steps[3], d, err) != nil {
					return err
				}
				d, err := nft(nftA)
				return record(steps[3], d, err)
			},
		}
		if baseline != "" {
			order = append(order,
				func() error { d, err := base("apply", "-f", profA); return record(steps[6], d, err) },
				func() error {
					if d, err := base("apply", "-f", profB); record(steps[7], d, err) != nil {
						return err
					}
					d, err := base("apply", "-f", profA)
					return record(steps[7], d, err)
				})
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	fmt.Printf("\nfirst apply of %d rules: portolan %s, nft -f %s (%.2fx)\n", n, ms(firstPL), ms(firstNFT), float64(firstPL)/float64(firstNFT))
	if baseline != "" {
		fmt.Printf("baseline %s: first apply %s\n", baseline, ms(firstBase))
	}
	fmt.Println()
	fmt.Println("| step | median | min | max | portolan / nft -f (medians) |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	med := func(s *step) time.Duration { t := slices.Clone(s.times); slices.Sort(t); return t[len(t)/2] }
	for i, s := range steps {
		ratio := ""
		switch i {
		case 0, 2:
			ratio = fmt.Sprintf("%.2fx", float64(med(s))/float64(med(steps[i+1])))
		case 6, 7:
			ratio = fmt.Sprintf("%.2fx", float64(med(s))/float64(med(steps[2*(i-6)+1])))
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", s.name, ms(med(s)), ms(slices.Min(s.times)), ms(slices.Max(s.times)), ratio)
	}
	fmt.Println()
	for _, i := range []int{0, 2} {
		m, ref := med(steps[i]), med(steps[i+1])
		ok := m < time.Second && float64(m) <= 3*float64(ref)
		verdict := "met"
		if !ok {
			verdict = "MISSED"
		}
		fmt.Printf("target (%s under 1 s and within 3x of nft -f): %s\n", steps[i].name, verdict)
	}
	return nil
}

// sameChains checks that the two namespaces' input chains hold the same
// rules, so the tools do the same work.
func sameChains(ctx context.Context, pl, nft *netlab.Host) error {
	list := func(h *netlab.Host, table string) ([]string, error) {
		out, err := h.Command(ctx, "nft", "list", "chain", "inet", table, "input").Output()
		if err != nil {
			return nil, fmt.Errorf("nft list chain inet %s input: %w", table, err)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "table ") && !strings.HasPrefix(l, "chain ") && l != "}" {
				lines = append(lines, l)
			}
		}
		return lines, nil
	}
	a, err := list(pl, firewall.TableName)
	if err != nil {
		return err
	}
	b, err := list(nft, "nftbench")
	if err != nil {
		return err
	}
	if !slices.Equal(a, b) {
		return fmt.Errorf("the chains differ: portolan %d lines, nft %d", len(a), len(b))
	}
	return nil
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

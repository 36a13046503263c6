package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"portolan/internal/output"
)

// baselines are the tools ratios are taken against: portolan writing
// every port as JSON Lines, and writing only the open ones (as nmap -oX
// and naabu do).
var baselines = []string{"portolan", "portolan-list", "portolan-stored", "portolan-syn"}

// Targets from the issue.
const (
	minSpeedup    = 3.0 // nmap -sT -T4 wall / portolan wall
	minSpeedupSYN = 2.0 // nmap -sS --min-rate 10000 wall / portolan -sS wall
	maxOverCeil   = 3.0 // portolan -sS wall / the raw ceiling's sweep
	maxRSSMiB     = 100
	maxStoreCost  = 0.10 // portolan-stored wall / portolan (--no-store) wall, minus 1 (issue 14 item 10)
)

type rendered struct{ text, markdown string }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// summary is the runs of one tool in one scenario.
type summary struct {
	tool, scenario  string
	runs, bad       int // bad: errors, time-outs, unreadable output
	wall, cpu, rss  []float64
	minFound, want  int
	maxFalse        int
	filtered        []float64
	ratios          [][]float64 // per baseline: tool wall / baseline wall of the same run
	perfectEveryRun bool
}

func summarize(rows []row, scs []scenario, ts []tool) []*summary {
	base := map[string]float64{} // baseline/scenario/run -> wall
	for _, r := range rows {
		if slices.Contains(baselines, r.tool) && r.ok() {
			base[fmt.Sprint(r.tool, "/", r.scenario, "/", r.run)] = r.m.wall.Seconds()
		}
	}
	var out []*summary
	for _, sc := range scs {
		for _, t := range ts {
			s := &summary{tool: t.name, scenario: sc.name, minFound: -1, perfectEveryRun: true,
				ratios: make([][]float64, len(baselines))}
			for _, r := range rows {
				if r.tool != t.name || r.scenario != sc.name {
					continue
				}
				s.runs++
				s.want = r.want
				if !r.ok() {
					s.bad++
					s.perfectEveryRun = false
					continue
				}
				s.wall = append(s.wall, r.m.wall.Seconds())
				s.cpu = append(s.cpu, (r.m.user + r.m.sys).Seconds())
				s.rss = append(s.rss, float64(r.m.maxRSSKB)/1024)
				s.filtered = append(s.filtered, float64(r.filtered))
				if s.minFound < 0 || r.found < s.minFound {
					s.minFound = r.found
				}
				s.maxFalse = max(s.maxFalse, r.falseOpen)
				if r.found != r.want || r.falseOpen != 0 {
					s.perfectEveryRun = false
				}
				for i, bl := range baselines {
					if b, ok := base[fmt.Sprint(bl, "/", r.scenario, "/", r.run)]; ok && b > 0 {
						s.ratios[i] = append(s.ratios[i], r.m.wall.Seconds()/b)
					}
				}
			}
			if s.runs > 0 {
				out = append(out, s)
			}
		}
	}
	return out
}

func report(rows []row, ceil []ceilRow, mem []memRow, scs []scenario, ts []tool, c config) rendered {
	sums := summarize(rows, scs, ts)
	ceilTab, ceilVerdicts := ceilingReport(rows, ceil, scs)
	tab := output.Table{
		Header: []string{"tool", "scenario", "runs", "wall s (median)", "min-max", "cpu s", "rss MiB", "open found",
			"recall (worst)", "false opens", "filtered rep.", "x portolan (median, worst)", "x portolan-list (median, worst)", "x portolan-stored (median, worst)", "x portolan-syn (median, worst)"},
		RightAlign: []int{2, 3, 5, 6, 7, 8, 9, 10},
	}
	for _, s := range sums {
		if len(s.wall) == 0 {
			tab.Add(s.tool, s.scenario, fmt.Sprintf("%d (%d failed)", s.runs, s.bad))
			continue
		}
		runs := fmt.Sprint(s.runs)
		if s.bad > 0 {
			runs += fmt.Sprintf(" (%d failed)", s.bad)
		}
		ratio := make([]string, len(baselines))
		for i, bl := range baselines {
			ratio[i] = "-"
			if s.tool != bl && len(s.ratios[i]) > 0 {
				ratio[i] = fmt.Sprintf("%.1fx (%.1fx)", median(s.ratios[i]), slices.Min(s.ratios[i]))
			}
		}
		tab.Add(s.tool, s.scenario, runs,
			fmt.Sprintf("%.2f", median(s.wall)),
			fmt.Sprintf("%.2f-%.2f", slices.Min(s.wall), slices.Max(s.wall)),
			fmt.Sprintf("%.2f", median(s.cpu)),
			fmt.Sprintf("%.1f", median(s.rss)),
			fmt.Sprintf("%d/%d", s.minFound, s.want),
			fmt.Sprintf("%.1f%%", 100*float64(s.minFound)/float64(max(s.want, 1))),
			fmt.Sprint(s.maxFalse),
			filteredCell(s.filtered),
			ratio[0], ratio[1], ratio[2], ratio[3])
	}

	memTab := output.Table{
		Header:     []string{"portolan memory", "probes", "wall s", "peak RSS MiB", "RSS over time (MiB)", "note"},
		RightAlign: []int{2, 3},
	}
	for _, m := range mem {
		note := m.note
		if m.m.err != nil {
			note = "ERROR " + m.m.err.Error()
		}
		memTab.Add(m.name, m.probes, fmt.Sprintf("%.1f", m.m.wall.Seconds()), mib1(m.m.maxRSSKB), rssCurve(m.m.samples), note)
	}

	verdicts := targets(sums, mem, c) + ceilVerdicts

	var text bytes.Buffer
	text.WriteString("\n")
	tab.Write(&text, false)
	if len(ceilTab.Rows) > 0 {
		text.WriteString("\n")
		ceilTab.Write(&text, false)
	}
	if len(mem) > 0 {
		text.WriteString("\n")
		memTab.Write(&text, false)
	}
	text.WriteString("\ntargets:\n" + verdicts)

	var md strings.Builder
	md.WriteString(mdTable(tab) + "\n")
	if len(ceilTab.Rows) > 0 {
		md.WriteString(mdTable(ceilTab) + "\n")
	}
	if len(mem) > 0 {
		md.WriteString(mdTable(memTab) + "\n")
	}
	md.WriteString("Targets:\n\n" + verdicts)
	return rendered{text.String(), md.String()}
}

// targets checks the goals and says which are met.
func targets(sums []*summary, mem []memRow, c config) string {
	var b strings.Builder
	mark := func(ok bool) string {
		if ok {
			return "MET "
		}
		return "MISS"
	}
	for _, s := range sums {
		if !slices.Contains(baselines, s.tool) {
			continue
		}
		fmt.Fprintf(&b, "- %s %s: recall 100%%, no false open, every run (%s): %s\n", mark(s.perfectEveryRun && s.runs > 0), s.tool, s.scenario,
			fmt.Sprintf("worst %d/%d found, at most %d false, %d failed runs", max(s.minFound, 0), s.want, s.maxFalse, s.bad))
	}
	for i, bl := range baselines {
		for _, s := range sums {
			if bl == "portolan-syn" && s.tool == "nmap-sS-minrate10000" && len(s.ratios[i]) > 0 {
				fmt.Fprintf(&b, "- %s %s >= %.0fx faster than nmap -sS --min-rate 10000 (%s): median %.1fx, worst run %.1fx\n",
					mark(median(s.ratios[i]) >= minSpeedupSYN), bl, minSpeedupSYN, s.scenario, median(s.ratios[i]), slices.Min(s.ratios[i]))
			}
			if s.tool != "nmap-T4" || len(s.ratios[i]) == 0 || bl == "portolan-syn" {
				continue
			}
			fmt.Fprintf(&b, "- %s %s >= %.0fx faster than nmap -sT -T4 (%s): median %.1fx, worst run %.1fx\n",
				mark(median(s.ratios[i]) >= minSpeedup), bl, minSpeedup, s.scenario, median(s.ratios[i]), slices.Min(s.ratios[i]))
		}
	}
	// Storing: the stored runs against the --no-store run of the same
	// round (they run in turn), as a percentage of the sweep.
	unstored := map[string]*summary{}
	for _, s := range sums {
		if s.tool == "portolan" {
			unstored[s.scenario] = s
		}
	}
	for _, s := range sums {
		u := unstored[s.scenario]
		if !strings.HasPrefix(s.tool, "portolan-stored") || len(s.ratios[0]) == 0 || u == nil {
			continue
		}
		var extra []float64
		for _, r := range s.ratios[0] {
			extra = append(extra, r-1) // ratios are tool wall / baseline wall
		}
		m := median(extra)
		fmt.Fprintf(&b, "- %s %s costs < %.0f%% of the sweep (%s): median of run ratios %+.1f%%, of the medians %+.1f%%, worst run %+.1f%%\n",
			mark(m < maxStoreCost), s.tool, 100*maxStoreCost, s.scenario, 100*m, 100*(median(s.wall)/median(u.wall)-1), 100*slices.Max(extra))
	}
	for _, m := range mem {
		fmt.Fprintf(&b, "- %s peak RSS < %d MiB (%s): %s MiB\n", mark(m.m.err == nil && m.m.maxRSSKB < maxRSSMiB*1024), maxRSSMiB, m.name, mib1(m.m.maxRSSKB))
	}
	return b.String()
}

func mib1(kb int64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

// rssCurve shows the resident set at a few moments of a run: flat is the goal.
func rssCurve(s []rssSample) string {
	if len(s) == 0 {
		return "-"
	}
	var parts []string
	step := max(1, len(s)/6)
	for i := 0; i < len(s); i += step {
		parts = append(parts, fmt.Sprintf("%s:%.0f", s[i].at.Round(time.Second), float64(s[i].rssKB)/1024))
	}
	if last := s[len(s)-1]; (len(s)-1)%step != 0 {
		parts = append(parts, fmt.Sprintf("%s:%.0f", last.at.Round(time.Second), float64(last.rssKB)/1024))
	}
	return strings.Join(parts, " ")
}

func mdTable(t output.Table) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.Header, " | ") + " |\n|")
	for range t.Header {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		cells := slices.Clone(r)
		for len(cells) < len(t.Header) {
			cells = append(cells, "")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// tsv is every run, one line each.
func tsv(rows []row) string {
	var b strings.Builder
	b.WriteString("tool\tscenario\trun\twall_s\tuser_s\tsys_s\tmaxrss_kb\tfound\twant\tfalse_open\tfiltered\tload1\tstatus\n")
	for _, r := range rows {
		status := "ok"
		switch {
		case r.m.timedOut:
			status = "timeout"
		case r.m.err != nil:
			status = "error: " + r.m.err.Error()
		case r.parseErr != nil:
			status = "parse: " + r.parseErr.Error()
		}
		fmt.Fprintf(&b, "%s\t%s\t%d\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%d\t%.2f\t%s\n", r.tool, r.scenario, r.run,
			r.m.wall.Seconds(), r.m.user.Seconds(), r.m.sys.Seconds(), r.m.maxRSSKB, r.found, r.want, r.falseOpen, r.filtered, r.load, status)
	}
	return b.String()
}

func filteredCell(f []float64) string {
	if len(f) == 0 || median(f) < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", median(f))
}

// ceilingReport puts the raw ceiling beside the SYN scanners of the same
// runs: its sweep time, and each scanner's wall time as a multiple of it
// (median of the per-run ratios, and the worst run).
func ceilingReport(rows []row, ceil []ceilRow, scs []scenario) (output.Table, string) {
	tab := output.Table{
		Header: []string{"raw ceiling", "runs", "sweep s (median)", "answered SYN/s (median)", "answers/sent (worst)",
			"portolan -sS s", "x ceiling (median, worst)", "nmap -sS --min-rate 10000 s", "x ceiling (median, worst)"},
		RightAlign: []int{1, 2, 3, 4, 5, 7},
	}
	var verdicts strings.Builder
	for _, sc := range scs {
		var sweep, pps []float64
		worst := 1.0
		byRun := map[int]float64{}
		for _, c := range ceil {
			if c.scenario != sc.name || c.err != nil || c.sent == 0 {
				continue
			}
			sweep = append(sweep, c.sweep.Seconds())
			pps = append(pps, c.pps())
			worst = min(worst, float64(c.replies)/float64(c.sent))
			byRun[c.run] = c.sweep.Seconds()
		}
		if len(sweep) == 0 {
			continue
		}
		cells := []string{sc.name, fmt.Sprint(len(sweep)), fmt.Sprintf("%.3f", median(sweep)), fmt.Sprintf("%.0f", median(pps)),
			fmt.Sprintf("%.3f", worst)}
		for _, tool := range []string{"portolan-syn", "nmap-sS-minrate10000"} {
			var wall, ratio []float64
			for _, r := range rows {
				if r.tool == tool && r.scenario == sc.name && r.ok() && byRun[r.run] > 0 {
					wall = append(wall, r.m.wall.Seconds())
					ratio = append(ratio, r.m.wall.Seconds()/byRun[r.run])
				}
			}
			if len(wall) == 0 {
				cells = append(cells, "-", "-")
				continue
			}
			cells = append(cells, fmt.Sprintf("%.2f", median(wall)), fmt.Sprintf("%.1fx (%.1fx)", median(ratio), slices.Max(ratio)))
			if tool == "portolan-syn" {
				ok := "MISS"
				if median(ratio) <= maxOverCeil {
					ok = "MET "
				}
				fmt.Fprintf(&verdicts, "- %s portolan-syn within %.0fx of the raw ceiling (%s): median %.1fx, worst run %.1fx\n",
					ok, maxOverCeil, sc.name, median(ratio), slices.Max(ratio))
			}
		}
		tab.Add(cells...)
	}
	return tab, verdicts.String()
}

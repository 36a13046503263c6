package firewall

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
)

// nftEvents watches the nftables changes of a namespace, transaction by
// transaction, as `nft monitor` does.
type nftEvents struct {
	conn *nftables.Conn
	mon  *nftables.Monitor
	ch   chan *nftables.MonitorEvents
	seq  int
}

func watchNFT(t *testing.T, netns int) *nftEvents {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		t.Fatal(err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	ch, err := c.AddGenerationalMonitor(mon) // subscribed when it returns
	if err != nil {
		t.Fatalf("nftables monitor: %v", err)
	}
	t.Cleanup(func() { mon.Close() })
	return &nftEvents{conn: c, mon: mon, ch: ch}
}

// since returns the transactions committed since the last call, each as
// its messages' types. A marker transaction of its own (a table added and
// deleted) tells where they end: the kernel notifies in commit order.
func (w *nftEvents) since(t *testing.T) [][]nftables.MonitorEventType {
	t.Helper()
	w.seq++
	marker := &nftables.Table{Family: nftables.TableFamilyINet, Name: "pl-marker-" + strconv.Itoa(w.seq)}
	w.conn.AddTable(marker)
	w.conn.DelTable(marker)
	if err := w.conn.Flush(); err != nil {
		t.Fatalf("marker transaction: %v", err)
	}
	var out [][]nftables.MonitorEventType
	timeout := time.After(30 * time.Second)
	for {
		select {
		case evs, ok := <-w.ch:
			if !ok {
				t.Fatal("the nftables monitor stopped")
			}
			var types []nftables.MonitorEventType
			isMarker := false
			for _, e := range evs.Changes {
				if e.Error != nil && e.Type == nftables.MonitorEventTypeOOB {
					t.Fatalf("nftables monitor: %v", e.Error)
				}
				if tb, ok := e.Data.(*nftables.Table); ok && tb.Name == marker.Name {
					isMarker = true
				}
				types = append(types, e.Type)
			}
			if isMarker {
				return out
			}
			out = append(out, types)
		case <-timeout:
			t.Fatal("no marker transaction from the nftables monitor within 30s")
		}
	}
}

// count returns how many messages of each type tx holds.
func count(tx []nftables.MonitorEventType) map[nftables.MonitorEventType]int {
	m := map[nftables.MonitorEventType]int{}
	for _, e := range tx {
		m[e]++
	}
	return m
}

var eventNames = map[nftables.MonitorEventType]string{
	nftables.MonitorEventTypeNewTable: "newtable", nftables.MonitorEventTypeDelTable: "deltable",
	nftables.MonitorEventTypeNewChain: "newchain", nftables.MonitorEventTypeDelChain: "delchain",
	nftables.MonitorEventTypeNewRule: "newrule", nftables.MonitorEventTypeDelRule: "delrule",
	nftables.MonitorEventTypeNewSet: "newset", nftables.MonitorEventTypeDelSet: "delset",
	nftables.MonitorEventTypeNewSetElem: "newsetelem", nftables.MonitorEventTypeDelSetElem: "delsetelem",
}

func describe(txs [][]nftables.MonitorEventType) string {
	var s []string
	for _, tx := range txs {
		m := count(tx)
		var parts []string
		for typ, n := range m {
			parts = append(parts, fmt.Sprintf("%s x%d", eventNames[typ], n))
		}
		s = append(s, fmt.Sprint(parts))
	}
	return fmt.Sprint(s)
}

// bigRuleset returns n rules of the kinds a large profile holds (those of
// bench/firewall), with a limit rule and an expiring one among them.
func bigRuleset(t *testing.T, n int) *Ruleset {
	rs := &Ruleset{}
	for i := range n {
		port := strconv.Itoa(1024 + i)
		var s RuleSpec
		switch i % 4 {
		case 0:
			s = RuleSpec{Action: "allow", Ports: port + "/tcp"}
		case 1:
			s = RuleSpec{Action: "deny", Ports: port + "/udp", From: fmt.Sprintf("198.18.%d.%d", i/256%256, i%256)}
		case 2:
			s = RuleSpec{Action: "reject", Ports: port + "-" + strconv.Itoa(1026+i) + "/tcp", From: "198.18.0.0/15"}
		case 3:
			s = RuleSpec{Action: "allow", Ports: port, From: fmt.Sprintf("fd00::%x", i)}
		}
		rs.Rules = append(rs.Rules, mustRule(t, s))
	}
	rs.Rules = append(rs.Rules, mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "443/tcp", For: "1h"}))
	return rs
}

// TestReapplyMessages counts what apply sends the kernel, as a monitor of
// the namespace sees it: re-applying the same 400 rules commits nothing at
// all, and changing one rule in the middle commits one transaction that
// deletes that rule and inserts its replacement, and touches nothing else
// (no table, chain or set message). Both with the table read from the
// kernel and from the table cache, the way the command line reads it.
func TestReapplyMessages(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run("cache="+strconv.FormatBool(cached), func(t *testing.T) {
			l := newLab(t)
			ctx := context.Background()
			var log bytes.Buffer
			fw := &Firewall{NetNS: l.srv.FD(), Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			if cached {
				fw.Cache = filepath.Join(t.TempDir(), "table.gob")
			}
			a := bigRuleset(t, 400)
			if err := fw.Apply(ctx, a); err != nil {
				t.Fatal(err)
			}
			w := watchNFT(t, l.srv.FD())
			reapply := func(rs *Ruleset) {
				t.Helper()
				tab, err := fw.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := fw.ApplyTo(ctx, tab, rs.Clone()); err != nil {
					t.Fatal(err)
				}
			}
			before := handles(t, l)

			reapply(a)
			if err := fw.Apply(ctx, a.Clone()); err != nil {
				t.Fatal(err)
			}
			if txs := w.since(t); len(txs) != 0 {
				t.Errorf("re-applying the same rules (twice) committed %d transactions %s; want none", len(txs), describe(txs))
			}

			b := a.Clone()
			b.Rules[200] = mustRule(t, RuleSpec{Action: "allow", Ports: "9/tcp"})
			log.Reset()
			reapply(b)
			txs := w.since(t)
			if cached {
				// The cache learnt the new rule's handle from the commit's
				// notifications, not from a dump of the chain, and has
				// every handle right.
				if s := log.String(); !strings.Contains(s, "new rule handles from the commit's notifications") || strings.Contains(s, "err=") {
					t.Errorf("the cache was not written from the commit's notifications:\n%s", s)
				}
				tab, err := fw.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				fresh, err := (&Firewall{NetNS: l.srv.FD()}).Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(tab.live.handles, fresh.live.handles) {
					t.Errorf("the cache's handles differ from the kernel's after a one-rule change")
				}
			}
			want := map[nftables.MonitorEventType]int{nftables.MonitorEventTypeDelRule: 1, nftables.MonitorEventTypeNewRule: 1}
			if len(txs) != 1 || fmt.Sprint(count(txs[0])) != fmt.Sprint(want) {
				t.Errorf("changing one rule committed %s; want one transaction of one delrule and one newrule", describe(txs))
			}
			after := handles(t, l)
			if len(after) != len(before) {
				t.Errorf("the chain has %d rules after changing one; want %d", len(after), len(before))
			}
			changed := 0
			for line, h := range before {
				if after[line] != h {
					changed++
				}
			}
			if changed != 1 {
				t.Errorf("%d kernel rules changed handle; want 1", changed)
			}
			// And back: the same again, one transaction.
			reapply(a)
			if txs := w.since(t); len(txs) != 1 || fmt.Sprint(count(txs[0])) != fmt.Sprint(want) {
				t.Errorf("changing the rule back committed %s; want one transaction of one delrule and one newrule", describe(txs))
			}
		})
	}
}

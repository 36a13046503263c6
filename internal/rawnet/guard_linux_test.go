package rawnet

import (
	"fmt"
	"os/exec"
	"slices"
	"testing"

	"github.com/google/nftables"

	"portolan/internal/netlab"
)

// TestGuardRemovesStaleTables: a scan killed before it removed its guard
// leaves the table (google/nftables cannot make it an owner table). The
// next guard in that namespace deletes the tables of processes that are
// gone, and its own table goes with Close.
func TestGuardRemovesStaleTables(t *testing.T) {
	lab := netlab.NewT(t)
	h, err := lab.AddHost("g")
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-61000", guardPrefix, dead.Process.Pid)
	tables := func() []string {
		var names []string
		h.Do(func() error {
			c, err := nftables.New()
			if err != nil {
				return err
			}
			ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
			for _, tb := range ts {
				names = append(names, tb.Name)
			}
			return err
		})
		return names
	}
	err = h.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.AddTable(&nftables.Table{Name: stale, Family: nftables.TableFamilyINet})
		c.AddTable(&nftables.Table{Name: "someone-else", Family: nftables.TableFamilyINet})
		return c.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	var g *Guard
	if err := h.Do(func() (err error) { g, err = GuardPorts(62000, 62010); return err }); err != nil {
		t.Fatal(err)
	}
	got := tables()
	if slices.Contains(got, stale) || !slices.Contains(got, "someone-else") || !slices.Contains(got, g.table.Name) {
		t.Errorf("tables with a new guard: %v; want %s gone, someone-else and %s kept", got, stale, g.table.Name)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tables(); slices.Contains(got, g.table.Name) {
		t.Errorf("tables after Close: %v; want %s gone", got, g.table.Name)
	}
}

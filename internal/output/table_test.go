package output

import (
	"bytes"
	"io"
	"testing"
)

// TestWriteRows checks the streaming form writes what Table.Write does.
func TestWriteRows(t *testing.T) {
	tab := &Table{
		Header:     []string{"PROTO", "PORT", "SERVICE", "USER"},
		RightAlign: []int{1},
		Rows: [][]string{
			{"tcp", "22", "ssh", "root"},
			{"udp", "53", "", "systemd-resolve"},
			{"tcp", "8080", "http-alt", ""},
			{"tcp", "1", "tcpmux", "ünïcode"},
		},
	}
	for _, color := range []bool{false, true} {
		var want, got bytes.Buffer
		if err := tab.Write(&want, color); err != nil {
			t.Fatal(err)
		}
		err := WriteRows(&got, color, tab.Header, tab.RightAlign, len(tab.Rows), func(i int, dst []string) []string {
			return append(dst, tab.Rows[i]...)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("WriteRows(color %v) =\n%s\nwant (Table.Write)\n%s", color, got.String(), want.String())
		}
	}
}

// TestTableWriteAllocs keeps Write free of allocations per row: a table of
// 1,000 rows costs what a table of 10 does.
func TestTableWriteAllocs(t *testing.T) {
	allocs := func(n int) float64 {
		tab := &Table{Header: []string{"A", "B", "C"}, RightAlign: []int{1}}
		for range n {
			tab.Add("tcp", "8080", "http-alt")
		}
		return testing.AllocsPerRun(5, func() { tab.Write(io.Discard, false) })
	}
	if small, large := allocs(10), allocs(1000); large > small {
		t.Errorf("Table.Write allocates %v times for 1000 rows, %v for 10; want no more", large, small)
	}
}

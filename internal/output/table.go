package output

import (
	"bufio"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Table is a grid of text cells written with aligned columns.
type Table struct {
	Header     []string
	Rows       [][]string
	RightAlign []int // indexes of columns aligned right (numbers)
	// Colors, when set, gives a colour per cell of a row (same shape as
	// Rows; missing entries mean none). Used only when colour is enabled.
	Colors [][]Color
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// AddColored appends a row with a colour per cell.
func (t *Table) AddColored(cells []string, colors []Color) {
	for len(t.Colors) < len(t.Rows) {
		t.Colors = append(t.Colors, nil)
	}
	t.Rows = append(t.Rows, cells)
	t.Colors = append(t.Colors, colors)
}

// Write writes the table to w, columns two spaces apart, the header bold
// when color is true. Trailing spaces are never written.
func (t *Table) Write(w io.Writer, color bool) error {
	ncol := len(t.Header)
	for _, r := range t.Rows {
		ncol = max(ncol, len(r))
	}
	width := make([]int, ncol)
	measure := func(r []string) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	measure(t.Header)
	for _, r := range t.Rows {
		measure(r)
	}
	bw := bufio.NewWriter(w)
	line := func(r []string, colors []Color, header bool) {
		var b strings.Builder
		last := len(r) - 1
		for last >= 0 && r[last] == "" {
			last--
		}
		for i := 0; i <= last; i++ {
			c := r[i]
			pad := width[i] - utf8.RuneCountInString(c)
			right := slices.Contains(t.RightAlign, i)
			if i > 0 {
				b.WriteString("  ")
			}
			if right {
				b.WriteString(strings.Repeat(" ", pad))
			}
			switch {
			case header:
				b.WriteString(Paint(c, Bold, color))
			case i < len(colors):
				b.WriteString(Paint(c, colors[i], color))
			default:
				b.WriteString(c)
			}
			if !right && i < last {
				b.WriteString(strings.Repeat(" ", pad))
			}
		}
		b.WriteByte('\n')
		bw.WriteString(b.String())
	}
	if len(t.Header) > 0 {
		line(t.Header, nil, true)
	}
	for i, r := range t.Rows {
		var colors []Color
		if i < len(t.Colors) {
			colors = t.Colors[i]
		}
		line(r, colors, false)
	}
	return bw.Flush()
}

package output

import (
	"bufio"
	"io"
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
//
// Tables run to tens of thousands of rows (ls -a on a busy host), so rows
// are streamed into one buffer: no allocation per row or per cell.
func (t *Table) Write(w io.Writer, color bool) error {
	ncol := len(t.Header)
	for _, r := range t.Rows {
		ncol = max(ncol, len(r))
	}
	width := make([]int, ncol)
	right := make([]bool, ncol)
	for _, i := range t.RightAlign {
		if i >= 0 && i < ncol {
			right[i] = true
		}
	}
	measure := func(r []string) {
		for i, c := range r {
			width[i] = max(width[i], cellWidth(c))
		}
	}
	measure(t.Header)
	for _, r := range t.Rows {
		measure(r)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	line := func(r []string, colors []Color, header bool) {
		last := len(r) - 1
		for last >= 0 && r[last] == "" {
			last--
		}
		for i := 0; i <= last; i++ {
			c := r[i]
			pad := width[i] - cellWidth(c)
			if i > 0 {
				bw.WriteString("  ")
			}
			if right[i] {
				writeSpaces(bw, pad)
			}
			var paint Color
			switch {
			case !color || c == "":
			case header:
				paint = Bold
			case i < len(colors):
				paint = colors[i]
			}
			if paint != "" {
				bw.WriteString("\x1b[")
				bw.WriteString(string(paint))
				bw.WriteByte('m')
			}
			bw.WriteString(c)
			if paint != "" {
				bw.WriteString("\x1b[0m")
			}
			if !right[i] && i < last {
				writeSpaces(bw, pad)
			}
		}
		bw.WriteByte('\n')
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

// cellWidth is the number of runes in c, without decoding pure ASCII.
func cellWidth(c string) int {
	for i := 0; i < len(c); i++ {
		if c[i] >= utf8.RuneSelf {
			return utf8.RuneCountInString(c)
		}
	}
	return len(c)
}

const spaces = "                                                                "

func writeSpaces(bw *bufio.Writer, n int) {
	for n > len(spaces) {
		bw.WriteString(spaces)
		n -= len(spaces)
	}
	if n > 0 {
		bw.WriteString(spaces[:n])
	}
}

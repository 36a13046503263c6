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
func (t *Table) Write(w io.Writer, color bool) error {
	ncol := len(t.Header)
	for _, r := range t.Rows {
		ncol = max(ncol, len(r))
	}
	tw := newTableWriter(w, color, ncol, t.RightAlign)
	tw.measure(t.Header)
	for _, r := range t.Rows {
		tw.measure(r)
	}
	if len(t.Header) > 0 {
		tw.line(t.Header, nil, true)
	}
	for i, r := range t.Rows {
		var colors []Color
		if i < len(t.Colors) {
			colors = t.Colors[i]
		}
		tw.line(r, colors, false)
	}
	return tw.bw.Flush()
}

// WriteRows writes a table of n rows as Table.Write does, without holding
// its cells: row fills dst (of len(header) cells) with the cells of row i
// and returns it. It is called twice per row, once to measure and once to
// write, and the strings it returns need only last until its next call, so
// they may alias a buffer it reuses. For tables of tens of thousands of
// rows (ls -a on a busy host), where a Table's cells alone weigh
// megabytes.
func WriteRows(w io.Writer, color bool, header []string, rightAlign []int, n int, row func(i int, dst []string) []string) error {
	tw := newTableWriter(w, color, len(header), rightAlign)
	tw.measure(header)
	dst := make([]string, len(header))
	for i := range n {
		tw.measure(row(i, dst[:0]))
	}
	tw.line(header, nil, true)
	for i := range n {
		tw.line(row(i, dst[:0]), nil, false)
	}
	return tw.bw.Flush()
}

// tableWriter streams aligned rows into one buffer: no allocation per row
// or per cell.
type tableWriter struct {
	bw    *bufio.Writer
	color bool
	width []int
	right []bool
}

func newTableWriter(w io.Writer, color bool, ncol int, rightAlign []int) *tableWriter {
	tw := &tableWriter{bw: bufio.NewWriterSize(w, 64<<10), color: color, width: make([]int, ncol), right: make([]bool, ncol)}
	for _, i := range rightAlign {
		if i >= 0 && i < ncol {
			tw.right[i] = true
		}
	}
	return tw
}

func (tw *tableWriter) measure(r []string) {
	for i, c := range r[:min(len(r), len(tw.width))] {
		tw.width[i] = max(tw.width[i], cellWidth(c))
	}
}

func (tw *tableWriter) line(r []string, colors []Color, header bool) {
	bw := tw.bw
	last := min(len(r), len(tw.width)) - 1
	for last >= 0 && r[last] == "" {
		last--
	}
	for i := 0; i <= last; i++ {
		c := r[i]
		pad := tw.width[i] - cellWidth(c)
		if i > 0 {
			bw.WriteString("  ")
		}
		if tw.right[i] {
			writeSpaces(bw, pad)
		}
		var paint Color
		switch {
		case !tw.color || c == "":
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
		if !tw.right[i] && i < last {
			writeSpaces(bw, pad)
		}
	}
	bw.WriteByte('\n')
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

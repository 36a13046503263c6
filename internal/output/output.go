// Package output renders records for people and for programs: aligned
// tables (coloured only on a terminal), JSON, JSON Lines and CSV, and a
// progress line for long work. It knows nothing of commands or flags.
package output

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr }) // an *os.File, or a writer that wraps one
	return ok && term.IsTerminal(int(f.Fd()))
}

// ColorEnabled reports whether colour may be written to w: only on a
// terminal, never when NO_COLOR is set (https://no-color.org) or noColor is.
func ColorEnabled(w io.Writer, noColor bool) bool {
	if noColor {
		return false
	}
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	return IsTerminal(w)
}

// Color is an ANSI SGR colour code.
type Color string

// The few colours portolan uses; meaning matters more than hue.
const (
	Bold   Color = "1"
	Dim    Color = "2"
	Red    Color = "31"
	Green  Color = "32"
	Yellow Color = "33"
	Cyan   Color = "36"
)

// Paint wraps s in colour c when enabled is true.
func Paint(s string, c Color, enabled bool) string {
	if !enabled || c == "" || s == "" {
		return s
	}
	return "\x1b[" + string(c) + "m" + s + "\x1b[0m"
}

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// JSONL writes one compact JSON object per line, flushed as it goes, so a
// reader downstream sees each record as soon as it exists.
type JSONL struct {
	w   io.Writer
	enc *json.Encoder
}

// NewJSONL returns a JSON Lines writer on w.
func NewJSONL(w io.Writer) *JSONL {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONL{w: w, enc: enc}
}

// Write writes v as one line.
func (j *JSONL) Write(v any) error {
	if err := j.enc.Encode(v); err != nil {
		return err
	}
	if f, ok := j.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// WriteCSV writes a header and rows as RFC 4180 CSV.
func WriteCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	if header != nil {
		if err := cw.Write(header); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

package cli

import (
	"portolan/internal/output"
)

// writeJSON writes v as indented JSON to stdout.
func writeJSON(g *Globals, v any) error { return output.WriteJSON(g.io.Out, v) }

// color reports whether stdout may be coloured.
func (g *Globals) color() bool { return output.ColorEnabled(g.io.Out, g.NoColor) }

// progress returns a progress line on stderr, live only on a terminal.
func (g *Globals) progress() *output.Progress {
	return output.NewProgress(g.io.ErrOut, output.IsTerminal(g.io.ErrOut))
}

package cli

import (
	"encoding/json"
)

// writeJSON writes v as indented JSON to stdout.
func writeJSON(g *Globals, v any) error {
	enc := json.NewEncoder(g.io.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

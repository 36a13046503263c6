package knock

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"portolan/internal/atomicfile"
)

// A door's one-time sequences (one-time-sequences: FILE) are a file of
// sequences, one a line in ParseSequence's syntax; blank lines and lines
// starting with # are skipped. The first other line is the door's
// sequence; once it opens the door, knockd comments it out ("#used TIME
// ") and the next line is the sequence, as knockd's one_time_sequences
// does. The file is the state: a restart goes on where it was.

// OneTime is a parsed one-time sequences file.
type OneTime struct {
	Seqs  [][]DoorPort // the unused sequences, in order
	Lines []int        // each one's line number (1-based)
}

// ParseOneTime reads a one-time sequences file; errors name the file,
// line and column.
func ParseOneTime(name string, text []byte) (*OneTime, error) {
	ot := &OneTime{}
	for i, line := range strings.Split(string(text), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		seq, err := ParseSequence(t)
		if err != nil {
			col := len(line) - len(strings.TrimLeft(line, " \t")) + 1
			return nil, fmt.Errorf("%s:%d:%d: %w", name, i+1, col, err)
		}
		if len(seq) > maxSequence {
			return nil, fmt.Errorf("%s:%d:1: sequence of %d knocks; at most %d", name, i+1, len(seq), maxSequence)
		}
		ot.Seqs = append(ot.Seqs, seq)
		ot.Lines = append(ot.Lines, i+1)
	}
	return ot, nil
}

// ports returns every port of the unused sequences, once each: what the
// doors' watch rule must see.
func (ot *OneTime) ports() []DoorPort {
	var out []DoorPort
	seen := map[DoorPort]bool{}
	for _, s := range ot.Seqs {
		for _, k := range s {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// markUsed comments out line n of path, which must still hold seq, and
// replaces the file atomically with its mode kept.
func markUsed(path string, n int, seq []DoorPort, now time.Time) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("mark one-time sequence used: %w", err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("mark one-time sequence used: %w", err)
	}
	lines := bytes.Split(text, []byte("\n"))
	if n < 1 || n > len(lines) {
		return fmt.Errorf("mark one-time sequence used: %s has no line %d", path, n)
	}
	if got, err := ParseSequence(strings.TrimSpace(string(lines[n-1]))); err != nil || FormatSequence(got) != FormatSequence(seq) {
		return fmt.Errorf("mark one-time sequence used: %s:%d no longer holds %s", path, n, FormatSequence(seq))
	}
	lines[n-1] = append([]byte("#used "+now.UTC().Format(time.RFC3339)+" "), lines[n-1]...)
	return atomicfile.Write(path, bytes.Join(lines, []byte("\n")), st.Mode().Perm())
}

package registry

import (
	"cmp"
	"slices"
	"strings"
)

// Search returns the rows whose name, description or notes contain every
// word of text (case-insensitive), best first: a word that is the whole
// service name ranks above one the name starts with or contains, which rank
// above a whole word of the description, then a part of one, then notes.
// Ties go to assigned rows, then by port and registry order.
func (r *Registry) Search(text string) []Entry {
	words := strings.Fields(strings.ToLower(text))
	if len(words) == 0 {
		return nil
	}
	type hit struct {
		i     int
		score int
	}
	var hits []hit
	for i := range r.entries {
		e := &r.entries[i]
		name := strings.ToLower(e.Name)
		desc := strings.ToLower(e.Description)
		notes := ""
		if e.Notes != "" {
			notes = strings.ToLower(e.Notes)
		}
		total := 0
		for _, w := range words {
			s := nameScore(name, w) + textScore(desc, w, 20, 8) + textScore(notes, w, 3, 2)
			if s == 0 {
				total = 0
				break
			}
			total += s
		}
		if total > 0 {
			hits = append(hits, hit{i, total})
		}
	}
	slices.SortStableFunc(hits, func(a, b hit) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		ea, eb := &r.entries[a.i], &r.entries[b.i]
		if c := compareBool(eb.Assigned(), ea.Assigned()); c != 0 {
			return c
		}
		if c := compareBool(eb.HasPort, ea.HasPort); c != 0 {
			return c
		}
		return cmp.Compare(ea.Low, eb.Low)
	})
	out := make([]Entry, len(hits))
	for j, h := range hits {
		out[j] = r.entries[h.i]
	}
	return out
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// nameScore rates how well word matches a lower-case service name.
func nameScore(name, word string) int {
	switch {
	case name == "":
		return 0
	case name == word:
		return 100
	case strings.HasPrefix(name, word):
		return 40
	case strings.Contains(name, word):
		return 25
	}
	return 0
}

// textScore gives whole when word appears in text as a whole word, part when
// only inside a longer one, 0 when not at all.
func textScore(text, word string, whole, part int) int {
	best := 0
	for off := 0; ; {
		i := strings.Index(text[off:], word)
		if i < 0 {
			return best
		}
		start, end := off+i, off+i+len(word)
		if (start == 0 || !isWordByte(text[start-1])) && (end == len(text) || !isWordByte(text[end])) {
			return whole
		}
		best = part
		off = start + 1
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 0x80
}

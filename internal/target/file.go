package target

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadFile reads a target list (nmap's -iL) or an exclude file: one or more
// expressions per line, '#' starts a comment, blank lines are skipped. It
// checks the syntax of every expression, so errors name path:line and the
// column; hostnames are resolved later, by Parse.
func ReadFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the file
	}
	defer f.Close()
	return ReadList(f, path)
}

// ReadList is ReadFile for an open reader (standard input for "-iL -");
// name is used in error messages.
func ReadList(r io.Reader, name string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 1
	for ; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		for _, t := range split(text) {
			if _, err := parseToken(t); err != nil {
				var pe *ParseError
				if errors.As(err, &pe) {
					pe.Source = fmt.Sprintf("%s:%d", name, line)
					return nil, pe
				}
				return nil, fmt.Errorf("%s:%d: %w", name, line, err)
			}
		}
		if text = strings.TrimSpace(text); text != "" {
			out = append(out, text)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s:%d: %w", name, line, err)
	}
	return out, nil
}

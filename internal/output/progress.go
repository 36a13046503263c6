package output

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress is a single status line on a terminal, rewritten in place. When
// disabled (stderr is not a terminal) every method does nothing, so callers
// need no checks of their own.
type Progress struct {
	w       io.Writer
	enabled bool
	every   time.Duration
	now     func() time.Time

	mu    sync.Mutex
	last  time.Time
	width int
}

// NewProgress returns a progress line on w; enabled is usually IsTerminal(w).
func NewProgress(w io.Writer, enabled bool) *Progress {
	return &Progress{w: w, enabled: enabled, every: 100 * time.Millisecond, now: time.Now}
}

// Update rewrites the line, at most ten times a second.
func (p *Progress) Update(format string, args ...any) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	s := fmt.Sprintf(format, args...)
	pad := p.width - len(s)
	p.width = len(s)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(p.w, "\r%s%*s", s, pad, "")
}

// Done clears the line so the next output starts on a clean line.
func (p *Progress) Done() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.width > 0 {
		fmt.Fprintf(p.w, "\r%*s\r", p.width, "")
		p.width = 0
	}
}

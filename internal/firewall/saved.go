package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Saved is the ruleset `portolan firewall save` keeps for the next boot,
// with absolute expiries: a rule that expires at 14:00 still expires at
// 14:00 after a reboot, and one whose time passed is not restored.
type Saved struct {
	Version int       `json:"version"` // 1
	SavedAt time.Time `json:"saved_at"`
	Netns   string    `json:"netns,omitempty"` // the namespace it was saved from (--netns); "" the host's
	Ruleset Ruleset   `json:"ruleset"`
}

// MarshalSaved writes s as indented JSON.
func MarshalSaved(s *Saved) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	return append(b, '\n'), err
}

// ParseSaved reads what MarshalSaved wrote. Errors name the file and,
// for JSON that does not parse, the byte offset.
func ParseSaved(name string, data []byte) (*Saved, error) {
	var s Saved
	if err := json.Unmarshal(data, &s); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("%s: at byte %d: %w", name, se.Offset, err)
		case errors.As(err, &te):
			return nil, fmt.Errorf("%s: at byte %d: %w", name, te.Offset, err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("%s: version %d: only version 1 is known", name, s.Version)
	}
	if err := s.Ruleset.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

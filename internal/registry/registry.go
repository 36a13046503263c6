// Package registry owns portolan's knowledge of what ports are for: the
// embedded IANA Service Name and Transport Protocol Port Number Registry
// (looked up by port, by name and by free text) and portolan's own curated
// "top ports" lists used as scan defaults.
package registry

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
	"sync"

	_ "embed"

	"portolan/internal/portspec"
)

// Snapshot is the newest registration or modification date in the embedded
// registry: the day the copy is current to.
const Snapshot = "2026-02-25"

//go:embed service-names-port-numbers.csv
var ianaCSV string

// header is the registry's column row; Parse refuses anything else so a
// changed upstream format is noticed rather than misread.
var header = []string{
	"Service Name", "Port Number", "Transport Protocol", "Description",
	"Assignee", "Contact", "Registration Date", "Modification Date",
	"Reference", "Service Code", "Unauthorized Use Reported", "Assignment Notes",
}

// Entry is one row of the registry. A row registers a service name on a port
// or a range of ports for one protocol (Proto zero: every protocol), or it
// marks ports as Unassigned or Reserved (Name empty, Description says which).
// Rows with HasPort false are DNS-SD service names that have no port.
type Entry struct {
	Name            string         `json:"name"`
	Low             portspec.Port  `json:"low"`
	High            portspec.Port  `json:"high"` // equal to Low unless the row is a range
	HasPort         bool           `json:"has_port"`
	Proto           portspec.Proto `json:"proto,omitempty"` // zero: the row applies to every protocol
	Description     string         `json:"description"`
	Assignee        string         `json:"assignee,omitempty"`
	Contact         string         `json:"contact,omitempty"`
	Registered      string         `json:"registered,omitempty"` // YYYY-MM-DD
	Modified        string         `json:"modified,omitempty"`   // YYYY-MM-DD
	Reference       string         `json:"reference,omitempty"`
	ServiceCode     string         `json:"service_code,omitempty"`
	UnauthorizedUse string         `json:"unauthorized_use,omitempty"`
	Notes           string         `json:"notes,omitempty"`
}

// Assigned reports whether the row registers a service name.
func (e Entry) Assigned() bool { return e.Name != "" }

// Covers reports whether the row's ports include p.
func (e Entry) Covers(p portspec.Port) bool { return e.HasPort && e.Low <= p && p <= e.High }

// Ports writes the row's port or range as the registry does: "80",
// "11435-11488", or "" for a row without a port.
func (e Entry) Ports() string {
	switch {
	case !e.HasPort:
		return ""
	case e.Low == e.High:
		return strconv.Itoa(int(e.Low))
	}
	return strconv.Itoa(int(e.Low)) + "-" + strconv.Itoa(int(e.High))
}

// Registry is a parsed copy of the IANA registry. It is read-only and safe
// for concurrent use.
type Registry struct {
	entries []Entry

	// primary[proto][port] is 1 + the index of the port's primary assigned
	// name, 0 for none, so Name is one array load. Index 0 (no protocol) is
	// unused; rows without a protocol fill every protocol.
	primary [portspec.DCCP + 1][1 << 16]uint16
}

// The embedded registry is parsed on first use, once: lookups that never
// need it (most commands) pay nothing.
var loadDefault = sync.OnceValues(func() (*Registry, error) {
	return Parse(strings.NewReader(ianaCSV))
})

// Default returns the embedded registry. The embedded copy is checked by the
// package tests, so failing to parse it is a build defect and panics.
func Default() *Registry {
	r, err := loadDefault()
	if err != nil {
		panic("registry: embedded IANA registry: " + err.Error())
	}
	return r
}

// maxEntries keeps row indexes within the uint16 of the primary table.
const maxEntries = 1<<16 - 2

// Parse reads a registry in IANA's CSV form (the header row and 12 fields
// per record). Errors name the line and column of the bad field.
func Parse(in io.Reader) (*Registry, error) {
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = len(header)
	cr.ReuseRecord = true // the field strings are fresh per record; only the slice is reused
	rec, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read registry header: %w", err)
	}
	for i, h := range header {
		if rec[i] != h {
			return nil, fmt.Errorf("registry header column %d is %q; want %q", i+1, rec[i], h)
		}
	}
	r := &Registry{entries: make([]Entry, 0, 14600)}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read registry: %w", err)
		}
		e := Entry{
			Name:            rec[0],
			Description:     rec[3],
			Assignee:        rec[4],
			Contact:         rec[5],
			Registered:      rec[6],
			Modified:        rec[7],
			Reference:       rec[8],
			ServiceCode:     rec[9],
			UnauthorizedUse: rec[10],
			Notes:           rec[11],
		}
		if err := parsePorts(rec[1], &e); err != nil {
			line, col := cr.FieldPos(1)
			return nil, fmt.Errorf("registry line %d column %d: %w", line, col, err)
		}
		if rec[2] != "" {
			if e.Proto, err = portspec.ParseProto(rec[2]); err != nil {
				line, col := cr.FieldPos(2)
				return nil, fmt.Errorf("registry line %d column %d: %w", line, col, err)
			}
		}
		if e.Name == "" && !e.HasPort {
			line, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("registry line %d: row has neither a service name nor a port", line)
		}
		if len(r.entries) == maxEntries {
			return nil, fmt.Errorf("registry: more than %d records", maxEntries)
		}
		r.entries = append(r.entries, e)
	}
	r.index()
	return r, nil
}

// parsePorts reads "80", "11435-11488" or "" into e.
func parsePorts(s string, e *Entry) error {
	if s == "" {
		return nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := parsePort(lo)
	if err != nil {
		return fmt.Errorf("port %q: %w", s, err)
	}
	h := l
	if isRange {
		if h, err = parsePort(hi); err != nil {
			return fmt.Errorf("port %q: %w", s, err)
		}
		if h < l {
			return fmt.Errorf("port range %q runs backwards", s)
		}
	}
	e.Low, e.High, e.HasPort = l, h, true
	return nil
}

func parsePort(s string) (portspec.Port, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a port number", s)
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %d out of range 0-65535", n)
	}
	return portspec.Port(n), nil
}

// index builds the primary-name table. The primary
// name of a port is the first assigned row in registry order, preferring a
// single-port row with a description that is not marked as an alias or
// duplicate (2049/tcp is "nfs", not the undescribed "shilp" listed first),
// then any single-port row, then a range covering the port.
func (r *Registry) index() {
	rank := make([]uint8, len(r.entries)) // computed once per row
	for i := range r.entries {
		e := &r.entries[i]
		if e.Name == "" || !e.HasPort {
			continue
		}
		rank[i] = primaryRank(e)
		for proto := portspec.TCP; proto <= portspec.DCCP; proto++ {
			if e.Proto != 0 && e.Proto != proto {
				continue
			}
			t := &r.primary[proto]
			for p := int(e.Low); p <= int(e.High); p++ {
				if j := t[p]; j == 0 || rank[j-1] > rank[i] {
					t[p] = uint16(i + 1)
				}
			}
		}
	}
}

// primaryRank orders rows for the primary name: 0 is best.
func primaryRank(e *Entry) uint8 {
	switch {
	case e.Low != e.High:
		return 2
	case e.Description == "" || strings.Contains(e.Notes, "alias") || strings.Contains(e.Notes, "duplicate"):
		return 1
	}
	return 0
}

// Len returns the number of rows.
func (r *Registry) Len() int { return len(r.entries) }

// All returns every row in registry order. The slice is shared: do not
// modify it.
func (r *Registry) All() []Entry { return r.entries }

// Name returns the primary service name assigned to port p for proto, or ""
// when none is. Proto zero asks for any protocol, preferring TCP, then UDP,
// SCTP and DCCP. It is one table load, for hot paths such as labelling
// every socket or scan result.
func (r *Registry) Name(p portspec.Port, proto portspec.Proto) string {
	if proto == 0 {
		for proto = portspec.TCP; proto <= portspec.DCCP; proto++ {
			if i := r.primary[proto][p]; i != 0 {
				return r.entries[i-1].Name
			}
		}
		return ""
	}
	if int(proto) >= len(r.primary) {
		return ""
	}
	if i := r.primary[proto][p]; i != 0 {
		return r.entries[i-1].Name
	}
	return ""
}

// ByPort returns, in registry order, every row covering port p for proto
// (zero: every protocol): assigned names, and the Unassigned or Reserved
// rows, single or range, that say p is free. Rows without a protocol match
// any proto. Nothing in the dynamic range 49152-65535 is registered.
func (r *Registry) ByPort(p portspec.Port, proto portspec.Proto) []Entry {
	var out []Entry
	for i := range r.entries {
		e := &r.entries[i]
		if e.Covers(p) && matchProto(e.Proto, proto) {
			out = append(out, *e)
		}
	}
	return out
}

// matchProto reports whether a row for have answers a question about want,
// either of which may be zero for "every protocol".
func matchProto(have, want portspec.Proto) bool {
	return have == 0 || want == 0 || have == want
}

// ByName returns, in registry order, every row whose service name matches
// pattern case-insensitively: exactly, or with '*' (any run of characters)
// and '?' (one character) as wildcards. Rows for DNS-SD names without a
// port are included.
func (r *Registry) ByName(pattern string) []Entry {
	var out []Entry
	r.eachName(pattern, func(e *Entry) { out = append(out, *e) })
	return out
}

// eachName calls f for every row whose name matches pattern.
func (r *Registry) eachName(pattern string, f func(*Entry)) {
	if pattern == "" {
		return
	}
	pat := strings.ToLower(pattern)
	wild := strings.ContainsAny(pat, "*?")
	for i := range r.entries {
		name := r.entries[i].Name
		if name == "" {
			continue
		}
		if wild && glob(pat, name) || !wild && len(name) == len(pat) && strings.EqualFold(name, pat) {
			f(&r.entries[i])
		}
	}
}

// glob matches name, case-insensitively, against a lower-case pattern where
// '*' is any run of bytes and '?' is one byte. Service names are ASCII, so
// bytes are characters.
func glob(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0 // the last '*' seen and where in name it resumed
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == lowerASCII(name[n])):
			p++
			n++
		case star >= 0:
			// Let the last '*' swallow one more byte and retry.
			mark++
			p, n = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// ErrUnknownService is wrapped by PortsByName when no service name matches.
var ErrUnknownService = errors.New("not a service name in the IANA registry")

// ErrNoPort is wrapped by PortsByName when names match but none has a port
// for the protocol asked about.
var ErrNoPort = errors.New("no port registered")

// PortsByName returns the sorted, distinct ports registered under the names
// matching pattern (as ByName) for proto (zero: any protocol), ranges
// expanded. It implements portspec.Resolver, so specs may say "ssh" or
// "http*". The error names the pattern when nothing matches.
func (r *Registry) PortsByName(pattern string, proto portspec.Proto) ([]portspec.Port, error) {
	var set [1 << 16 / 64]uint64
	named, count := false, 0
	r.eachName(pattern, func(e *Entry) {
		named = true
		if !e.HasPort || !matchProto(e.Proto, proto) {
			return
		}
		for p := int(e.Low); p <= int(e.High); p++ {
			if set[p/64]&(1<<(p%64)) == 0 {
				set[p/64] |= 1 << (p % 64)
				count++
			}
		}
	})
	switch {
	case !named:
		return nil, fmt.Errorf("%q: %w", pattern, ErrUnknownService)
	case count == 0 && proto != 0:
		return nil, fmt.Errorf("%q: %w for %s", pattern, ErrNoPort, proto)
	case count == 0:
		return nil, fmt.Errorf("%q: %w (a DNS-SD name only)", pattern, ErrNoPort)
	}
	out := make([]portspec.Port, 0, count)
	for w, word := range set {
		for ; word != 0; word &= word - 1 {
			out = append(out, portspec.Port(w*64+bits.TrailingZeros64(word)))
		}
	}
	return out, nil
}

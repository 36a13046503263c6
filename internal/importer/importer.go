// Package importer reads scans made elsewhere into the shape the store
// keeps: nmap's XML (-oX, from nmap or from portolan), and masscan's JSON
// (-oJ) and list (-oL) output. A file is parsed whole before anything is
// stored, and every error names the file and the line, so a bad file
// imports nothing and says where it is bad.
package importer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
	"portolan/internal/target"
)

// Format is a kind of input file.
type Format string

// The formats Parse reads.
const (
	NmapXML     Format = "nmap-xml"
	MasscanJSON Format = "masscan-json"
	MasscanList Format = "masscan-list"
)

// Formats lists them in the order help text shows them.
var Formats = []Format{NmapXML, MasscanJSON, MasscanList}

// ParseFormat reads a format name.
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(s))
	if slices.Contains(Formats, f) {
		return f, nil
	}
	return "", fmt.Errorf("unknown import format %q (want nmap-xml, masscan-json or masscan-list)", s)
}

// Error is a problem at a place in an input file.
type Error struct {
	File string
	Line int // 1-based; 0 when the problem is the file as a whole
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

func errorf(file string, line int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// Scan is an imported scan: what the store keeps of it, and its results.
type Scan struct {
	Format  Format // what the file held
	Info    store.ScanInfo
	Results []scan.Result
}

// Detect guesses the format of data from its first bytes.
func Detect(data []byte) (Format, bool) {
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	switch {
	case bytes.HasPrefix(t, []byte("<")):
		return NmapXML, true
	case bytes.HasPrefix(t, []byte("[")), bytes.HasPrefix(t, []byte("{")):
		return MasscanJSON, true
	case bytes.HasPrefix(t, []byte("#masscan")), bytes.HasPrefix(t, []byte("open ")), bytes.HasPrefix(t, []byte("banner ")),
		bytes.HasPrefix(t, []byte("closed ")):
		return MasscanList, true
	}
	return "", false
}

// Parse reads data, the contents of the file named name, in format f
// (empty: detected).
func Parse(name string, data []byte, f Format) (*Scan, error) {
	if f == "" {
		var ok bool
		if f, ok = Detect(data); !ok {
			return nil, errorf(name, 1, "not nmap XML, masscan JSON or masscan list output (give --format)")
		}
	}
	var s *Scan
	var err error
	switch f {
	case NmapXML:
		s, err = parseNmapXML(name, data)
	case MasscanJSON:
		s, err = parseMasscanJSON(name, data)
	case MasscanList:
		s, err = parseMasscanList(name, data)
	default:
		return nil, fmt.Errorf("import %s: unknown format %q", name, f)
	}
	if err != nil {
		return nil, err
	}
	s.Format = f
	return s, nil
}

// options is what an imported scan keeps in store.ScanInfo.Options.
type options struct {
	Imported   string                  `json:"imported"` // the file's name
	Format     Format                  `json:"format"`
	NoHostDown bool                    `json:"no_host_down,omitempty"`
	Names      map[netip.Addr]string   `json:"names,omitempty"`
	Versions   map[string]scan.Version `json:"versions,omitempty"` // see store.VersionsOption
}

// finish fills what follows from the results: counts, ports, positions,
// and the targets, hosts and times when the file did not say them.
func finish(name string, s *Scan, opts options) error {
	rs := s.Results
	slices.SortStableFunc(rs, compareResults)
	// A port given twice keeps its last word, as a rescan would.
	out := rs[:0]
	for i, r := range rs {
		if i+1 < len(rs) && compareResults(r, rs[i+1]) == 0 {
			continue
		}
		out = append(out, r)
	}
	rs = out
	si := &s.Info
	ports := si.PortSet
	if ports == nil {
		ports = new(portspec.Set)
	}
	var addrs []netip.Addr
	var first, last time.Time
	up := map[netip.Addr]bool{}
	c := store.Counts{Probes: uint64(len(rs))}
	for i := range rs {
		r := &rs[i]
		r.Pos = uint64(i)
		if si.PortSet == nil {
			ports.Add(r.Proto, r.Port)
		}
		if len(addrs) == 0 || addrs[len(addrs)-1] != r.Addr {
			addrs = append(addrs, r.Addr)
		}
		switch r.State {
		case scan.Open:
			c.Open++
		case scan.Closed:
			c.Closed++
		case scan.Filtered:
			c.Filtered++
		case scan.OpenFiltered:
			c.OpenFiltered++
		}
		if r.State == scan.Open || r.State == scan.Closed || r.State == scan.Unfiltered {
			up[r.Addr] = true
		}
		if t := r.Time; !t.IsZero() {
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
	}
	s.Results = rs
	c.HostsUp = cmp.Or(si.Counts.HostsUp, uint64(len(up)))
	si.Counts = c
	si.PortSet = ports
	if si.Ports == "" {
		// As a user writes it: "80,443", not "T:80,443", for TCP alone.
		si.Ports = ports.String()
		if ps := ports.Protos(); len(ps) == 1 && ps[0] == portspec.TCP {
			si.Ports = strings.TrimPrefix(si.Ports, "T:")
		}
	}
	if si.Targets == "" && len(addrs) > 0 {
		set, err := target.NewSet(rangesOf(addrs)...)
		if err != nil {
			return errorf(name, 0, "targets: %v", err)
		}
		si.Targets = set.String()
	}
	if si.Hosts == 0 {
		si.Hosts = uint64(len(addrs))
	}
	si.Space = si.Hosts * uint64(ports.Len())
	if si.Started.IsZero() {
		si.Started = first
	}
	if si.Started.IsZero() {
		return errorf(name, 0, "no time in the file: nothing says when the scan ran")
	}
	if si.Finished.IsZero() {
		si.Finished = cmp.Or(last, si.Started)
	}
	if si.Status == "" {
		si.Status = store.Done
	}
	si.Checkpoint = si.Space
	b, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("import %s: %w", name, err)
	}
	si.Options = b
	return nil
}

// compareResults orders results as the store does: address, protocol
// name, port.
func compareResults(a, b scan.Result) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := strings.Compare(a.Proto.String(), b.Proto.String()); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// rangesOf merges sorted addresses into ranges of consecutive ones.
func rangesOf(addrs []netip.Addr) []target.Range {
	var out []target.Range
	for _, a := range addrs {
		a = a.WithZone("")
		if n := len(out); n > 0 && out[n-1].Last.Next() == a {
			out[n-1].Last = a
			continue
		}
		out = append(out, target.Range{First: a, Last: a})
	}
	return out
}

// literalTarget reports whether w is a target expression without names.
func literalTarget(w string) bool {
	noDNS := func(context.Context, string, string) ([]netip.Addr, error) {
		return nil, errors.New("no lookups")
	}
	_, err := target.Parse(context.Background(), []string{w}, nil, target.Options{IncludeReserved: true, Force: true, Resolver: noDNS})
	return err == nil
}

func versionKey(r scan.Result) store.VersionKey {
	return store.VersionKey{Addr: r.Addr, Port: r.Port, Proto: r.Proto}
}

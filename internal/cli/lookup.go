package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/portspec"
	"portolan/internal/registry"
)

func init() { register(newLookupCmd) }

// LookupOptions are the inputs of `portolan lookup`.
type LookupOptions struct {
	Args   []string       // ports, port/proto, names or patterns; with Search, words
	Search bool           // Args are words to find in names, descriptions and notes
	Proto  portspec.Proto // only this protocol; zero: every protocol
	All    bool           // every registry field, not only the summary
}

func newLookupCmd(g *Globals) *cobra.Command {
	var opts LookupOptions
	var proto string
	cmd := &cobra.Command{
		Use:   "lookup PORT|NAME|PATTERN...",
		Short: "Look up ports and service names in the IANA registry",
		Long: `Look up ports and service names in the embedded IANA Service Name and Transport
Protocol Port Number Registry (snapshot ` + registry.Snapshot + `).

Each argument is a port (22), a port with a protocol (5353/udp, tcp/443), a service
name (https: every port registered for it) or a name pattern with * and ? wildcards
('http*'). With --search the arguments are words, all of which must appear in a
service's name, description or notes; the best matches come first.

Each answer shows the port, protocol, service name, port class (well-known 0-1023,
registered 1024-49151, dynamic 49152-65535) and description. Unassigned and reserved
ports are answered as such; nothing is ever registered in the dynamic range. Rows
that differ only in protocol are merged in the table ("tcp+udp"); --json gives one
object per registration. A protocol of "any" is a registry row without a protocol;
a port of "dns-sd" is a DNS-SD service name registered without a port.

Exit status: 0 when answered, 2 for a port out of range or an unknown service name,
3 when --search finds nothing.`,
		Example: `  portolan lookup 22
  portolan lookup https
  portolan lookup 5353/udp --json
  portolan lookup tcp/443 'http*'
  portolan lookup --search kerberos
  portolan lookup 49160
  portolan lookup --all --proto udp 53`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Args = args
			if proto != "" {
				p, err := portspec.ParseProto(proto)
				if err != nil {
					return usageErr(fmt.Errorf("--proto: %w", err))
				}
				opts.Proto = p
			}
			return runLookup(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.Search, "search", "s", false, "search names, descriptions and notes for all the words given")
	f.StringVar(&proto, "proto", "", "only this protocol: tcp, udp, sctp or dccp")
	f.BoolVarP(&opts.All, "all", "a", false, "show every registry field (assignee, contact, dates, notes...)")
	return cmd
}

// lookupRecord is one answer: a registry row, or a synthesized "nothing
// registered" for a port without one. It is the JSON form.
type lookupRecord struct {
	Query       string         `json:"query"`
	Port        *portspec.Port `json:"port"`            // null for a DNS-SD name without a port
	Range       string         `json:"range,omitempty"` // the registered range holding the port
	Proto       string         `json:"proto"`           // tcp, udp, sctp, dccp; "any" for a row without one
	Name        string         `json:"name"`            // "" when unassigned or reserved
	Status      string         `json:"status"`          // assigned, dns-sd, unassigned, reserved, dynamic
	Class       string         `json:"class,omitempty"` // well-known, registered, dynamic
	Description string         `json:"description"`
	Reference   string         `json:"reference,omitempty"`

	// With --all.
	Assignee        string `json:"assignee,omitempty"`
	Contact         string `json:"contact,omitempty"`
	Registered      string `json:"registered,omitempty"`
	Modified        string `json:"modified,omitempty"`
	ServiceCode     string `json:"service_code,omitempty"`
	UnauthorizedUse string `json:"unauthorized_use,omitempty"`
	Notes           string `json:"notes,omitempty"`
}

// lookupQuery is one parsed argument.
type lookupQuery struct {
	arg    string
	port   portspec.Port
	isPort bool
	name   string         // a name or pattern when !isPort
	proto  portspec.Proto // from "53/udp" or "tcp/443"; zero: none given
}

// parseLookupArg reads a port (22), a port or name with a protocol (53/udp,
// tcp/443, ssh/tcp) or a name or pattern (https, http*, 914c/g: a slash
// without a protocol on either side belongs to the name).
func parseLookupArg(arg string) (lookupQuery, error) {
	q := lookupQuery{arg: arg}
	if strings.TrimSpace(arg) == "" {
		return q, errors.New("empty argument: want a port, port/proto or service name")
	}
	body := arg
	if a, b, ok := strings.Cut(arg, "/"); ok {
		if p, err := portspec.ParseProto(b); err == nil && a != "" {
			body, q.proto = a, p
		} else if p, err := portspec.ParseProto(a); err == nil && b != "" {
			body, q.proto = b, p
		}
	}
	if isDigits(body) {
		port, err := parseLookupPort(body)
		if err != nil {
			return q, err
		}
		q.port, q.isPort = port, true
		return q, nil
	}
	q.name = body
	return q, nil
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseLookupPort reads a decimal port; s holds only digits.
func parseLookupPort(s string) (portspec.Port, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %s out of range 0-65535", s)
	}
	return portspec.Port(n), nil
}

func runLookup(_ context.Context, g *Globals, opts LookupOptions) error {
	reg := registry.Default()
	var recs []lookupRecord
	if opts.Search {
		text := strings.Join(opts.Args, " ")
		for _, e := range reg.Search(text) {
			if protoMatches(e.Proto, opts.Proto) {
				recs = append(recs, recordOf(text, e, e.Low, opts.All))
			}
		}
		if len(recs) == 0 {
			what := fmt.Sprintf("%q", text)
			if opts.Proto != 0 {
				what += " for " + opts.Proto.String()
			}
			return withCode(ExitNotFound, fmt.Errorf("nothing in the IANA registry matches %s", what))
		}
	} else {
		for _, arg := range opts.Args {
			q, err := parseLookupArg(arg)
			if err != nil {
				return usageErr(err)
			}
			if q.proto != 0 && opts.Proto != 0 && q.proto != opts.Proto {
				return usageErr(fmt.Errorf("%s conflicts with --proto %s", arg, opts.Proto))
			}
			if q.proto == 0 {
				q.proto = opts.Proto
			}
			rs, err := lookupOne(reg, q, opts.All)
			if err != nil {
				return err
			}
			recs = append(recs, rs...)
		}
	}

	switch {
	case g.JSON:
		return writeJSON(g, recs)
	case opts.All:
		return writeLookupDetails(g, recs)
	}
	return lookupTable(recs).Write(g.io.Out, g.color())
}

// lookupOne answers one argument.
func lookupOne(reg *registry.Registry, q lookupQuery, all bool) ([]lookupRecord, error) {
	var recs []lookupRecord
	if q.isPort {
		for _, e := range reg.ByPort(q.port, q.proto) {
			recs = append(recs, recordOf(q.arg, e, q.port, all))
		}
		if len(recs) == 0 {
			// Nothing registered: the dynamic range, or a protocol the
			// registry has no row for on this port.
			protos := []portspec.Proto{q.proto}
			if q.proto == 0 {
				protos = []portspec.Proto{portspec.TCP, portspec.UDP}
			}
			for _, proto := range protos {
				recs = append(recs, unregistered(q.arg, q.port, proto))
			}
		}
		return recs, nil
	}
	matched := false
	for _, e := range reg.ByName(q.name) {
		matched = true
		if protoMatches(e.Proto, q.proto) {
			recs = append(recs, recordOf(q.arg, e, e.Low, all))
		}
	}
	switch {
	case !matched && strings.ContainsAny(q.name, "*?"):
		return nil, usageErr(fmt.Errorf("no service name in the IANA registry matches %q", q.name))
	case !matched:
		return nil, usageErr(fmt.Errorf("no service named %q in the IANA registry (to search descriptions: portolan lookup --search %s)", q.name, q.name))
	case len(recs) == 0:
		return nil, usageErr(fmt.Errorf("service %q has nothing registered for %s", q.name, q.proto))
	}
	return recs, nil
}

// protoMatches reports whether a row for have answers a question about want;
// zero on either side is every protocol.
func protoMatches(have, want portspec.Proto) bool {
	return have == 0 || want == 0 || have == want
}

// recordOf turns a registry row into an answer; port is the port asked about
// (or the row's first port) and is ignored for rows without a port.
func recordOf(query string, e registry.Entry, port portspec.Port, all bool) lookupRecord {
	r := lookupRecord{
		Query:       query,
		Proto:       "any",
		Name:        e.Name,
		Status:      entryStatus(e),
		Description: e.Description,
		Reference:   e.Reference,
	}
	if e.Proto != 0 {
		r.Proto = e.Proto.String()
	}
	if e.HasPort {
		r.Port = &port
		r.Class = portspec.ClassOf(port).String()
		if e.Low != e.High {
			r.Range = e.Ports()
		}
	}
	if all {
		r.Assignee, r.Contact = e.Assignee, e.Contact
		r.Registered, r.Modified = e.Registered, e.Modified
		r.ServiceCode, r.UnauthorizedUse, r.Notes = e.ServiceCode, e.UnauthorizedUse, e.Notes
	}
	return r
}

// entryStatus classifies a row for people and scripts.
func entryStatus(e registry.Entry) string {
	switch d := strings.ToLower(e.Description); {
	case e.Name != "" && e.HasPort:
		return "assigned"
	case e.Name != "":
		return "dns-sd"
	case strings.HasPrefix(d, "reserved") || strings.Contains(d, "private"):
		return "reserved"
	}
	return "unassigned"
}

// unregistered is the answer for a port and protocol without any row.
func unregistered(query string, port portspec.Port, proto portspec.Proto) lookupRecord {
	class := portspec.ClassOf(port)
	r := lookupRecord{Query: query, Port: &port, Proto: proto.String(), Class: class.String()}
	if class == portspec.Dynamic {
		r.Status = "dynamic"
		r.Description = class.Describe() + ", nothing registered"
	} else {
		r.Status = "unassigned"
		r.Description = "nothing registered for " + proto.String()
	}
	return r
}

// lookupTable merges records that differ only in protocol into one row
// ("tcp+udp"), in order of first appearance.
func lookupTable(recs []lookupRecord) *output.Table {
	t := &output.Table{Header: []string{"PORT", "PROTO", "NAME", "CLASS", "DESCRIPTION"}}
	type row struct {
		cells  []string
		protos []string
		dim    bool
	}
	var rows []*row
	index := make(map[string]*row)
	for _, r := range recs {
		port := "dns-sd" // a DNS-SD service name registered without a port
		switch {
		case r.Range != "":
			port = r.Range
		case r.Port != nil:
			port = strconv.Itoa(int(*r.Port))
		}
		name, class := r.Name, r.Class
		if name == "" {
			name = "-"
		}
		if class == "" {
			class = "-"
		}
		desc := strings.Join(strings.Fields(r.Description), " ") // some span lines
		key := strings.Join([]string{r.Query, port, name, class, desc, r.Status}, "\x00")
		if x, ok := index[key]; ok {
			x.protos = append(x.protos, r.Proto)
			continue
		}
		x := &row{cells: []string{port, "", name, class, desc}, protos: []string{r.Proto}, dim: r.Name == ""}
		index[key] = x
		rows = append(rows, x)
	}
	for _, x := range rows {
		x.cells[1] = strings.Join(x.protos, "+")
		var colors []output.Color
		switch {
		case x.dim:
			colors = []output.Color{output.Dim, output.Dim, output.Dim, output.Dim, output.Dim}
		default:
			colors = []output.Color{"", "", output.Green}
		}
		t.AddColored(x.cells, colors)
	}
	return t
}

// writeLookupDetails writes every field of every record as "label: value"
// blocks, one per registration, for --all without --json.
func writeLookupDetails(g *Globals, recs []lookupRecord) error {
	w := bufio.NewWriter(g.io.Out)
	for i, r := range recs {
		if i > 0 {
			w.WriteByte('\n')
		}
		port := "-"
		if r.Port != nil {
			port = strconv.Itoa(int(*r.Port))
		}
		for _, f := range [][2]string{
			{"port", port}, {"range", r.Range}, {"proto", r.Proto}, {"name", r.Name},
			{"status", r.Status}, {"class", r.Class}, {"description", r.Description},
			{"reference", r.Reference}, {"assignee", r.Assignee}, {"contact", r.Contact},
			{"registered", r.Registered}, {"modified", r.Modified},
			{"service code", r.ServiceCode}, {"unauthorized use", r.UnauthorizedUse},
			{"notes", r.Notes},
		} {
			if f[1] == "" {
				continue
			}
			// Continuation lines of multi-line fields line up under the value.
			for j, line := range strings.Split(strings.TrimSpace(f[1]), "\n") {
				label := ""
				if j == 0 {
					label = f[0] + ":"
				}
				fmt.Fprintf(w, "%-18s%s\n", label, strings.TrimSpace(line))
			}
		}
	}
	return w.Flush()
}

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

func init() { register(newPortsCmd) }

// PortsOptions are the inputs of `portolan ports`.
type PortsOptions struct {
	Spec    string
	Exclude string // a spec whose ports are removed; empty: none
	Count   bool   // counts per protocol instead of the spec
	List    bool   // one port/proto per line instead of the spec
	Class   bool   // counts per protocol and port class
}

func newPortsCmd(g *Globals) *cobra.Command {
	var opts PortsOptions
	cmd := &cobra.Command{
		Use:   "ports SPEC",
		Short: "Expand and validate a port spec",
		Long: `Expand and validate an nmap-style port spec, as scan -p and other commands take it.

A spec is a comma-separated list of ports (22), ranges (8000-8100), open ranges
(-1024 is 1-1024, 60000- runs to 65535, - alone is 1-65535), protocol prefixes
that last until the next one (T:, U:, S:), protocol suffixes for one entry
(53/udp, tcp/443), service names and wildcards from the IANA registry (ssh,
http*), and exclusions (!80 or ^80, removed from the whole result). Port 0 is
included only when written out (0, 0-10). Without a protocol, ports are TCP.

Prints the canonical spec, or with --list every port, with --count the number
of ports per protocol, with --class the split into well-known (0-1023),
registered (1024-49151) and dynamic (49152-65535) ports.`,
		Example: `  portolan ports '22,80,8000-8100,U:53,T:ssh' --count
  portolan ports 'http*,U:domain' --list
  portolan ports --class --exclude 80,443 -- -1024
  portolan ports 'T:1-100,U:53' --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Spec = args[0]
			return runPorts(cmd.Context(), g, opts)
		},
	}
	// "-1024" looks like a flag to the flag parser; say how to pass it.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		if strings.HasPrefix(err.Error(), "unknown shorthand flag") {
			err = fmt.Errorf("%w (a spec that starts with '-' goes after --: portolan ports -- -1024)", err)
		}
		return usageErr(err)
	})
	f := cmd.Flags()
	f.StringVar(&opts.Exclude, "exclude", "", "remove the ports of this spec")
	f.BoolVar(&opts.Count, "count", false, "print the number of ports per protocol and in total")
	f.BoolVarP(&opts.List, "list", "l", false, "print one port/proto per line")
	f.BoolVar(&opts.Class, "class", false, "print the number of ports per protocol and port class")
	return cmd
}

// portsResult is the JSON form of the answer.
type portsResult struct {
	Spec    string                              `json:"spec"`
	Count   int                                 `json:"count"`
	ByProto map[portspec.Proto]int              `json:"by_proto"`
	ByClass map[portspec.Proto]portsClassCounts `json:"by_class,omitempty"`
	Ports   []portsItem                         `json:"ports,omitempty"`
}

type portsClassCounts struct {
	WellKnown  int `json:"well-known"`
	Registered int `json:"registered"`
	Dynamic    int `json:"dynamic"`
}

type portsItem struct {
	Port  portspec.Port  `json:"port"`
	Proto portspec.Proto `json:"proto"`
}

var portClasses = []portspec.Class{portspec.WellKnown, portspec.Registered, portspec.Dynamic}

func runPorts(_ context.Context, g *Globals, opts PortsOptions) error {
	if opts.List && (opts.Count || opts.Class) && !g.JSON { // JSON has room for both
		return usageErr(errors.New("--list cannot be combined with --count or --class (except with --json)"))
	}
	p := portParser()
	set, err := p.Parse(opts.Spec)
	if err != nil {
		return usageErr(err) // a SyntaxError already names the spec and column
	}
	if opts.Exclude != "" {
		ex, err := p.Parse(opts.Exclude)
		if err != nil {
			return usageErr(fmt.Errorf("--exclude: %w", err))
		}
		set.RemoveSet(ex)
		if set.Len() == 0 {
			return usageErr(fmt.Errorf("no ports left after --exclude %s", opts.Exclude))
		}
	}

	if g.JSON {
		res := portsResult{Spec: set.String(), Count: set.Len(), ByProto: map[portspec.Proto]int{}}
		for _, proto := range set.Protos() {
			res.ByProto[proto] = set.LenProto(proto)
		}
		if opts.Class {
			res.ByClass = map[portspec.Proto]portsClassCounts{}
			for _, proto := range set.Protos() {
				n := portsByClass(set, proto)
				res.ByClass[proto] = portsClassCounts{WellKnown: n[0], Registered: n[1], Dynamic: n[2]}
			}
		}
		if opts.List {
			res.Ports = make([]portsItem, 0, set.Len())
			for proto, port := range set.All() {
				res.Ports = append(res.Ports, portsItem{Port: port, Proto: proto})
			}
		}
		return writeJSON(g, res)
	}

	switch {
	case opts.Class:
		t := output.Table{Header: []string{"PROTO", "WELL-KNOWN", "REGISTERED", "DYNAMIC", "TOTAL"}, RightAlign: []int{1, 2, 3, 4}}
		var total [3]int
		for _, proto := range set.Protos() {
			n := portsByClass(set, proto)
			t.Add(proto.String(), strconv.Itoa(n[0]), strconv.Itoa(n[1]), strconv.Itoa(n[2]), strconv.Itoa(set.LenProto(proto)))
			for i := range n {
				total[i] += n[i]
			}
		}
		t.Add("total", strconv.Itoa(total[0]), strconv.Itoa(total[1]), strconv.Itoa(total[2]), strconv.Itoa(set.Len()))
		return t.Write(g.io.Out, g.color())
	case opts.Count:
		t := output.Table{Header: []string{"PROTO", "PORTS"}, RightAlign: []int{1}}
		for _, proto := range set.Protos() {
			t.Add(proto.String(), strconv.Itoa(set.LenProto(proto)))
		}
		t.Add("total", strconv.Itoa(set.Len()))
		return t.Write(g.io.Out, g.color())
	case opts.List:
		w := bufio.NewWriter(g.io.Out)
		var line []byte
		for proto, port := range set.All() {
			line = strconv.AppendUint(line[:0], uint64(port), 10)
			line = append(line, '/')
			line = append(line, proto.String()...)
			line = append(line, '\n')
			w.Write(line)
		}
		return w.Flush()
	}
	_, err = fmt.Fprintln(g.io.Out, set.String())
	return err
}

// registryNames resolves service names in port specs through the embedded
// registry, loading it only when a spec names a service.
type registryNames struct{}

func (registryNames) PortsByName(pattern string, proto portspec.Proto) ([]portspec.Port, error) {
	return registry.Default().PortsByName(pattern, proto)
}

// portParser is the port-spec parser for every command: names come from the
// registry, unprefixed ports are TCP.
func portParser() portspec.Parser { return portspec.Parser{Names: registryNames{}} }

// portsByClass returns the number of ports of proto in each of portClasses.
func portsByClass(set *portspec.Set, proto portspec.Proto) [3]int {
	var n [3]int
	for i, c := range portClasses {
		lo, hi := c.Range()
		n[i] = set.LenRange(proto, lo, hi)
	}
	return n
}

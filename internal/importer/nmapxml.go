package importer

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
	"portolan/internal/store"
)

// The parts of nmap's XML (nmap.dtd) an import reads.

type nmapHost struct {
	StartTime string `xml:"starttime,attr"`
	Status    struct {
		State string `xml:"state,attr"`
	} `xml:"status"`
	Addresses []struct {
		Addr     string `xml:"addr,attr"`
		AddrType string `xml:"addrtype,attr"`
	} `xml:"address"`
	Hostnames []struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	} `xml:"hostnames>hostname"`
	Extra []nmapExtra `xml:"ports>extraports"`
	Ports []nmapPort  `xml:"ports>port"`
	Times *struct {
		SRTT string `xml:"srtt,attr"`
	} `xml:"times"`
}

// nmapExtra is an <extraports> element and the line it starts on.
type nmapExtra struct {
	State   string `xml:"state,attr"`
	Reasons []struct {
		Reason string `xml:"reason,attr"`
		Proto  string `xml:"proto,attr"`
		Ports  string `xml:"ports,attr"`
	} `xml:"extrareasons"`
	line int
}

// nmapPort is a <port> element and the line it starts on.
type nmapPort struct {
	Protocol string `xml:"protocol,attr"`
	PortID   string `xml:"portid,attr"`
	State    struct {
		State  string `xml:"state,attr"`
		Reason string `xml:"reason,attr"`
	} `xml:"state"`
	Service *struct {
		Name      string `xml:"name,attr"`
		Product   string `xml:"product,attr"`
		Version   string `xml:"version,attr"`
		ExtraInfo string `xml:"extrainfo,attr"`
	} `xml:"service"`
	Scripts []struct {
		ID     string `xml:"id,attr"`
		Output string `xml:"output,attr"`
	} `xml:"script"`
	line int
}

// UnmarshalXML notes the line, so an error can point at the port.
func (p *nmapPort) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	l, _ := d.InputPos()
	type plain nmapPort // without this method
	var v plain
	err := d.DecodeElement(&v, &start)
	*p = nmapPort(v)
	p.line = l
	return err
}

// UnmarshalXML notes the line, so an error can point at the element.
func (e *nmapExtra) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	l, _ := d.InputPos()
	type plain nmapExtra // without this method
	var v plain
	err := d.DecodeElement(&v, &start)
	*e = nmapExtra(v)
	e.line = l
	return err
}

// lineError is a problem at a line inside a host.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

func atLine(line int, err error) error { return &lineError{line, err.Error()} }

type nmapFinished struct {
	Time     string `xml:"time,attr"`
	Exit     string `xml:"exit,attr"`
	ErrorMsg string `xml:"errormsg,attr"`
}

type nmapHosts struct {
	Up    string `xml:"up,attr"`
	Total string `xml:"total,attr"`
}

// parseNmapXML reads nmap's -oX output, from nmap or from portolan.
func parseNmapXML(name string, data []byte) (*Scan, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	s := &Scan{}
	opts := options{Imported: name, Format: NmapXML}
	si := &s.Info
	var ports *portspec.Set // from <scaninfo>
	sawRoot, finished := false, false
	line := func() int { l, _ := dec.InputPos(); return l }
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, xmlError(name, line(), err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		at := line()
		attr := func(n string) string {
			for _, a := range start.Attr {
				if a.Name.Local == n {
					return a.Value
				}
			}
			return ""
		}
		switch start.Name.Local {
		case "nmaprun":
			if sawRoot {
				return nil, errorf(name, at, "a second <nmaprun>")
			}
			sawRoot = true
			if sc := attr("scanner"); sc != "nmap" && sc != "masscan" {
				return nil, errorf(name, at, "scanner %q: not an nmap XML file", sc)
			}
			si.Command = attr("args")
			si.Version = attr("version")
			if !strings.HasPrefix(si.Command, "portolan") {
				si.Version = strings.TrimSpace(attr("scanner") + " " + si.Version)
			}
			if v := attr("start"); v != "" {
				t, err := unixAttr(v)
				if err != nil {
					return nil, errorf(name, at, "start %q: %v", v, err)
				}
				si.Started = t
			}
			opts.NoHostDown = hasFlag(si.Command, "-Pn")
			si.Targets = targetsOfArgs(si.Command)
			si.Ports = flagValue(si.Command, "-p")
		case "scaninfo":
			if !sawRoot {
				return nil, errorf(name, at, "<scaninfo> outside <nmaprun>")
			}
			proto, err := portspec.ParseProto(attr("protocol"))
			if err != nil {
				return nil, errorf(name, at, "scaninfo: %v", err)
			}
			if si.Prober == "" || proto == portspec.TCP {
				si.Prober = attr("type")
			}
			if svc := attr("services"); svc != "" {
				set, err := portspec.Parse(protoPrefix(proto) + strings.ReplaceAll(svc, ",", ","+protoPrefix(proto)))
				if err != nil {
					return nil, errorf(name, at, "scaninfo services: %v", err)
				}
				if ports == nil {
					ports = new(portspec.Set)
				}
				ports.AddSet(set)
			}
		case "host":
			if !sawRoot {
				return nil, errorf(name, at, "<host> outside <nmaprun>")
			}
			var h nmapHost
			if err := dec.DecodeElement(&h, &start); err != nil {
				return nil, xmlError(name, line(), err)
			}
			if err := addHost(s, &opts, h, ports); err != nil {
				var le *lineError
				if errors.As(err, &le) {
					return nil, errorf(name, le.line, "%s", le.msg)
				}
				return nil, errorf(name, at, "host: %v", err)
			}
		case "finished":
			var f nmapFinished
			if err := dec.DecodeElement(&f, &start); err != nil {
				return nil, xmlError(name, line(), err)
			}
			finished = true
			if f.Time != "" {
				t, err := unixAttr(f.Time)
				if err != nil {
					return nil, errorf(name, at, "finished time %q: %v", f.Time, err)
				}
				si.Finished = t
			}
			if f.Exit == "error" {
				si.Status = store.Failed
			}
		case "hosts":
			var h nmapHosts
			if err := dec.DecodeElement(&h, &start); err != nil {
				return nil, xmlError(name, line(), err)
			}
			if h.Total != "" {
				n, err := strconv.ParseUint(h.Total, 10, 32)
				if err != nil {
					return nil, errorf(name, at, "hosts total %q: %v", h.Total, err)
				}
				si.Hosts = n
			}
			if h.Up != "" {
				n, err := strconv.ParseUint(h.Up, 10, 32)
				if err != nil {
					return nil, errorf(name, at, "hosts up %q: %v", h.Up, err)
				}
				si.Counts.HostsUp = n
			}
		}
	}
	if !sawRoot {
		return nil, errorf(name, 0, "no <nmaprun> element: not an nmap XML file")
	}
	if !finished {
		// nmap writes <runstats> last; a file without it is from a scan
		// that was stopped.
		si.Status = store.Interrupted
	}
	si.PortSet = ports
	if err := finish(name, s, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// xmlError places a decoder error at its line.
func xmlError(name string, line int, err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return errorf(name, se.Line, "%s", se.Msg)
	}
	return errorf(name, line, "%v", err)
}

// addHost adds the ports of h to s. ports are the ports scanned (from
// <scaninfo>); nil when the file does not say.
func addHost(s *Scan, opts *options, h nmapHost, ports *portspec.Set) error {
	var addr netip.Addr
	for _, a := range h.Addresses {
		if a.AddrType != "ipv4" && a.AddrType != "ipv6" {
			continue
		}
		p, err := netip.ParseAddr(a.Addr)
		if err != nil {
			return err
		}
		addr = p.Unmap()
		break
	}
	if !addr.IsValid() {
		return errors.New("no IPv4 or IPv6 address")
	}
	for _, hn := range h.Hostnames {
		if hn.Type == "user" && hn.Name != "" {
			if opts.Names == nil {
				opts.Names = map[netip.Addr]string{}
			}
			opts.Names[addr] = hn.Name
		}
	}
	var when time.Time
	if h.StartTime != "" {
		t, err := unixAttr(h.StartTime)
		if err != nil {
			return err
		}
		when = t
	}
	var rtt time.Duration
	if h.Times != nil && h.Times.SRTT != "" {
		us, err := strconv.ParseInt(h.Times.SRTT, 10, 64)
		if err != nil || us < 0 {
			return errors.New("times srtt " + strconv.Quote(h.Times.SRTT) + ": not a number of microseconds")
		}
		rtt = time.Duration(us) * time.Microsecond
	}
	listed := new(portspec.Set)
	for _, p := range h.Ports {
		proto, err := portspec.ParseProto(p.Protocol)
		if err != nil {
			return atLine(p.line, err)
		}
		n, err := strconv.ParseUint(p.PortID, 10, 16)
		if err != nil {
			return atLine(p.line, errors.New("port "+strconv.Quote(p.PortID)+": not a port number"))
		}
		st, err := scan.ParseState(p.State.State)
		if err != nil {
			return atLine(p.line, err)
		}
		r := scan.Result{Addr: addr, Port: portspec.Port(n), Proto: proto, State: st, Reason: p.State.Reason, Time: when}
		if st == scan.Open || st == scan.Closed {
			r.RTT = rtt // nmap keeps one for the host, not per port
		}
		for _, sc := range p.Scripts {
			if sc.ID == "banner" {
				r.Banner = sc.Output
			}
		}
		if p.Service != nil {
			r.Service = p.Service.Name
			v := scan.Version{Product: p.Service.Product, Version: p.Service.Version, Extra: p.Service.ExtraInfo}
			if v != (scan.Version{}) && v != scan.ParseVersion(r.Service, r.Banner) {
				if opts.Versions == nil {
					opts.Versions = map[string]scan.Version{}
				}
				opts.Versions[versionKey(r).String()] = v
			}
		}
		listed.Add(proto, r.Port)
		s.Results = append(s.Results, r)
	}
	for _, e := range h.Extra {
		st, err := scan.ParseState(e.State)
		if err != nil {
			return atLine(e.line, err)
		}
		covered := 0
		for _, rs := range e.Reasons {
			if rs.Ports == "" {
				continue
			}
			proto, err := portspec.ParseProto(cmpOr(rs.Proto, "tcp"))
			if err != nil {
				return atLine(e.line, err)
			}
			set, err := portspec.Parse(protoPrefix(proto) + strings.ReplaceAll(rs.Ports, ",", ","+protoPrefix(proto)))
			if err != nil {
				return atLine(e.line, fmt.Errorf("extrareasons ports %q: not a list of port numbers and ranges", rs.Ports))
			}
			for pr, p := range set.All() {
				s.Results = append(s.Results, scan.Result{Addr: addr, Port: p, Proto: pr, State: st, Reason: rs.Reason,
					Service: registry.PortName(p, pr), Time: when})
				listed.Add(pr, p)
				covered++
			}
		}
		if covered == 0 && len(h.Extra) == 1 && ports != nil {
			// Older nmap: no port lists; the one collapsed state is every
			// scanned port not listed.
			reason := ""
			if len(e.Reasons) == 1 {
				reason = e.Reasons[0].Reason
			}
			for pr, p := range ports.All() {
				if !listed.Has(pr, p) {
					s.Results = append(s.Results, scan.Result{Addr: addr, Port: p, Proto: pr, State: st, Reason: reason,
						Service: registry.PortName(p, pr), Time: when})
				}
			}
		}
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// protoPrefix is the port spec prefix of proto: "T:", "U:", "S:".
func protoPrefix(p portspec.Proto) string {
	switch p {
	case portspec.UDP:
		return "U:"
	case portspec.SCTP:
		return "S:"
	}
	return "T:"
}

// unixAttr reads a unix time in seconds.
func unixAttr(v string) (time.Time, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, errors.New("not a unix time")
	}
	return time.Unix(n, 0), nil
}

// hasFlag reports whether the command line args has flag as a word.
func hasFlag(args, flag string) bool {
	for _, w := range strings.Fields(args) {
		if w == flag {
			return true
		}
	}
	return false
}

// flagValue returns the word after flag in the command line args.
func flagValue(args, flag string) string {
	w := strings.Fields(args)
	for i := 0; i+1 < len(w); i++ {
		if w[i] == flag {
			return w[i+1]
		}
	}
	return ""
}

// valueFlags are nmap and portolan options whose next word is a value that
// may look like a target (an address, a file name).
var valueFlags = map[string]bool{
	"-p": true, "--exclude": true, "-S": true, "-D": true, "-e": true, "--dns-servers": true, "-iL": true,
	"--excludefile": true, "-oX": true, "-oN": true, "-oG": true, "-oA": true, "-oJ": true, "-oL": true, "-o": true,
	"--db": true, "--top-ports": true, "--format": true, "-f": true, "--rate": true, "--max-rate": true, "--source-port": true,
	"-g": true, "--data-length": true, "--ttl": true, "--script": true, "--script-args": true, "-T": true,
}

// targetsOfArgs picks the target expressions out of a command line: the
// words that parse as literal addresses, ranges or prefixes and are not
// the value of an option. Empty when there are none (the targets are then
// the addresses in the file).
func targetsOfArgs(args string) string {
	words := strings.Fields(args)
	var out []string
	for i := 1; i < len(words); i++ {
		w := words[i]
		if valueFlags[w] {
			i++
			continue
		}
		if strings.HasPrefix(w, "-") || !strings.ContainsAny(w, ".:") {
			continue
		}
		if literalTarget(w) {
			out = append(out, w)
		}
	}
	return strings.Join(out, ",")
}

package output

import (
	"bufio"
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// The nmap XML elements portolan writes, in the order nmap.dtd requires.

type xmlScanInfo struct {
	XMLName     xml.Name `xml:"scaninfo"`
	Type        string   `xml:"type,attr"`
	Protocol    string   `xml:"protocol,attr"`
	NumServices int      `xml:"numservices,attr"`
	Services    string   `xml:"services,attr"`
}

type xmlLevel struct {
	Level int `xml:"level,attr"`
}

type xmlHost struct {
	XMLName   xml.Name     `xml:"host"`
	StartTime int64        `xml:"starttime,attr,omitempty"`
	EndTime   int64        `xml:"endtime,attr,omitempty"`
	Status    xmlState     `xml:"status"`
	Address   xmlAddress   `xml:"address"`
	Hostnames xmlHostnames `xml:"hostnames"` // the name the target was given as; no reverse lookups
	Ports     xmlPorts     `xml:"ports"`
	Times     *xmlTimes    `xml:"times"`
}

type xmlHostnames struct {
	Names []xmlHostname `xml:"hostname"`
}

// xmlHostname is a name of the host: type "user" for one given on the
// command line, as nmap writes it.
type xmlHostname struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

// xmlState is both <status> of a host and <state> of a port.
type xmlState struct {
	State     string `xml:"state,attr"`
	Reason    string `xml:"reason,attr"`
	ReasonTTL int    `xml:"reason_ttl,attr"`
}

type xmlAddress struct {
	Addr     string `xml:"addr,attr"`
	AddrType string `xml:"addrtype,attr"`
}

type xmlPorts struct {
	Extra []xmlExtraPorts `xml:"extraports"`
	Ports []xmlPort       `xml:"port"`
}

type xmlExtraPorts struct {
	State   string            `xml:"state,attr"`
	Count   int               `xml:"count,attr"`
	Reasons []xmlExtraReasons `xml:"extrareasons"`
}

type xmlExtraReasons struct {
	Reason string `xml:"reason,attr"`
	Count  int    `xml:"count,attr"`
	Proto  string `xml:"proto,attr"`
	Ports  string `xml:"ports,attr"`
}

type xmlPort struct {
	Protocol string      `xml:"protocol,attr"`
	PortID   int         `xml:"portid,attr"`
	State    xmlState    `xml:"state"`
	Service  *xmlService `xml:"service"`
	Scripts  []xmlScript `xml:"script"`
}

type xmlService struct {
	Name      string `xml:"name,attr"`
	Product   string `xml:"product,attr,omitempty"`
	Version   string `xml:"version,attr,omitempty"`
	ExtraInfo string `xml:"extrainfo,attr,omitempty"`
	Method    string `xml:"method,attr"`
	Conf      int    `xml:"conf,attr"`
}

type xmlScript struct {
	ID     string `xml:"id,attr"`
	Output string `xml:"output,attr"`
}

type xmlTimes struct {
	SRTT   int64 `xml:"srtt,attr"`
	RTTVar int64 `xml:"rttvar,attr"`
	To     int64 `xml:"to,attr"`
}

type xmlRunStats struct {
	XMLName  xml.Name    `xml:"runstats"`
	Finished xmlFinished `xml:"finished"`
	Hosts    xmlHosts    `xml:"hosts"`
}

type xmlFinished struct {
	Time     int64  `xml:"time,attr"`
	TimeStr  string `xml:"timestr,attr,omitempty"`
	Elapsed  string `xml:"elapsed,attr"`
	Summary  string `xml:"summary,attr,omitempty"`
	Exit     string `xml:"exit,attr"`
	ErrorMsg string `xml:"errormsg,attr,omitempty"`
}

type xmlHosts struct {
	Up    int `xml:"up,attr"`
	Down  int `xml:"down,attr"`
	Total int `xml:"total,attr"`
}

// nmapScanTypes are the TCP scan types nmap.dtd allows in <scaninfo>.
var nmapScanTypes = []string{"syn", "ack", "bounce", "connect", "null", "xmas", "window", "maimon", "fin"}

// xmlOutputVersion is the version of nmap's XML format we follow (nmap 7).
const xmlOutputVersion = "1.05"

// writeScanXML writes nmap's XML output format (-oX), valid against
// nmap.dtd, so tools that import nmap scans (ndiff, Metasploit, Faraday,
// python-libnmap, ...) read it unchanged. The DTD fixes the root's scanner
// attribute to "nmap"; a comment and args say portolan wrote the file.
// A host with an open or closed port is up, with the reason of its first
// such port; one that never answered is down (up, "user-set", with -Pn, as
// nmap does); ports
// of a state with more than 25 ports on a host are collapsed into
// <extraports>, as nmap does. Hosts are written as they are encoded, so
// the memory used does not grow with the number of hosts.
func writeScanXML(w io.Writer, meta ScanMeta, sorted []scan.Result) error {
	ports := scannedPorts(meta, sorted)
	tcpType := meta.ScanType
	if tcpType == "" {
		tcpType = "connect"
	}
	if ports.LenProto(portspec.TCP) > 0 && !slices.Contains(nmapScanTypes, tcpType) {
		return fmt.Errorf("nmap XML has no TCP scan type %q (want one of %s)", tcpType, strings.Join(nmapScanTypes, ", "))
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(xml.Header)
	bw.WriteString("<!DOCTYPE nmaprun>\n")
	fmt.Fprintf(bw, "<!-- %s -->\n", commentText(initiated(meta)))

	enc := xml.NewEncoder(bw)
	enc.Indent("", " ")
	root := xml.StartElement{Name: xml.Name{Local: "nmaprun"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "scanner"}, Value: "nmap"}, // the only value nmap.dtd allows
		{Name: xml.Name{Local: "args"}, Value: meta.Args},
	}}
	if !meta.Start.IsZero() {
		root.Attr = append(root.Attr,
			xml.Attr{Name: xml.Name{Local: "start"}, Value: strconv.FormatInt(meta.Start.Unix(), 10)},
			xml.Attr{Name: xml.Name{Local: "startstr"}, Value: ctime(meta.Start)})
	}
	root.Attr = append(root.Attr,
		xml.Attr{Name: xml.Name{Local: "version"}, Value: versionOr(meta.Version)},
		xml.Attr{Name: xml.Name{Local: "xmloutputversion"}, Value: xmlOutputVersion})
	if err := enc.EncodeToken(root); err != nil {
		return err
	}

	for _, proto := range ports.Protos() {
		if meta.DiscoveryOnly {
			break // no ports scanned, as nmap -sn writes no <scaninfo>
		}
		typ := tcpType
		switch proto {
		case portspec.UDP:
			typ = "udp"
		case portspec.SCTP:
			typ = "sctpinit"
		}
		list := ports.Ports(proto)
		if err := enc.Encode(xmlScanInfo{Type: typ, Protocol: proto.String(), NumServices: len(list), Services: compactPorts(list)}); err != nil {
			return err
		}
	}
	if err := enc.EncodeElement(xmlLevel{meta.Verbose}, xml.StartElement{Name: xml.Name{Local: "verbose"}}); err != nil {
		return err
	}
	if err := enc.EncodeElement(xmlLevel{meta.Debugging}, xml.StartElement{Name: xml.Name{Local: "debugging"}}); err != nil {
		return err
	}

	hosts := groupHosts(sorted, meta.Verbose)
	last := meta.Start
	for _, h := range hosts {
		xh := xmlHostOf(meta, h, hostStatus(meta, h))
		if name := meta.Names[h.addr]; name != "" {
			xh.Hostnames.Names = []xmlHostname{{Name: name, Type: "user"}}
		}
		if meta.DiscoveryOnly {
			xh.Ports = xmlPorts{} // the results stand for hosts
		}
		if end := time.Unix(xh.EndTime, 0); xh.EndTime != 0 && end.After(last) {
			last = end
		}
		if err := enc.Encode(xh); err != nil {
			return err
		}
	}

	end := meta.End
	if end.IsZero() {
		end = last // stopped or still running: as far as the results go
	}
	total, up := hostCounts(meta, hosts)
	fin := xmlFinished{Time: end.Unix(), Elapsed: "0.00", Exit: "success"}
	if !end.IsZero() {
		fin.TimeStr = ctime(end)
		fin.Summary = fmt.Sprintf("portolan %s at %s; %s", doneVerb(meta), ctime(end), doneSummary(meta, hosts))
	}
	if !meta.Start.IsZero() && !end.IsZero() {
		fin.Elapsed = fmt.Sprintf("%.2f", end.Sub(meta.Start).Seconds())
	}
	if meta.Error != "" {
		fin.Exit, fin.ErrorMsg = "error", meta.Error
	}
	if err := enc.Encode(xmlRunStats{Finished: fin, Hosts: xmlHosts{Up: up, Down: total - up, Total: total}}); err != nil {
		return err
	}
	if err := enc.EncodeToken(root.End()); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	bw.WriteByte('\n')
	return bw.Flush()
}

// initiated is the opening comment: "portolan dev scan initiated Tue Nov
// 14 22:13:20 2023 as: portolan scan ...".
func initiated(meta ScanMeta) string {
	s := "portolan " + versionOr(meta.Version) + " scan"
	if !meta.Start.IsZero() {
		s += " initiated " + ctime(meta.Start)
	}
	if meta.Args != "" {
		s += " as: " + oneLine(meta.Args)
	}
	return s
}

// commentText makes s safe inside an XML comment, which may hold neither
// "--" nor the characters XML forbids.
func commentText(s string) string {
	s = printable(s)
	for strings.Contains(s, "--") {
		s = strings.ReplaceAll(s, "--", "- -")
	}
	return s
}

// xmlHostOf builds the <host> element of h with its status.
func xmlHostOf(meta ScanMeta, h host, status xmlState) xmlHost {
	addrType := "ipv4"
	if h.addr.Is6() {
		addrType = "ipv6"
	}
	xh := xmlHost{
		Status:  status,
		Address: xmlAddress{Addr: h.addr.WithZone("").String(), AddrType: addrType},
	}
	var rtts []int64
	for _, r := range h.results {
		if !r.Time.IsZero() {
			if t := r.Time.Unix(); xh.StartTime == 0 || t < xh.StartTime {
				xh.StartTime = t
			}
			xh.EndTime = max(xh.EndTime, r.Time.Unix())
		}
		if r.RTT > 0 {
			rtts = append(rtts, r.RTT.Microseconds())
		}
	}
	for _, g := range h.hidden {
		ep := xmlExtraPorts{State: g.state.String(), Count: g.count}
		for _, rg := range g.reasons {
			ep.Reasons = append(ep.Reasons, xmlExtraReasons{Reason: rg.reason, Count: len(rg.ports), Proto: rg.proto.String(), Ports: compactPorts(rg.ports)})
		}
		xh.Ports.Extra = append(xh.Ports.Extra, ep)
	}
	for _, r := range h.shown {
		p := xmlPort{
			Protocol: r.Proto.String(), PortID: int(r.Port),
			State: xmlState{State: r.State.String(), Reason: r.Reason},
		}
		switch {
		case r.Service == "":
			// nmap writes no <service> for a port its table does not
			// name; "unknown" here made ndiff see a change on every such
			// port between identical scans.
		case r.Banner != "" || meta.version(r) != (scan.Version{}):
			// The port was talked to: its answer named the service, or
			// did not contradict the table (nmap -sV's conf 10 and 3).
			v := meta.version(r)
			p.Service = &xmlService{Name: r.Service, Product: v.Product, Version: v.Version, ExtraInfo: v.Extra, Method: "probed", Conf: 10}
		default:
			p.Service = &xmlService{Name: r.Service, Method: "table", Conf: 3}
		}
		if r.Banner != "" {
			// nmap's banner script reports the same thing the same way.
			p.Scripts = []xmlScript{{ID: "banner", Output: printable(r.Banner)}}
		}
		xh.Ports.Ports = append(xh.Ports.Ports, p)
	}
	if len(rtts) > 0 {
		xh.Times = rttTimes(rtts)
	}
	return xh
}

// hostStatus is h's <status>: up, "user-set", under -Pn, as nmap says
// then; up with the answer that shows it (an open port's, else a closed
// one's) otherwise, or "discovery" when only host discovery drew one; down,
// "no-response", when nothing answered.
func hostStatus(meta ScanMeta, h host) xmlState {
	switch {
	case meta.AssumeUp:
		return xmlState{State: "up", Reason: "user-set"}
	case !h.up(meta):
		return xmlState{State: "down", Reason: "no-response"}
	case !h.answered:
		return xmlState{State: "up", Reason: "discovery"}
	}
	reason := ""
	for _, r := range h.results {
		if r.Reason != "" && (r.State == scan.Open || (r.State == scan.Closed && reason == "")) {
			reason = r.Reason
			if r.State == scan.Open {
				break
			}
		}
	}
	return xmlState{State: "up", Reason: cmp.Or(reason, "user-set")}
}

// minTimeout is nmap's floor for a probe timeout, in microseconds.
const minTimeout = 100_000

// rttTimes summarises the round-trip times of a host (microseconds) as
// nmap's <times>: smoothed RTT, its variation, and the timeout derived
// from them (srtt + 4 rttvar, at least 100 ms), as in RFC 6298.
func rttTimes(us []int64) *xmlTimes {
	var sum int64
	for _, v := range us {
		sum += v
	}
	srtt := sum / int64(len(us))
	var dev int64
	for _, v := range us {
		d := v - srtt
		dev += max(d, -d)
	}
	rttvar := dev / int64(len(us))
	return &xmlTimes{SRTT: srtt, RTTVar: rttvar, To: max(srtt+4*rttvar, minTimeout)}
}

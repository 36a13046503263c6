package output

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"portolan/internal/scan"
)

// writeScanGrepable writes nmap's grepable format (-oG): a comment line,
// then per host a status line and a ports line
//
//	Host: 198.18.0.2 ()	Ports: 22/open/tcp//ssh///, 80/open/tcp//http///	Ignored State: closed (998)
//
// and a closing comment. The port fields are port/state/protocol/owner/
// service/rpc info/version/; we fill no owner or rpc, and the version with
// the banner when there is one. Slashes in a
// field become '|' and commas ';', as they would split fields.
func writeScanGrepable(w io.Writer, meta ScanMeta, sorted []scan.Result) error {
	bw := bufio.NewWriter(w)
	hosts := groupHosts(sorted, meta.Verbose)
	if !meta.Start.IsZero() {
		fmt.Fprintf(bw, "# portolan %s scan initiated %s as: %s\n", versionOr(meta.Version), ctime(meta.Start), oneLine(meta.Args))
	}
	for _, h := range hosts {
		status := "Up"
		if !h.up(meta) {
			status = "Down"
		}
		name := grepField(meta.Names[h.addr])
		fmt.Fprintf(bw, "Host: %s (%s)\tStatus: %s\n", h.addr, name, status)
		if len(h.shown) == 0 || meta.DiscoveryOnly {
			continue
		}
		fmt.Fprintf(bw, "Host: %s (%s)\tPorts: ", h.addr, name)
		for i, r := range h.shown {
			if i > 0 {
				bw.WriteString(", ")
			}
			// The version field holds what the port said (--banner): the
			// product and version when it names them, as nmap -sV.
			version := r.Banner
			if v := meta.version(r); v.Product != "" {
				version = v.String()
			}
			fmt.Fprintf(bw, "%d/%s/%s//%s//%s/", r.Port, r.State, r.Proto, grepField(r.Service), grepField(version))
		}
		if len(h.hidden) > 0 {
			g := h.hidden[0] // nmap names one, the most numerous
			fmt.Fprintf(bw, "\tIgnored State: %s (%d)", g.state, g.count)
		}
		bw.WriteByte('\n')
	}
	if !meta.End.IsZero() {
		fmt.Fprintf(bw, "# portolan %s at %s -- %s\n", doneVerb(meta), ctime(meta.End), doneSummary(meta, hosts))
	}
	return bw.Flush()
}

// grepField keeps a value inside its grepable field.
func grepField(s string) string {
	return strings.NewReplacer("/", "|", ",", ";", "\t", " ", "\n", " ", "\r", " ").Replace(printable(s))
}

// oneLine keeps a command line on one line of a comment.
func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

func versionOr(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

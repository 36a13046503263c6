package scan

import (
	"strings"
	"unicode"
)

// Version is what a banner says about the software behind a port, in
// nmap's terms (-sV's product, version and extra info). The matchers are
// our own, written from the protocols' documented greetings; nmap's probe
// database is under nmap's licence and is not used.
type Version struct {
	Product string `json:"product,omitempty"`
	Version string `json:"version,omitempty"`
	Extra   string `json:"extrainfo,omitempty"`
}

// String is nmap's grepable and table form: "OpenSSH 9.6p1 Debian-3".
func (v Version) String() string {
	return strings.Join(strings.Fields(v.Product+" "+v.Version+" "+v.Extra), " ")
}

// greeters are products that name themselves in an FTP or SMTP greeting,
// with their version after the name when they give one.
var greeters = []string{"ProFTPD", "vsFTPd", "Pure-FTPd", "FileZilla Server", "Microsoft FTP Service",
	"Postfix", "Exim", "Sendmail", "OpenSMTPD", "Microsoft ESMTP MAIL Service", "Dovecot", "Courier"}

// ParseVersion reads the product and version from a banner as the Grabber
// stores it (Result.Banner), for the services whose greeting says them:
// SSH's identification string, an HTTP Server header (also behind TLS), FTP
// and SMTP greetings, MySQL's handshake, memcached's VERSION, Redis's INFO
// server, PostgreSQL's answer to a startup message (the product; the
// version only from a server that lets anyone in), and for other TLS
// services the handshake and certificate (in Extra). The zero Version
// means the banner does not say.
func ParseVersion(service, banner string) Version {
	switch {
	case strings.HasPrefix(banner, "SSH-"):
		// SSH-protoversion-softwareversion SP comments (RFC 4253 4.2).
		rest := banner[4:]
		_, sw, ok := strings.Cut(rest, "-")
		if !ok || sw == "" {
			return Version{}
		}
		sw, extra, _ := strings.Cut(sw, " ")
		prod, ver, ok := strings.Cut(sw, "_")
		if !ok {
			prod, ver, _ = strings.Cut(sw, "-") // Cisco-1.25
		}
		return Version{Product: prod, Version: ver, Extra: strings.TrimSpace(extra)}
	case strings.Contains(banner, "Server: "):
		_, v, _ := strings.Cut(banner, "Server: ")
		if i := strings.IndexAny(v, ";\\"); i >= 0 {
			v = v[:i]
		}
		v = strings.TrimSpace(v)
		token, extra, _ := strings.Cut(v, " ")
		prod, ver, _ := strings.Cut(token, "/")
		return Version{Product: prod, Version: ver, Extra: strings.TrimSpace(extra)}
	case strings.HasPrefix(banner, "redis ") && service == "redis":
		// "redis 7.0.15 standalone", from INFO server. The rest is kept
		// as the banner has it, not rejoined.
		rest := strings.TrimSpace(banner[len("redis "):])
		v := Version{Product: "Redis", Version: rest}
		if i := strings.IndexFunc(rest, unicode.IsSpace); i >= 0 {
			v.Version, v.Extra = rest[:i], strings.TrimSpace(rest[i:])
		}
		return v
	case strings.HasPrefix(banner, "postgresql: ") && service == "postgresql":
		// A version only when the server lets anyone in (trust); the
		// refusal otherwise identifies the product alone.
		v := Version{Product: "PostgreSQL"}
		if _, after, ok := strings.Cut(banner, "server_version "); ok {
			v.Version, _, _ = strings.Cut(after, ";")
			v.Version, _, _ = strings.Cut(v.Version, " ")
		}
		return v
	case (strings.HasPrefix(banner, "TLS ") || strings.HasPrefix(banner, "SSL ")) && service != "https":
		// A TLS service that is not HTTP: what the handshake and the
		// certificate say (version, ALPN, subject, issuer, expiry). For
		// HTTPS the Server header names the product; the handshake
		// stays in the banner.
		return Version{Extra: banner}
	case strings.HasPrefix(banner, "mysql "):
		ver := strings.TrimPrefix(banner, "mysql ")
		prod := "MySQL"
		if strings.Contains(ver, "MariaDB") {
			prod = "MariaDB"
			ver, _, _ = strings.Cut(ver, "-MariaDB")
			ver = strings.TrimPrefix(ver, "5.5.5-") // MariaDB's replication prefix
		}
		return Version{Product: prod, Version: ver}
	case strings.HasPrefix(banner, "VERSION ") && service == "memcached":
		return Version{Product: "memcached", Version: strings.TrimSpace(banner[len("VERSION "):])}
	case strings.HasPrefix(banner, "220") || strings.HasPrefix(banner, "* OK") || strings.HasPrefix(banner, "+OK"):
		for _, g := range greeters {
			i := strings.Index(banner, g)
			if i < 0 {
				continue
			}
			v := Version{Product: g}
			after := strings.TrimLeft(banner[i+len(g):], " ")
			if tok, _, _ := strings.Cut(after, " "); tok != "" && tok[0] >= '0' && tok[0] <= '9' {
				v.Version = strings.TrimRight(tok, ".,;)")
			}
			return v
		}
	}
	return Version{}
}

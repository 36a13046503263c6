package firewall

import (
	"fmt"
	"slices"
	"strings"

	"portolan/internal/portspec"
)

// serviceProtos are the protocols services are really used over, where
// the IANA registry lists more (it registers most ports for both TCP and
// UDP): `allow ssh` opens 22/tcp, not 22/udp, as ufw and firewalld do.
// Names not listed resolve through the registry, protocols and all.
var serviceProtos = map[string][]portspec.Proto{
	"ssh": {portspec.TCP}, "telnet": {portspec.TCP}, "ftp": {portspec.TCP}, "ftp-data": {portspec.TCP},
	"smtp": {portspec.TCP}, "submission": {portspec.TCP}, "submissions": {portspec.TCP}, "smtps": {portspec.TCP},
	"http": {portspec.TCP}, "www": {portspec.TCP}, "www-http": {portspec.TCP}, "https": {portspec.TCP},
	"http-alt": {portspec.TCP}, "pop3": {portspec.TCP}, "pop3s": {portspec.TCP}, "imap": {portspec.TCP},
	"imaps": {portspec.TCP}, "ldap": {portspec.TCP}, "ldaps": {portspec.TCP}, "rsync": {portspec.TCP},
	"mysql": {portspec.TCP}, "postgresql": {portspec.TCP}, "ms-wbt-server": {portspec.TCP}, "rdp": {portspec.TCP},
	"microsoft-ds": {portspec.TCP}, "kubernetes": {portspec.TCP}, "git": {portspec.TCP}, "xmpp-client": {portspec.TCP},
	"ntp": {portspec.UDP}, "snmp": {portspec.UDP}, "snmptrap": {portspec.UDP}, "syslog": {portspec.UDP},
	"bootps": {portspec.UDP}, "bootpc": {portspec.UDP}, "tftp": {portspec.UDP}, "mdns": {portspec.UDP},
	"openvpn": {portspec.UDP}, "isakmp": {portspec.UDP}, "ipsec-nat-t": {portspec.UDP},
	"domain": {portspec.TCP, portspec.UDP}, "dns": {portspec.TCP, portspec.UDP}, "kerberos": {portspec.TCP, portspec.UDP},
	"sip": {portspec.TCP, portspec.UDP}, "nfs": {portspec.TCP, portspec.UDP},
}

// curated resolves service names with serviceProtos first and the
// registry (next) for the rest.
type curated struct{ next portspec.Resolver }

func (c curated) PortsByName(pattern string, proto portspec.Proto) ([]portspec.Port, error) {
	if protos, ok := serviceProtos[strings.ToLower(pattern)]; ok && !slices.Contains(protos, proto) {
		names := make([]string, len(protos))
		for i, p := range protos {
			names[i] = p.String()
		}
		return nil, fmt.Errorf("%s is used over %s only (write the port number to open it over %s)", pattern, strings.Join(names, " and "), proto)
	}
	return c.next.PortsByName(pattern, proto)
}

package udpprobe

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode"
)

// h decodes hex with spaces, for replies written out byte by byte.
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Replies as servers send them, written from the specifications.
var (
	dnsVersionReply = cat(h("7062 8400 0001 0001 0000 0000"),
		h("07"), []byte("version"), h("04"), []byte("bind"), h("00 0010 0003"),
		h("c00c 0010 0003 00000000 0008 07"), []byte("9.18.24"))
	dnsRefused   = cat(h("7062 8405 0001 0000 0000 0000"), h("07"), []byte("version"), h("04"), []byte("bind"), h("00 0010 0003"))
	dnsRootReply = cat(h("7063 8180 0001 0001 0000 0000 00 0002 0001"),
		h("00 0002 0001 00000e10 0014 01"), []byte("a"), h("0c"), []byte("root-servers"), h("03"), []byte("net"), h("00"))
	mdnsReply = cat(h("7064 8400 0001 0001 0000 0000"),
		h("09"), []byte("_services"), h("07"), []byte("_dns-sd"), h("04"), []byte("_udp"), h("05"), []byte("local"), h("00 000c 8001"),
		h("c00c 000c 0001 0000000a 000c 04"), []byte("_ssh"), h("04"), []byte("_tcp"), h("c023"))
	ntpReply = func() []byte {
		b := make([]byte, 48)
		b[0], b[1] = 0x24, 2 // LI 0, v4, mode 4; stratum 2
		copy(b[24:], "portolan")
		return b
	}()
	ntpPrimary = func() []byte {
		b := bytes.Clone(ntpReply)
		b[1] = 1
		copy(b[12:], "GPS\x00")
		return b
	}()
	snmpReply = cat(h("30 2e 02 01 01 04 06"), []byte("public"),
		h("a2 21 02 04 706f7274 02 01 00 02 01 00 30 13 30 11 06 08 2b06010201010100 04 05"), []byte("Linux"))
	nbstatReply = cat(h("7071 8400 0000 0001 0000 0000"), nbWildcard, h("0021 0001 00000000 0041 02"),
		[]byte("FILESERVER     "), h("00 0400"), []byte("WORKGROUP      "), h("00 8400"), make([]byte, 46-18-18+28))
	ssdpReply = []byte("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\n" +
		"SERVER: Linux/5.4 UPnP/1.1 MiniUPnPd/2.3\r\nUSN: uuid:1::upnp:rootdevice\r\n\r\n")
	sipReply = []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP portolan.invalid:5060;branch=z9hG4bK-portolan-1;rport=40000\r\n" +
		"Call-ID: portolan-udp-probe@portolan.invalid\r\nCSeq: 42 OPTIONS\r\nServer: Asterisk PBX 20.5.0\r\nContent-Length: 0\r\n\r\n")
	memcachedReply = cat(h("7072 0000 0001 0000"), []byte("STAT pid 1\r\nSTAT uptime 9\r\nSTAT version 1.6.21\r\nEND\r\n"))
	ikev2Notify    = cat([]byte("portolan"), h("0000000000000000 29 20 22 20 00000000 00000024"), h("00 00 0008 01 00 000e"))
	ikev1Notify    = cat([]byte("portolan"), h("1122334455667788 0b 10 05 00 00000000 00000028"), h("00 00 000c 00000001 01 00 000e"))
	quicVN         = cat(h("c5 00000000 08"), []byte("udpprobe"), h("08"), []byte("portolan"), h("00000001 6b3343cf 0a1a2a3a"))
	dtlsHVR        = cat(h("16 feff 0000 000000000000 0017"), h("03 00000b 0000 000000 00000b feff 08"), []byte("cookie!!"))
	dtlsAlert      = h("15 fefd 0000 000000000000 0002 02 28")
	rpcReply       = h("706f7274 00000001 00000000 00000000 00000000 00000000")
	tftpError      = cat(h("0005 0001"), []byte("File not found"), h("00"))
	natpmpReply    = h("00 80 0000 00001234 c6336407")
	mssqlReply     = func() []byte {
		t := "ServerName;DB1;InstanceName;SQLEXPRESS;IsClustered;No;Version;15.0.2000.5;tcp;1433;;"
		return cat(h("05"), binary.LittleEndian.AppendUint16(nil, uint16(len(t))), []byte(t))
	}()
	rmcpPong   = h("06 00 ff 06 000011be 40 70 00 10 000011be 00000000 81 00 000000000000")
	xdmcpReply = h("0001 0005 0003 00 01 41")
	stunReply  = cat(h("0101 000c 2112a442"), []byte("portolanstun"), h("8022 0008"), []byte("coturn-4"))
	ovpnReply  = cat(h("40"), []byte("SERVERID"), h("01 00000000"), []byte("portolan"), h("00000000"))
	coapReply  = h("60 45 7070 ff 3c2f3e")
	echoReply  = bytes.Clone(echoPayload)
)

func TestParsers(t *testing.T) {
	for _, c := range []struct {
		name  string
		parse func([]byte) (string, error)
		in    []byte
		want  string
		err   string // a substring of the error; "" means none
	}{
		{"dns version", parseDNSVersion, dnsVersionReply, "version: 9.18.24", ""},
		{"dns refused", parseDNSVersion, dnsRefused, "refused", ""},
		{"dns root", parseDNSRoot, dnsRootReply, "recursion available", ""},
		{"dns wrong id", parseDNSRoot, dnsVersionReply, "", "dns reply at byte 0: transaction ID 0x7062"},
		{"dns query not reply", parseDNSVersion, dnsVersionBind, "", "at byte 2: not a response"},
		{"dns truncated", parseDNSVersion, dnsVersionReply[:30], "", "dns reply at byte"},
		{"dns pointer loop", parseDNSVersion, cat(h("7062 8400 0001 0000 0000 0000 c00c")), "", "at byte 12: compression pointer 12 points forward"},
		{"mdns", parseMDNS, mdnsReply, "_ssh._tcp.local.", ""},
		{"ntp", parseNTP, ntpReply, "v4 stratum 2", ""},
		{"ntp primary", parseNTP, ntpPrimary, "v4 stratum 1 refid GPS", ""},
		{"ntp request", parseNTP, ntpRequest, "", "ntp reply at byte 0: mode 3"},
		{"ntp short", parseNTP, ntpReply[:20], "", "at byte 20: reply of 20 bytes, need 48"},
		{"snmp", parseSNMP, snmpReply, "v2c Linux", ""},
		{"snmp request", parseSNMP, snmpGet(1), "", "tag 0xa0, want 0xa2"},
		{"snmp truncated", parseSNMP, snmpReply[:20], "", "snmp reply at byte 0: element of 46 bytes runs past the end"},
		{"nbstat", parseNBSTAT, nbstatReply, "FILESERVER<00> WORKGROUP<00>", ""},
		{"nbstat request", parseNBSTAT, nbstatRequest, "", "at byte 2: not a response"},
		{"ssdp", parseSSDP, ssdpReply, "Linux/5.4 UPnP/1.1 MiniUPnPd/2.3", ""},
		{"ssdp request", parseSSDP, ssdpSearch, "", "does not start with"},
		{"sip", parseSIP, sipReply, "200 OK, Asterisk PBX 20.5.0", ""},
		{"sip other call", parseSIP, []byte("SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n"), "", "Call-ID is not ours"},
		{"memcached", parseMemcached, memcachedReply, "version 1.6.21", ""},
		{"memcached other id", parseMemcached, cat(h("0001"), memcachedReply[2:]), "", "at byte 0: request ID"},
		{"ikev2 notify", parseIKE, ikev2Notify, "IKEv2 notify 14", ""},
		{"ikev1 notify", parseIKE, ikev1Notify, "IKEv1 notify 14", ""},
		{"ike other spi", parseIKE, cat([]byte("otherspi"), ikev2Notify[8:]), "", "at byte 0: initiator SPI"},
		{"ike nat-t", parseIKENATT, nonESP(ikev2Notify), "IKEv2 notify 14", ""},
		{"quic", parseQUIC, quicVN, "versions v1 v2", ""},
		{"quic probe", parseQUIC, quicVersionProbe, "", "version 0x1a2a3a4a"},
		{"dtls hvr", parseDTLS, dtlsHVR, "HelloVerifyRequest", ""},
		{"dtls alert", parseDTLS, dtlsAlert, "alert 40", ""},
		{"dtls tls", parseDTLS, h("16 0303 0000 000000000000 0000"), "", "is not DTLS"},
		{"rpc", parseRPC, rpcReply, "", ""},
		{"rpc call", parseRPC, rpcNullCall, "", "at byte 4: not a reply"},
		{"tftp error", parseTFTP, tftpError, "error 1: File not found", ""},
		{"tftp request", parseTFTP, tftpRead, "", "at byte 0: opcode 1"},
		{"nat-pmp", parseNATPMP, natpmpReply, "external address 198.51.100.7", ""},
		{"mssql", parseMSSQL, mssqlReply, "version 15.0.2000.5", ""},
		{"mssql short", parseMSSQL, mssqlReply[:10], "", "at byte 1: data of"},
		{"rmcp", parseRMCP, rmcpPong, "IPMI", ""},
		{"rmcp ping", parseRMCP, rmcpPing, "", "not a presence pong"},
		{"xdmcp", parseXDMCP, xdmcpReply, "willing", ""},
		{"xdmcp query", parseXDMCP, xdmcpQuery, "", "at byte 2: opcode 2"},
		{"stun", parseSTUN, stunReply, "coturn-4", ""},
		{"stun request", parseSTUN, stunBinding, "", "message type 0x0001"},
		{"openvpn", parseOpenVPN, ovpnReply, "", ""},
		{"openvpn client", parseOpenVPN, openvpnReset, "", "opcode 7"},
		{"coap", parseCoAP, coapReply, "2.05", ""},
		{"coap request", parseCoAP, coapWellKnown, "", "is not a response"},
		{"echo", parseEcho, echoReply, "", ""},
		{"echo other", parseEcho, []byte("x"), "", "not our datagram"},
	} {
		got, err := c.parse(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: parse = %v; want %q", c.name, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: parse = %q, %v; want an error with %q", c.name, got, err, c.err)
		case c.err == "" && got != c.want:
			t.Errorf("%s: parse = %q; want %q", c.name, got, c.want)
		}
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("%s: error %v is not a *ParseError", c.name, err)
		}
	}
}

// TestPayloads checks the requests against what their specifications fix.
func TestPayloads(t *testing.T) {
	for _, c := range []struct {
		name string
		got  []byte
		want []byte
	}{
		// RFC 1157 / 3416: SEQUENCE { version 1, "public", GetRequest { id, 0, 0, { { sysDescr.0, NULL } } } }
		{"snmp v2c", snmpGet(1), cat(h("30 29 02 01 01 04 06"), []byte("public"),
			h("a0 1c 02 04 706f7274 02 01 00 02 01 00 30 0e 30 0c 06 08 2b06010201010100 05 00"))},
		// RFC 1002 4.2.17: "*" encoded, NBSTAT, IN
		{"nbstat", nbstatRequest, cat(h("7071 0000 0001 0000 0000 0000 20"), []byte("CK"), bytes.Repeat([]byte("A"), 30), h("00 0021 0001"))},
		// RFC 1035: version.bind TXT CH
		{"dns", dnsVersionBind, cat(h("7062 0000 0001 0000 0000 0000 07"), []byte("version"), h("04"), []byte("bind"), h("00 0010 0003"))},
		// RFC 5531: xid, CALL, 2, portmapper 100000 v2, NULL, AUTH_NONE x2
		{"rpc", rpcNullCall, h("706f7274 00000000 00000002 000186a0 00000002 00000000 00000000 00000000 00000000 00000000")},
		{"nat-pmp", natpmpAddr, h("0000")},
		{"memcached", memcachedStats, cat(h("7072 0000 0001 0000"), []byte("stats\r\n"))},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s payload:\n got % x\nwant % x", c.name, c.got, c.want)
		}
	}
	if len(ntpRequest) != 48 || ntpRequest[0] != 0x23 {
		t.Errorf("ntp payload: %d bytes, first %#x; want 48, 0x23 (v4 client)", len(ntpRequest), ntpRequest[0])
	}
	if len(quicVersionProbe) != 1200 {
		t.Errorf("quic payload: %d bytes; want 1200 (RFC 9000 14.1)", len(quicVersionProbe))
	}
	for _, ike := range [][]byte{ikev1MainMode, ikev2SAInit} {
		if n := binary.BigEndian.Uint32(ike[24:]); int(n) != len(ike) {
			t.Errorf("ike payload: length field %d, payload %d bytes", n, len(ike))
		}
	}
	if n := int(binary.BigEndian.Uint16(dtlsClientHello[11:])); 13+n != len(dtlsClientHello) {
		t.Errorf("dtls payload: record length %d, payload %d bytes", n, len(dtlsClientHello))
	}
}

func TestPayloadsByPort(t *testing.T) {
	if got := len(Payloads(53)); got != 2 {
		t.Errorf("Payloads(53) = %d payloads; want 2 (version.bind and root NS)", got)
	}
	if got := len(Payloads(161)); got != 2 {
		t.Errorf("Payloads(161) = %d payloads; want 2 (v1 and v2c)", got)
	}
	if got := Payloads(40000); got != nil {
		t.Errorf("Payloads(40000) = %d payloads; want none (an empty datagram)", len(got))
	}
	for _, c := range []struct {
		port  uint16
		reply []byte
		want  Match
		ok    bool
	}{
		{53, dnsVersionReply, Match{"domain", "version: 9.18.24"}, true},
		{123, ntpReply, Match{"ntp", "v4 stratum 2"}, true},
		{9999, ntpReply, Match{"ntp", "v4 stratum 2"}, true}, // a service on a port of its own
		{9999, echoReply, Match{}, false},                    // an echo only where echo is expected
		{7, echoReply, Match{"echo", ""}, true},
		{69, tftpError, Match{"tftp", "error 1: File not found"}, true},
		{161, []byte("garbage"), Match{}, false},
	} {
		got, ok := Recognize(c.port, c.reply)
		if got != c.want || ok != c.ok {
			t.Errorf("Recognize(%d, % x...) = %v, %v; want %v, %v", c.port, c.reply[:min(8, len(c.reply))], got, ok, c.want, c.ok)
		}
	}
	if got := OtherPortReplies(); len(got) != 1 || got[0] != 69 {
		t.Errorf("OtherPortReplies() = %v; want [69] (TFTP)", got)
	}
}

// FuzzParsers runs every reply parser on the same input: none may panic,
// and what one accepts yields printable info.
func FuzzParsers(f *testing.F) {
	for _, b := range [][]byte{dnsVersionReply, dnsRefused, dnsRootReply, mdnsReply, ntpReply, ntpPrimary,
		snmpReply, nbstatReply, ssdpReply, sipReply, memcachedReply, ikev2Notify, ikev1Notify, nonESP(ikev2Notify),
		quicVN, dtlsHVR, dtlsAlert, rpcReply, tftpError, natpmpReply, mssqlReply, rmcpPong, xdmcpReply,
		stunReply, ovpnReply, coapReply, echoReply} {
		f.Add(b)
	}
	for _, p := range Protocols() {
		f.Add(p.Payload)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range Protocols() {
			info, err := p.Parse(b)
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(b) {
					t.Fatalf("%s: error %v: want a *ParseError with an offset in [0, %d]", p.Name, err, len(b))
				}
				continue
			}
			for _, r := range info {
				if !unicode.IsPrint(r) || r > unicode.MaxASCII {
					t.Fatalf("%s: info %q has a non-printable character", p.Name, info)
				}
			}
		}
	})
}

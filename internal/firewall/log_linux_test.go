package firewall

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// nfnetlink_log, from linux/netfilter/nfnetlink_log.h.
const (
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1
	nfulaCfgCmd     = 1
	nfulaCfgMode    = 2
	nfulaCfgTimeout = 4 // flush after this many 1/100 s: 1, so each packet comes at once
	nfulaPrefix     = 10
	nfulnlCmdBind   = 1
	nfulnlCopyMeta  = 1
)

// TestLogRuleReachesNFLOG listens on NFLOG group 7 inside srv, the way
// knockd and watch will, and checks a log rule delivers its packets there
// with the rule's prefix, while the packets go on to the next rule.
func TestLogRuleReachesNFLOG(t *testing.T) {
	l, c := loggedTelnetLab(t)
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got != open {
		t.Fatalf("23/tcp after log: %s; want open (log goes on to the allow)", got)
	}
	if n := countLogged(t, c, "portolan telnet: ", 2*time.Second); n < 1 {
		t.Error("no NFLOG packet with the rule's prefix")
	}
}

// nflog binds NFLOG group inside the lab's srv and returns the socket.
func nflog(t *testing.T, l *lab, group uint16) *netlink.Conn {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: l.srv.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cfg := func(attrs []netlink.Attribute) {
		t.Helper()
		ae, _ := netlink.MarshalAttributes(attrs)
		hdr := []byte{unix.AF_UNSPEC, 0, byte(group >> 8), byte(group)}
		if _, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | nfulnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
			Data:   append(hdr, ae...),
		}); err != nil {
			t.Fatalf("configure NFLOG group %d: %v", group, err)
		}
	}
	cfg([]netlink.Attribute{{Type: nfulaCfgCmd, Data: []byte{nfulnlCmdBind}}})
	mode := binary.BigEndian.AppendUint32(nil, 0)
	cfg([]netlink.Attribute{{Type: nfulaCfgMode, Data: append(mode, nfulnlCopyMeta, 0)}, {Type: nfulaCfgTimeout, Data: binary.BigEndian.AppendUint32(nil, 1)}})
	return c
}

// countLogged counts the NFLOG packets with prefix that arrive on c until
// it has been quiet for quiet.
func countLogged(t *testing.T, c *netlink.Conn, prefix string, quiet time.Duration) int {
	t.Helper()
	n := 0
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		msgs, err := c.Receive()
		if errors.Is(err, os.ErrDeadlineExceeded) || (err != nil && isTimeout(err)) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				t.Fatal(err)
			}
			for ad.Next() {
				if ad.Type() == nfulaPrefix && string(bytes.TrimRight(ad.Bytes(), "\x00")) == prefix {
					n++
				}
			}
		}
	}
}

// loggedTelnetLab is a lab whose srv serves 23/tcp behind a log rule
// (NFLOG group 7, prefix telnet) and an allow, with the group listened to.
func loggedTelnetLab(t *testing.T) (*lab, *netlink.Conn) {
	t.Helper()
	l := newLab(t)
	serveTCP(t, l.srv, 23)
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{
		mustRule(t, RuleSpec{Action: "log", Ports: "23/tcp", Group: "7", Comment: "telnet"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "23/tcp"}),
	}}
	if err := l.fw.Apply(context.Background(), &rs); err != nil {
		t.Fatal(err)
	}
	return l, nflog(t, l, 7)
}

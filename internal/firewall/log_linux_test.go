package firewall

import (
	"bytes"
	"context"
	"encoding/binary"
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
	nfulaCfgQthresh = 4
	nfulaPrefix     = 10
	nfulnlCmdBind   = 1
	nfulnlCopyMeta  = 1
)

// TestLogRuleReachesNFLOG listens on NFLOG group 7 inside srv, the way
// knockd and watch will, and checks a log rule delivers its packets there
// with the rule's prefix, while the packets go on to the next rule.
func TestLogRuleReachesNFLOG(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	serveTCP(t, l.srv, 23)
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{
		mustRule(t, RuleSpec{Action: "log", Ports: "23/tcp", Group: "7", Comment: "telnet"}),
		mustRule(t, RuleSpec{Action: "allow", Ports: "23/tcp"}),
	}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: l.srv.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := func(attrs []netlink.Attribute) {
		t.Helper()
		ae, _ := netlink.MarshalAttributes(attrs)
		hdr := []byte{unix.AF_UNSPEC, 0, 0, 7} // nfgenmsg: family, version, group (big endian)
		_, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | nfulnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
			Data:   append(hdr, ae...),
		})
		if err != nil {
			t.Fatalf("configure NFLOG group 7: %v", err)
		}
	}
	cfg([]netlink.Attribute{{Type: nfulaCfgCmd, Data: []byte{nfulnlCmdBind}}})
	mode := binary.BigEndian.AppendUint32(nil, 0)
	cfg([]netlink.Attribute{{Type: nfulaCfgMode, Data: append(mode, nfulnlCopyMeta, 0)}, {Type: nfulaCfgQthresh, Data: binary.BigEndian.AppendUint32(nil, 1)}})

	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 23); got != open {
		t.Fatalf("23/tcp after log: %s; want open (log goes on to the allow)", got)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		msgs, err := c.Receive()
		if err != nil {
			t.Fatalf("no NFLOG packet with the rule's prefix: %v", err)
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
				if ad.Type() != nfulaPrefix {
					continue
				}
				p := string(bytes.TrimRight(ad.Bytes(), "\x00"))
				if p == "portolan telnet: " {
					return
				}
				t.Logf("NFLOG prefix %q", p)
			}
		}
	}
}

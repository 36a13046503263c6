package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel tells every listener of the nftables multicast group what
// each transaction changed (what `nft monitor` prints): one message per
// rule added or deleted, with its handle, then the new generation. After
// an incremental apply, the handles of the few rules it added are read
// from there instead of from a dump of every rule of the chain, which on
// a table of 10,000 rules cost a one-rule change half of its time.

// notifyReader is a socket subscribed to the nftables group.
type notifyReader struct {
	*elemReader
}

// watchCommits subscribes a socket in the namespace nsfd to the nftables
// group, with room for recv bytes of notifications.
func watchCommits(nsfd, recv int) (*notifyReader, error) {
	er, err := newElemReader(nsfd)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(er.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recv); err != nil {
		if err := unix.SetsockoptInt(er.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recv); err != nil {
			er.close()
			return nil, fmt.Errorf("notification buffer: %w", err)
		}
	}
	// Bound, so that it has a port id: the kernel sends most notifications
	// to every member but port 0.
	if err := unix.Bind(er.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		er.close()
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.SetsockoptInt(er.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTABLES); err != nil {
		er.close()
		return nil, fmt.Errorf("join the nftables group: %w", err)
	}
	return &notifyReader{er}, nil
}

// notifiedRule is a rule a transaction added, as its notification says.
type notifiedRule struct {
	chain    string
	handle   uint64
	userData []byte
}

// commit is what one transaction changed in table inet TableName.
type commit struct {
	gen     uint64
	added   []notifiedRule
	deleted int // rules
	other   int // messages about anything else of the table (sets, chains, elements)
}

// commitOf returns what the transaction that made generation gen changed,
// from the notifications already queued (the kernel queues them before it
// acknowledges the batch). It fails when that transaction's notifications
// are not all there, for example when the socket's buffer overflowed.
func (n *notifyReader) commitOf(gen uint64) (*commit, error) {
	c := &commit{}
	for {
		nr, _, err := unix.Recvfrom(n.fd, n.buf, unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return nil, fmt.Errorf("no notification of generation %d", gen)
		}
		if err != nil {
			return nil, fmt.Errorf("receive notifications: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(n.buf[:nr])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
				continue
			}
			typ := int(m.Header.Type & 0xff)
			if typ == unix.NFT_MSG_NEWGEN {
				g, err := notifiedGen(m.Data)
				if err != nil {
					return nil, err
				}
				if g == gen {
					c.gen = g
					return c, nil
				}
				c = &commit{} // another transaction's, before ours
				continue
			}
			r, ours, err := notifiedRuleOf(m.Data, typ == unix.NFT_MSG_NEWRULE || typ == unix.NFT_MSG_DELRULE)
			if err != nil {
				return nil, err
			}
			if !ours {
				continue
			}
			switch typ {
			case unix.NFT_MSG_NEWRULE:
				c.added = append(c.added, r)
			case unix.NFT_MSG_DELRULE:
				c.deleted++
			default:
				c.other++
			}
		}
	}
}

// notifiedGen reads the generation id of a NEWGEN message (after the
// netlink header).
func notifiedGen(b []byte) (uint64, error) {
	if len(b) < 4 {
		return 0, errors.New("short generation message")
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return 0, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return uint64(ad.Uint32()), ad.Err()
		}
	}
	if err := ad.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no generation id in the message")
}

// notifiedRuleOf reads the table of a notification (after the netlink
// header) and, for a rule's, its chain, handle and user data; it reports
// whether the notification is about table inet TableName. Every object's
// message names its table in attribute 1.
func notifiedRuleOf(b []byte, rule bool) (notifiedRule, bool, error) {
	var r notifiedRule
	if len(b) < 4 {
		return r, false, errors.New("short message")
	}
	if b[0] != unix.NFPROTO_INET {
		return r, false, nil
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return r, false, err
	}
	ad.ByteOrder = binary.BigEndian
	ours := false
	for ad.Next() {
		switch t := ad.Type(); {
		case t == unix.NFTA_RULE_TABLE:
			ours = ad.String() == TableName
		case !rule:
		case t == unix.NFTA_RULE_CHAIN:
			r.chain = ad.String()
		case t == unix.NFTA_RULE_HANDLE:
			r.handle = ad.Uint64()
		case t == unix.NFTA_RULE_USERDATA:
			r.userData = ad.Bytes()
		}
	}
	return r, ours, ad.Err()
}

package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemReader reads the elements of sets on a blocking netlink socket of
// its own: one request and its replies per set, with no poller between
// them. A table of 10,000 rules has thousands of anonymous sets (every
// "TCP and UDP" rule has one), and reading them through google/nftables'
// non-blocking connection cost most of the time it took to read the table.
type elemReader struct {
	fd  int
	seq uint32
	buf []byte
}

// newElemReader opens the socket in the namespace nsfd (0: the calling
// thread's).
func newElemReader(nsfd int) (*elemReader, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	}
	if nsfd == 0 {
		fd, err := open()
		if err != nil {
			return nil, fmt.Errorf("open netlink socket: %w", err)
		}
		return &elemReader{fd: fd, buf: make([]byte, 1<<16)}, nil
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		fd, err := open()
		if e := unix.Setns(orig, unix.CLONE_NEWNET); e != nil {
			// Left locked on purpose: the thread dies with this goroutine.
			if err == nil {
				unix.Close(fd)
			}
			ch <- result{-1, errors.Join(err, e)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("open netlink socket in the namespace: %w", r.err)
	}
	return &elemReader{fd: r.fd, buf: make([]byte, 1<<16)}, nil
}

func (r *elemReader) close() { unix.Close(r.fd) }

// elements dumps the elements of set name of table inet TableName: their
// keys and interval-end flags (what decodeRule needs).
func (r *elemReader) elements(name string) ([]nftables.SetElement, error) {
	var out []nftables.SetElement
	err := r.dump(unix.NFT_MSG_GETSETELEM, []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(name + "\x00")},
	}, func(b []byte) error {
		es, err := parseElems(b)
		out = append(out, es...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("elements of set %s: %w", name, err)
	}
	return out, nil
}

// dump sends a dump request of type typ for table inet TableName with
// attrs and calls fn with each reply (after the netlink header).
func (r *elemReader) dump(typ int, attrs []netlink.Attribute, fn func([]byte) error) error {
	return r.request(typ, unix.NLM_F_DUMP, attrs, fn)
}

// request sends a request of type typ with flags (besides NLM_F_REQUEST)
// and calls fn with each reply until the end of a dump or the
// acknowledgement.
func (r *elemReader) request(typ, flags int, attrs []netlink.Attribute, fn func([]byte) error) error {
	body, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	r.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(body))
	msg = append(msg, body...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], uint16(unix.NFNL_SUBSYS_NFTABLES<<8|typ))
	binary.NativeEndian.PutUint16(msg[6:], uint16(unix.NLM_F_REQUEST|flags))
	binary.NativeEndian.PutUint32(msg[8:], r.seq)
	msg[unix.NLMSG_HDRLEN] = unix.NFPROTO_INET // nfgenmsg: family, version 0, resource id 0
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(r.buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != r.seq {
				continue // a late reply to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return unix.Errno(-errno)
					}
				}
				return nil
			}
			if err := fn(m.Data); err != nil {
				return err
			}
		}
	}
}

// parseElems reads the keys and flags of a NEWSETELEM message (after the
// netlink header).
func parseElems(b []byte) ([]nftables.SetElement, error) {
	if len(b) < 4 {
		return nil, errors.New("short message")
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return nil, err
	}
	var out []nftables.SetElement
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				var e nftables.SetElement
				list.Nested(func(el *netlink.AttributeDecoder) error {
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										e.Key = k.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							if b := el.Bytes(); len(b) == 4 {
								e.IntervalEnd = binary.BigEndian.Uint32(b)&unix.NFT_SET_ELEM_INTERVAL_END != 0
							}
						}
					}
					return nil
				})
				out = append(out, e)
			}
			return nil
		})
	}
	return out, ad.Err()
}

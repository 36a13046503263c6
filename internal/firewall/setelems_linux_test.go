package firewall

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemsMessage encodes a NEWSETELEM message body as the kernel sends it.
func elemsMessage(t testing.TB, es []nftables.SetElement) []byte {
	var list []netlink.Attribute
	for _, e := range es {
		key, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: e.Key}})
		attrs := []netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: key}}
		if e.IntervalEnd {
			attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_SET_ELEM_FLAGS, Data: binary.BigEndian.AppendUint32(nil, unix.NFT_SET_ELEM_INTERVAL_END)})
		}
		el, _ := netlink.MarshalAttributes(attrs)
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: el})
	}
	l, _ := netlink.MarshalAttributes(list)
	body, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte("portolan\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte("__set0\x00")},
		{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: l},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.NFPROTO_INET, 0, 0, 0}, body...)
}

var elemCases = [][]nftables.SetElement{
	nil,
	{{Key: []byte{6}}, {Key: []byte{17}}},
	{{Key: []byte{0, 22}}, {Key: []byte{0, 23}, IntervalEnd: true}, {Key: []byte{1, 187}}},
}

func TestParseElems(t *testing.T) {
	for _, want := range elemCases {
		got, err := parseElems(elemsMessage(t, want))
		if err != nil {
			t.Fatalf("parseElems(%v): %v", want, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("parseElems (-want +got):\n%s", diff)
		}
	}
	if _, err := parseElems([]byte{1}); err == nil {
		t.Error("parseElems of 1 byte: no error")
	}
}

func FuzzParseElems(f *testing.F) {
	for _, c := range elemCases {
		f.Add(elemsMessage(f, c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseElems(b) // must not panic
	})
}

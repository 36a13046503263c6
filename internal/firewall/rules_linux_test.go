package firewall

import (
	"testing"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleMsg builds a NEWRULE message body as the kernel dumps it: a ct
// original proto-dst load (its direction one byte), a comparison, and
// an expression named name.
func ruleMsg(t testing.TB, name string) []byte {
	t.Helper()
	m := func(as []netlink.Attribute) []byte {
		b, err := netlink.MarshalAttributes(as)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ct := m([]netlink.Attribute{
		{Type: unix.NFTA_CT_KEY, Data: binaryutil.BigEndian.PutUint32(uint32(expr.CtKeyPROTODST))},
		{Type: unix.NFTA_CT_DREG, Data: binaryutil.BigEndian.PutUint32(1)},
		{Type: unix.NFTA_CT_DIRECTION, Data: []byte{0}},
	})
	cmpData := m([]netlink.Attribute{
		{Type: unix.NFTA_CMP_SREG, Data: binaryutil.BigEndian.PutUint32(1)},
		{Type: unix.NFTA_CMP_OP, Data: binaryutil.BigEndian.PutUint32(unix.NFT_CMP_EQ)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_CMP_DATA, Data: m([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: []byte{0x1f, 0x90}}})},
	})
	elem := func(name string, data []byte) netlink.Attribute {
		return netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: m([]netlink.Attribute{
			{Type: unix.NFTA_EXPR_NAME, Data: []byte(name + "\x00")},
			{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: data},
		})}
	}
	body := m([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_RULE_HANDLE, Data: binaryutil.BigEndian.PutUint64(42)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: m([]netlink.Attribute{elem("ct", ct), elem("cmp", cmpData), elem(name, nil)})},
		{Type: unix.NFTA_RULE_USERDATA, Data: []byte{udataTag, 0}},
	})
	return append([]byte{unix.NFPROTO_INET, 0, 0, 0}, body...)
}

func TestParseRuleMsg(t *testing.T) {
	r, err := parseRuleMsg(ruleMsg(t, "xt"))
	if err != nil {
		t.Fatalf("parseRuleMsg: %v", err)
	}
	if r.Handle != 42 || len(r.Exprs) != 3 || len(r.UserData) != 2 {
		t.Fatalf("parseRuleMsg = handle %d, %d expressions, user data %x; want 42, 3, b700", r.Handle, len(r.Exprs), r.UserData)
	}
	if ct, ok := r.Exprs[0].(*expr.Ct); !ok || ct.Key != expr.CtKeyPROTODST || ct.Register != 1 || ct.Direction != 0 {
		t.Errorf("expression 1 = %#v; want ct original proto-dst into register 1", r.Exprs[0])
	}
	if c, ok := r.Exprs[1].(*expr.Cmp); !ok || c.Op != expr.CmpOpEq || string(c.Data) != "\x1f\x90" {
		t.Errorf("expression 2 = %#v; want cmp eq 8080", r.Exprs[1])
	}
	// An expression portolan does not write stays in the rule, so the rule
	// reads as unmanaged instead of as the rule without it.
	if o, ok := r.Exprs[2].(opaque); !ok || o.name != "xt" {
		t.Errorf("expression 3 = %#v; want opaque xt", r.Exprs[2])
	}
	if _, err := decodeRule(r, Routed, func(string) (*setData, error) { return nil, nil }); err == nil {
		t.Errorf("decodeRule of a rule with an xt expression: no error")
	}
}

func FuzzParseRuleMsg(f *testing.F) {
	f.Add(ruleMsg(f, "xt"))
	f.Add(ruleMsg(f, "immediate"))
	f.Add([]byte{unix.NFPROTO_INET, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRuleMsg(b)
		if err == nil && r == nil {
			t.Fatal("no rule and no error")
		}
	})
}

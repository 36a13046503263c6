package firewall

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rules dumps the rules of chain of table inet TableName on the reader's
// blocking socket, with the handle, user data and expressions that
// decodeRule reads. google/nftables cannot read them all: its ct
// expression takes the kernel's one-byte direction for four bytes and
// fails the whole dump (`ct original proto-dst`, which routed rules use),
// and it skips expressions it does not know, where a rule holding one must
// read as unmanaged rather than as the rule without it.
func (r *elemReader) rules(chain string) ([]*nftables.Rule, error) {
	var out []*nftables.Rule
	err := r.dump(unix.NFT_MSG_GETRULE, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
	}, func(b []byte) error {
		rule, err := parseRuleMsg(b)
		if err != nil {
			return err
		}
		out = append(out, rule)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rules of chain %s: %w", chain, err)
	}
	return out, nil
}

// opaque stands for an expression decodeRule does not take, so the rule
// that holds it reads as unmanaged.
type opaque struct {
	expr.Any
	name string
}

// parseRuleMsg reads a NEWRULE message (after the netlink header).
func parseRuleMsg(b []byte) (*nftables.Rule, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("short rule message")
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	r := &nftables.Rule{}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_HANDLE:
			r.Handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.UserData = ad.Bytes()
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					if list.Type() != unix.NFTA_LIST_ELEM {
						continue
					}
					list.Nested(func(el *netlink.AttributeDecoder) error {
						e, err := parseExpr(el)
						if err != nil {
							return err
						}
						r.Exprs = append(r.Exprs, e)
						return nil
					})
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return nil, fmt.Errorf("rule %d: %w", r.Handle, err)
	}
	return r, nil
}

// parseExpr reads one expression: its name, then its data.
func parseExpr(ad *netlink.AttributeDecoder) (expr.Any, error) {
	var name string
	var data []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ad.String()
		case unix.NFTA_EXPR_DATA:
			data = ad.Bytes()
		}
	}
	var e expr.Any
	switch name {
	case "ct":
		return parseCt(data)
	case "meta":
		e = &expr.Meta{}
	case "cmp":
		e = &expr.Cmp{}
	case "payload":
		e = &expr.Payload{}
	case "lookup":
		e = &expr.Lookup{}
	case "bitwise":
		e = &expr.Bitwise{}
	case "range":
		e = &expr.Range{}
	case "dynset":
		e = &expr.Dynset{}
	case "limit":
		e = &expr.Limit{}
	case "log":
		e = &expr.Log{}
	case "reject":
		e = &expr.Reject{}
	case "immediate":
		// portolan's immediates are verdicts (accept, drop); one loading
		// data reads as a verdict of kind 0, which decodeRule refuses.
		e = &expr.Verdict{}
	default:
		return opaque{name: name}, nil
	}
	if err := expr.Unmarshal(byte(nftables.TableFamilyINet), data, e); err != nil {
		return nil, fmt.Errorf("expression %s: %w", name, err)
	}
	return e, nil
}

// parseCt reads a ct expression; the direction is one byte, as the kernel
// writes it.
func parseCt(data []byte) (expr.Any, error) {
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	e := &expr.Ct{}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_CT_KEY:
			e.Key = expr.CtKey(ad.Uint32())
		case unix.NFTA_CT_DREG:
			e.Register = ad.Uint32()
		case unix.NFTA_CT_SREG:
			e.Register, e.SourceRegister = ad.Uint32(), true
		case unix.NFTA_CT_DIRECTION:
			switch b := ad.Bytes(); len(b) {
			case 1:
				e.Direction = uint32(b[0])
			case 4:
				e.Direction = binary.BigEndian.Uint32(b)
			default:
				return nil, fmt.Errorf("ct direction of %d bytes", len(b))
			}
		}
	}
	if err := ad.Err(); err != nil {
		return nil, fmt.Errorf("expression ct: %w", err)
	}
	return e, nil
}

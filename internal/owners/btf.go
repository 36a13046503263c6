package owners

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// kernelLayout is what the socket-file iterator (iter_linux.go)
// needs from the kernel's BTF (/sys/kernel/btf/vmlinux): the type id of
// the iterator's function and the byte offsets of the fields it reads,
// which differ from build to build.
type kernelLayout struct {
	IterFunc  uint32 // type id of FUNC bpf_iter_task_file
	FileInode uint32 // struct file.f_inode
	InodeIno  uint32 // struct inode.i_ino
	InodeSB   uint32 // struct inode.i_sb
	SBMagic   uint32 // struct super_block.s_magic
	TaskTgid  uint32 // struct task_struct.tgid
	// TaskVforkDone is struct task_struct.vfork_done, set in a child of
	// vfork (Go's os/exec, posix_spawn) until it execs: it holds a copy
	// of its parent's files for that moment only.
	TaskVforkDone uint32
}

// BTF kinds (include/uapi/linux/btf.h).
const (
	btfInt = iota + 1
	btfPtr
	btfArray
	btfStruct
	btfUnion
	btfEnum
	btfFwd
	btfTypedef
	btfVolatile
	btfConst
	btfRestrict
	btfFunc
	btfFuncProto
	btfVar
	btfDatasec
	btfFloat
	btfDeclTag
	btfTypeTag
	btfEnum64
)

// btf is a parsed type section: where each type id starts.
type btf struct {
	name  string // for errors
	le    binary.ByteOrder
	types []byte
	strs  []byte
	at    []uint32 // at[id] = offset of type id in types; id 0 is void
	hdr   uint32   // offset of types in the file, for error positions
}

// parseKernelLayout finds the kernel layout in the raw BTF b read from the
// file name; errors name the file and the byte offset.
func parseKernelLayout(name string, b []byte) (kernelLayout, error) {
	var l kernelLayout
	t, err := parseBTF(name, b)
	if err != nil {
		return l, err
	}
	fields := []struct {
		strct, field string
		out          *uint32
	}{
		{"file", "f_inode", &l.FileInode},
		{"inode", "i_ino", &l.InodeIno},
		{"inode", "i_sb", &l.InodeSB},
		{"super_block", "s_magic", &l.SBMagic},
		{"task_struct", "tgid", &l.TaskTgid},
		{"task_struct", "vfork_done", &l.TaskVforkDone},
	}
	structs := map[string]uint32{"file": 0, "inode": 0, "super_block": 0, "task_struct": 0}
	for id := 1; id < len(t.at); id++ {
		kind, nameOff, _ := t.head(uint32(id))
		switch kind {
		case btfFunc:
			if l.IterFunc == 0 && string(t.strAt(nameOff)) == "bpf_iter_task_file" {
				l.IterFunc = uint32(id)
			}
		case btfStruct:
			// A map index by a converted []byte allocates nothing.
			if v, ok := structs[string(t.strAt(nameOff))]; ok && v == 0 {
				structs[string(t.strAt(nameOff))] = uint32(id)
			}
		}
	}
	if l.IterFunc == 0 {
		return l, fmt.Errorf("%s: no function bpf_iter_task_file (kernel older than 5.8?)", name)
	}
	for _, f := range fields {
		id := structs[f.strct]
		if id == 0 {
			return l, fmt.Errorf("%s: no struct %s", name, f.strct)
		}
		off, ok, err := t.member(id, f.field, 0)
		if err != nil {
			return l, err
		}
		if !ok {
			return l, fmt.Errorf("%s: struct %s has no field %s", name, f.strct, f.field)
		}
		if off%8 != 0 {
			return l, fmt.Errorf("%s: struct %s field %s at bit %d: not byte aligned", name, f.strct, f.field, off)
		}
		*f.out = off / 8
	}
	return l, nil
}

func parseBTF(name string, b []byte) (*btf, error) {
	if len(b) < 24 {
		return nil, fmt.Errorf("%s: %d bytes: too short for a BTF header", name, len(b))
	}
	var le binary.ByteOrder
	switch {
	case b[0] == 0x9f && b[1] == 0xeb:
		le = binary.LittleEndian
	case b[0] == 0xeb && b[1] == 0x9f:
		le = binary.BigEndian
	default:
		return nil, fmt.Errorf("%s: offset 0: bad magic %#x%02x", name, b[0], b[1])
	}
	hdrLen, typeOff, typeLen := le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:])
	strOff, strLen := le.Uint32(b[16:]), le.Uint32(b[20:])
	section := func(what string, off, n uint32) ([]byte, error) {
		start, end := uint64(hdrLen)+uint64(off), uint64(hdrLen)+uint64(off)+uint64(n)
		if hdrLen < 24 || end > uint64(len(b)) {
			return nil, fmt.Errorf("%s: offset 4: %s section %d+%d past the end (%d bytes)", name, what, start, n, len(b))
		}
		return b[start:end], nil
	}
	t := &btf{name: name, le: le, hdr: hdrLen + typeOff, at: make([]uint32, 1, 1<<17)}
	var err error
	if t.types, err = section("type", typeOff, typeLen); err != nil {
		return nil, err
	}
	if t.strs, err = section("string", strOff, strLen); err != nil {
		return nil, err
	}
	for off := 0; off < len(t.types); {
		if off+12 > len(t.types) {
			return nil, fmt.Errorf("%s: offset %d: type %d cut short", name, int(t.hdr)+off, len(t.at))
		}
		info := le.Uint32(t.types[off+4:])
		kind, vlen := info>>24&0x1f, int(info&0xffff)
		extra := 0
		switch kind {
		case btfInt, btfVar, btfDeclTag:
			extra = 4
		case btfArray:
			extra = 12
		case btfStruct, btfUnion, btfDatasec, btfEnum64:
			extra = 12 * vlen
		case btfEnum, btfFuncProto:
			extra = 8 * vlen
		case btfPtr, btfFwd, btfTypedef, btfVolatile, btfConst, btfRestrict, btfFunc, btfFloat, btfTypeTag:
		default:
			return nil, fmt.Errorf("%s: offset %d: type %d has unknown kind %d", name, int(t.hdr)+off, len(t.at), kind)
		}
		t.at = append(t.at, uint32(off))
		off += 12 + extra
		if off > len(t.types) {
			return nil, fmt.Errorf("%s: offset %d: type %d cut short", name, int(t.hdr)+off-12-extra, len(t.at)-1)
		}
	}
	return t, nil
}

// head returns the kind, name and the size-or-type word of type id.
func (t *btf) head(id uint32) (kind, nameOff, sizeType uint32) {
	off := t.at[id]
	info := t.le.Uint32(t.types[off+4:])
	return info >> 24 & 0x1f, t.le.Uint32(t.types[off:]), t.le.Uint32(t.types[off+8:])
}

// strAt returns the string at off in the string section, without copying.
func (t *btf) strAt(off uint32) []byte {
	if off >= uint32(len(t.strs)) {
		return nil
	}
	s := t.strs[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return s
}

// member returns the bit offset of field in the struct or union id,
// looking into anonymous members (the kernel nests fields in unnamed
// unions). depth bounds the recursion on malformed input.
func (t *btf) member(id uint32, field string, depth int) (uint32, bool, error) {
	if depth > 16 {
		return 0, false, nil
	}
	off := t.at[id]
	info := t.le.Uint32(t.types[off+4:])
	vlen := info & 0xffff
	bitfields := info>>31 != 0
	for i := range vlen {
		m := off + 12 + 12*i
		nameOff, typ, moff := t.le.Uint32(t.types[m:]), t.le.Uint32(t.types[m+4:]), t.le.Uint32(t.types[m+8:])
		if bitfields {
			moff &= 0xffffff
		}
		if typ >= uint32(len(t.at)) {
			return 0, false, fmt.Errorf("%s: offset %d: member %d of type %d refers to type %d of %d", t.name, int(t.hdr)+int(m), i, id, typ, len(t.at)-1)
		}
		if nameOff != 0 {
			if string(t.strAt(nameOff)) == field {
				return moff, true, nil
			}
			continue
		}
		inner := t.resolve(typ)
		if inner == 0 {
			continue
		}
		if k, _, _ := t.head(inner); k == btfStruct || k == btfUnion {
			if o, ok, err := t.member(inner, field, depth+1); err != nil || ok {
				return moff + o, ok, err
			}
		}
	}
	return 0, false, nil
}

// resolve skips typedefs and qualifiers; 0 when it ends in void or loops.
func (t *btf) resolve(id uint32) uint32 {
	for range 32 {
		if id == 0 || id >= uint32(len(t.at)) {
			return 0
		}
		switch k, _, next := t.head(id); k {
		case btfTypedef, btfVolatile, btfConst, btfRestrict, btfTypeTag:
			id = next
		default:
			return id
		}
	}
	return 0
}

package owners

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// btfBuilder writes a little-endian BTF blob, a type at a time.
type btfBuilder struct {
	types []byte
	strs  []byte
	n     uint32 // types so far
}

func (b *btfBuilder) str(s string) uint32 {
	if s == "" {
		return 0
	}
	off := uint32(len(b.strs))
	b.strs = append(append(b.strs, s...), 0)
	return off
}

// typ adds a type and returns its id; extra is its kind-specific tail.
func (b *btfBuilder) typ(name string, kind, vlen, sizeType uint32, extra ...uint32) uint32 {
	le := binary.LittleEndian
	b.types = le.AppendUint32(b.types, b.str(name))
	b.types = le.AppendUint32(b.types, kind<<24|vlen)
	b.types = le.AppendUint32(b.types, sizeType)
	for _, e := range extra {
		b.types = le.AppendUint32(b.types, e)
	}
	b.n++
	return b.n
}

// strct adds a struct of the given members: name, type id, byte offset.
func (b *btfBuilder) strct(name string, kind uint32, members ...any) uint32 {
	var extra []uint32
	for i := 0; i < len(members); i += 3 {
		extra = append(extra, b.str(members[i].(string)), uint32(members[i+1].(int)), uint32(members[i+2].(int))*8)
	}
	return b.typ(name, kind, uint32(len(members)/3), 64, extra...)
}

func (b *btfBuilder) bytes() []byte {
	le := binary.LittleEndian
	h := []byte{0x9f, 0xeb, 1, 0}
	h = le.AppendUint32(h, 24)
	h = le.AppendUint32(h, 0)
	h = le.AppendUint32(h, uint32(len(b.types)))
	h = le.AppendUint32(h, uint32(len(b.types)))
	h = le.AppendUint32(h, uint32(len(b.strs)))
	return append(append(h, b.types...), b.strs...)
}

// kernelBTF is a small kernel's BTF with the types the iterator reads;
// skip leaves one field out.
func kernelBTF(skip string) []byte {
	b := &btfBuilder{strs: []byte{0}}
	ulong := b.typ("unsigned long", btfInt, 0, 8, 64)
	pid := b.typ("pid_t", btfTypedef, 0, b.typ("int", btfInt, 0, 4, 32))
	ptr := b.typ("", btfPtr, 0, 0)
	field := func(name string, typ, off int) []any {
		if name == skip {
			name = "other"
		}
		return []any{name, typ, off}
	}
	b.strct("file", btfStruct, append(field("f_lock", int(ulong), 0), field("f_inode", int(ptr), 40)...)...)
	// i_ino in an unnamed union behind a const, as kernels nest fields.
	u := b.strct("", btfUnion, field("i_ino", int(ulong), 0)...)
	cu := b.typ("", btfConst, 0, u)
	b.strct("inode", btfStruct, append(field("i_sb", int(ptr), 40), "", int(cu), 64)...)
	b.strct("super_block", btfStruct, field("s_magic", int(ulong), 96)...)
	b.strct("task_struct", btfStruct, append(append(field("pid", int(pid), 1000), field("tgid", int(pid), 1004)...), field("vfork_done", int(ptr), 1008)...)...)
	proto := b.typ("", btfFuncProto, 1, 0, 0, ptr)
	name := "bpf_iter_task_file"
	if skip == name {
		name = "bpf_iter_task"
	}
	b.typ(name, btfFunc, 0, proto)
	return b.bytes()
}

var layoutCases = []struct {
	name    string
	in      []byte
	want    kernelLayout
	wantErr string
}{
	{"kernel", kernelBTF(""), kernelLayout{IterFunc: 12, FileInode: 40, InodeIno: 64, InodeSB: 40, SBMagic: 96, TaskTgid: 1004, TaskVforkDone: 1008}, ""},
	{"no iterator", kernelBTF("bpf_iter_task_file"), kernelLayout{}, "vmlinux: no function bpf_iter_task_file"},
	{"no tgid", kernelBTF("tgid"), kernelLayout{}, "vmlinux: struct task_struct has no field tgid"},
	{"no i_ino", kernelBTF("i_ino"), kernelLayout{}, "vmlinux: struct inode has no field i_ino"},
	{"empty", nil, kernelLayout{}, "vmlinux: 0 bytes: too short for a BTF header"},
	{"bad magic", append([]byte{1, 2}, kernelBTF("")[2:]...), kernelLayout{}, "vmlinux: offset 0: bad magic"},
	{"types past end", kernelBTF("")[:100], kernelLayout{}, "vmlinux: offset 4: type section"},
	{"unknown kind", func() []byte {
		b := &btfBuilder{strs: []byte{0}}
		b.typ("x", 31, 0, 0)
		return b.bytes()
	}(), kernelLayout{}, "vmlinux: offset 24: type 1 has unknown kind 31"},
	{"cut short", func() []byte {
		b := &btfBuilder{strs: []byte{0}}
		b.typ("int", btfInt, 0, 4, 32)
		b.types = b.types[:len(b.types)-2]
		return b.bytes()
	}(), kernelLayout{}, "vmlinux: offset 24: type 1 cut short"},
	{"member type out of range", func() []byte {
		b := &btfBuilder{strs: []byte{0}}
		b.typ("bpf_iter_task_file", btfFunc, 0, 0)
		b.strct("file", btfStruct, "", 99, 0)
		b.strct("inode", btfStruct)
		b.strct("super_block", btfStruct)
		b.strct("task_struct", btfStruct)
		return b.bytes()
	}(), kernelLayout{}, "vmlinux: offset 48: member 0 of type 2 refers to type 99 of 5"},
}

func TestParseKernelLayout(t *testing.T) {
	for _, tc := range layoutCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKernelLayout("vmlinux", tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseKernelLayout = %+v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseKernelLayout = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseKernelLayout(f *testing.F) {
	for _, tc := range layoutCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseKernelLayout("vmlinux", b)
		if err == nil && l.IterFunc == 0 {
			t.Fatalf("parseKernelLayout = %+v without an error", l)
		}
	})
}

// BenchmarkParseKernelLayout reads this machine's own BTF: every ls and
// who as root pays for it once.
func BenchmarkParseKernelLayout(b *testing.B) {
	raw, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := parseKernelLayout("vmlinux", raw); err != nil {
			b.Fatal(err)
		}
	}
}

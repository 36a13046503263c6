package owners

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The socket-file iterator: a BPF task_file iterator (Linux 5.8) visits
// every open file of every process inside the kernel and writes the pid
// and inode of each socket, so one read gives what the /proc walk finds
// with a readlink per open file (26,000 system calls for 1,000 small
// servers, most of who's time). It needs root (CAP_BPF and CAP_PERFMON)
// and the kernel's BTF; without them Find walks /proc as before.

// iterRecord is what the program writes per socket file: pid, fd, inode.
const iterRecord = 16

var socketIter = sync.OnceValues(loadSocketIter)

// eachSocketFile calls fn with the process id and inode of every socket
// file open in any process (threads sharing their process's files are
// visited once). Pids are those of the initial pid namespace, so it
// refuses to run in another.
func eachSocketFile(fn func(pid int32, ino uint64)) error {
	link, err := socketIter()
	if err != nil {
		return err
	}
	attr := [8]uint32{uint32(link)}
	fd, err := bpf(unix.BPF_ITER_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return fmt.Errorf("bpf iter create: %w", err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("read socket iterator: %w", err)
		}
		if n <= 0 {
			return nil
		}
		for b := buf[:n]; len(b) >= iterRecord; b = b[iterRecord:] {
			fn(int32(ne.Uint32(b)), ne.Uint64(b[8:]))
		}
	}
}

// initPidNS is PROC_PID_INIT_INO, the inode of the initial pid namespace.
const initPidNS = "pid:[4026531836]"

func loadSocketIter() (int, error) {
	// progLoadAttr has the kernel's layout only where pointers are 64-bit.
	if unsafe.Offsetof(progLoadAttr{}.attachBTFID) != 108 || unsafe.Sizeof(progLoadAttr{}) != 128 {
		return -1, errors.New("socket iterator: 64-bit systems only")
	}
	if !mayLoadTracing() {
		return -1, errors.New("socket iterator: needs CAP_BPF and CAP_PERFMON")
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err != nil || ns != initPidNS {
		return -1, fmt.Errorf("socket iterator: not in the initial pid namespace (%s)", ns)
	}
	const name = "/sys/kernel/btf/vmlinux"
	b, done, err := mapFile(name)
	if err != nil {
		return -1, fmt.Errorf("socket iterator: %w", err)
	}
	l, err := parseKernelLayout(name, b)
	done()
	if err != nil {
		return -1, fmt.Errorf("socket iterator: %w", err)
	}
	for _, off := range []uint32{l.FileInode, l.InodeIno, l.InodeSB, l.SBMagic, l.TaskTgid, l.TaskVforkDone} {
		if off > 1<<15-8 {
			return -1, fmt.Errorf("socket iterator: field offset %d out of reach", off)
		}
	}
	prog, err := loadProgram(socketIterProgram(l), l.IterFunc, nil)
	if err != nil {
		// Again with the verifier's log, for the error.
		log := make([]byte, 64<<10)
		loadProgram(socketIterProgram(l), l.IterFunc, log)
		return -1, fmt.Errorf("socket iterator: bpf prog load: %w: %s", err, lastLine(string(log[:clen(log)])))
	}
	defer unix.Close(prog) // the link keeps the program
	le := binary.NativeEndian
	// union bpf_attr for BPF_LINK_CREATE: prog_fd, target_fd, attach_type,
	// flags, and no iter_info (every task).
	var la [32]byte
	le.PutUint32(la[0:], uint32(prog))
	le.PutUint32(la[8:], unix.BPF_TRACE_ITER)
	link, err := bpf(unix.BPF_LINK_CREATE, unsafe.Pointer(&la), unsafe.Sizeof(la))
	if err != nil {
		return -1, fmt.Errorf("socket iterator: bpf link create: %w", err)
	}
	return link, nil
}

// progLoadAttr is union bpf_attr for BPF_PROG_LOAD, up to attach_btf_id.
// Its pointers are unsafe.Pointer, not integers, so that the buffers they
// point to stay put and alive however the stack moves.
type progLoadAttr struct {
	progType, insnCnt   uint32
	insns, license      unsafe.Pointer
	logLevel, logSize   uint32
	logBuf              unsafe.Pointer
	kernVersion, flags  uint32
	name                [16]byte
	ifindex, attachType uint32
	btfFD, funcInfoSize uint32
	funcInfo            uint64
	funcInfoCnt         uint32
	lineInfoSize        uint32
	lineInfo            uint64
	lineInfoCnt         uint32
	attachBTFID         uint32
	attachProgFD        uint32
	_                   [12]byte
}

var bpfLicense = []byte("Dual MIT/GPL\x00") // bpf_seq_write is for GPL-compatible programs

// mapFile maps the file name read-only (Linux 6.15 maps the kernel's BTF
// in place: no copy of its megabytes), or reads it where it cannot be
// mapped; done releases it.
func mapFile(name string) (b []byte, done func(), err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if size := st.Size(); size > 0 && size < 1<<30 {
		if b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE); err == nil {
			return b, func() { unix.Munmap(b) }, nil
		}
	}
	b, err = io.ReadAll(f)
	return b, func() {}, err
}

// mayLoadTracing reports whether this process has the capabilities a
// tracing program needs, before reading megabytes of BTF for nothing.
func mayLoadTracing() bool {
	const capPerfmon, capBPF = 38, 39
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_SYS_ADMIN) || has(capBPF) && has(capPerfmon)
}

// loadProgram loads a BPF_TRACE_ITER program attached to the BTF function
// id; log, when not nil, receives the verifier's log.
func loadProgram(insns []byte, btfID uint32, log []byte) (int, error) {
	attr := progLoadAttr{
		progType:    unix.BPF_PROG_TYPE_TRACING,
		insnCnt:     uint32(len(insns) / 8),
		insns:       unsafe.Pointer(&insns[0]),
		license:     unsafe.Pointer(&bpfLicense[0]),
		attachType:  unix.BPF_TRACE_ITER,
		attachBTFID: btfID,
	}
	copy(attr.name[:], "portolan_socks")
	if log != nil {
		attr.logLevel, attr.logSize, attr.logBuf = 1, uint32(len(log)), unsafe.Pointer(&log[0])
	}
	return bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

func lastLine(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

// socketIterProgram assembles the iterator's program: for each (task,
// file) pair, when the file's inode is on sockfs, write tgid, fd and the
// inode number to the seq file. A child of vfork that has not exec'd yet
// is left out: its files are its parent's, copied for an instant, and
// listing it named every fork of a busy process as a holder. The context is struct
// bpf_iter__task_file: meta at 0, task at 8, fd at 16, file at 24.
func socketIterProgram(l kernelLayout) []byte {
	const (
		r0, r1, r2, r3, r6, r7, r8, r10 = 0, 1, 2, 3, 6, 7, 8, 10
		ldxDW, ldxW                     = 0x79, 0x61
		stxDW, stxW                     = 0x7b, 0x63
		jeqK, jneK                      = 0x15, 0x55
		movK, movX, addK                = 0xb7, 0xbf, 0x07
		call, exit                      = 0x85, 0x95
		seqWrite                        = 127 // BPF_FUNC_seq_write
		out                             = 25  // index of "r0 = 0"
	)
	type insn struct {
		op       uint8
		dst, src uint8
		off      int16
		imm      int32
	}
	jump := func(at int, op uint8, dst uint8, imm int32) insn {
		return insn{op, dst, 0, int16(out - at - 1), imm}
	}
	prog := []insn{
		0:   {movX, r6, r1, 0, 0},
		1:   {ldxDW, r7, r6, 8, 0}, // task
		2:   jump(2, jeqK, r7, 0),
		3:   {ldxDW, r3, r7, int16(l.TaskVforkDone), 0},
		4:   jump(4, jneK, r3, 0),   // a vfork child before its exec
		5:   {ldxDW, r8, r6, 24, 0}, // file
		6:   jump(6, jeqK, r8, 0),
		7:   {ldxDW, r2, r8, int16(l.FileInode), 0},
		8:   jump(8, jeqK, r2, 0),
		9:   {ldxDW, r3, r2, int16(l.InodeSB), 0},
		10:  jump(10, jeqK, r3, 0),
		11:  {ldxDW, r3, r3, int16(l.SBMagic), 0},
		12:  jump(12, jneK, r3, unix.SOCKFS_MAGIC),
		13:  {ldxDW, r3, r2, int16(l.InodeIno), 0},
		14:  {stxDW, r10, r3, -8, 0},
		15:  {ldxW, r3, r7, int16(l.TaskTgid), 0},
		16:  {stxW, r10, r3, -16, 0},
		17:  {ldxW, r3, r6, 16, 0}, // fd
		18:  {stxW, r10, r3, -12, 0},
		19:  {ldxDW, r1, r6, 0, 0}, // meta
		20:  {ldxDW, r1, r1, 0, 0}, // meta->seq
		21:  {movX, r2, r10, 0, 0},
		22:  {addK, r2, 0, 0, -iterRecord},
		23:  {movK, r3, 0, 0, iterRecord},
		24:  {call, 0, 0, 0, seqWrite},
		out: {movK, r0, 0, 0, 0},
		26:  {exit, 0, 0, 0, 0},
	}
	b := make([]byte, 0, 8*len(prog))
	for _, in := range prog {
		regs := in.dst | in.src<<4
		if isBigEndian {
			regs = in.dst<<4 | in.src
		}
		b = append(b, in.op, regs)
		b = binary.NativeEndian.AppendUint16(b, uint16(in.off))
		b = binary.NativeEndian.AppendUint32(b, uint32(in.imm))
	}
	return b
}

var isBigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1

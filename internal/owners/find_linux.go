package owners

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/procstat"
)

// Find returns the processes holding each socket of qs open (a Result per
// Query, in order), found with the socket-file iterator when it can run
// here (root), else by reading the /proc/PID/fd links ("socket:[INODE]")
// of every process. Where none is found, Unseen says why and Cgroup names
// the cgroup the socket was made in, so there is still a unit or a
// container to show. With opt.First the walk ends as soon as every socket
// has an owner: a question about one port usually reads a fraction of
// /proc. The results are filled as far as the search got when it returns
// an error.
func Find(ctx context.Context, qs []Query, opt Options) ([]Result, error) {
	return find(ctx, "/proc", qs, opt, true)
}

var ne = binary.NativeEndian // dirents and the iterator's records are host order

// dirBufSize is the getdents buffer: about 1,300 fd entries per call.
const dirBufSize = 32 << 10

// maxDirent is the largest linux_dirent64 procfs returns here (a 255-byte
// name rounded up); see walker.scan.
const maxDirent = 19 + 256 + 5

type hit struct{ slot, pid int32 }

// walk is the state shared by the walkers of one Find call.
type walk struct {
	procFD    int
	want      map[uint32]int32 // socket inode -> index in qs
	opt       Options
	pids      []int32
	next      atomic.Int64   // index of the next pid to scan
	best      []atomic.Int32 // First: lowest pid found per socket
	remaining atomic.Int64   // First: sockets without an owner yet
	cancelled atomic.Bool
	parallel  bool         // more than one walker: share large directories
	chunks    chan chunk   // parts of large fd directories, for any walker
	scanning  atomic.Int32 // walkers still taking pids; the last closes chunks
	// bits numbers the wanted sockets when there are at most 64 (a
	// question about a port): once a process is seen holding all of them,
	// the rest of its fd table is not read. A server holding 20,000
	// sockets then costs a few reads when the port's socket comes first.
	bits    map[int32]uint64
	allBits uint64
}

// walker is one goroutine's part of a walk, with its own buffers.
type walker struct {
	*walk
	dirbuf []byte
	link   [64]byte
	path   [32]byte
	small  [4096]byte // for reading /proc/PID files
	hits   []hit
	procs  map[int32]*Process
	denied int
}

// find is Find on the proc file system mounted at proc; iter lets it use
// the socket-file iterator, which reads the kernel's own tables (and so
// only fits the real /proc).
func find(ctx context.Context, proc string, qs []Query, opt Options, iter bool) ([]Result, error) {
	res := make([]Result, len(qs))
	want := make(map[uint32]int32, len(qs))
	for i, q := range qs {
		if q.Inode == 0 {
			res[i].Unseen = NoProcess
			continue
		}
		want[q.Inode] = int32(i)
	}
	if len(want) == 0 {
		return res, nil
	}
	procFD, err := unix.Open(proc, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", proc, err)
	}
	defer unix.Close(procFD)
	if iter {
		if hits, ok := iterOwners(want, opt.First); ok {
			wk := &walker{walk: &walk{procFD: procFD, opt: opt}, procs: make(map[int32]*Process)}
			for _, h := range hits {
				if _, done := wk.procs[h.pid]; !done {
					wk.procs[h.pid] = wk.openProcess(h.pid)
				}
			}
			for _, h := range hits {
				if p := wk.procs[h.pid]; p != nil {
					res[h.slot].Procs = append(res[h.slot].Procs, p)
				}
			}
			sortOwners(res)
			explainUnseen(qs, res, false, 0)
			return res, ctx.Err()
		}
	}
	pids, err := PIDs(procFD)
	if err != nil {
		return res, fmt.Errorf("list processes in %s: %w", proc, err)
	}

	w := &walk{procFD: procFD, want: want, opt: opt, pids: pids}
	if len(want) <= 64 && !opt.First {
		w.bits = make(map[int32]uint64, len(want))
		for _, slot := range want {
			w.bits[slot] = 1 << len(w.bits)
		}
		w.allBits = 1<<len(w.bits) - 1
	}
	if opt.First {
		w.best = make([]atomic.Int32, len(qs))
		w.remaining.Store(int64(len(want)))
	}
	n := min(runtime.GOMAXPROCS(0), 4, len(pids)/16+1)
	w.parallel = n > 1
	w.chunks = make(chan chunk, 64)
	w.scanning.Store(int32(n))
	walkers := make([]*walker, n)
	var wg sync.WaitGroup
	for i := range walkers {
		wk := &walker{walk: w, dirbuf: make([]byte, dirBufSize), procs: make(map[int32]*Process)}
		walkers[i] = wk
		wg.Go(func() { wk.run(ctx) })
	}
	wg.Wait()

	procs := make(map[int32]*Process)
	denied := 0
	for _, wk := range walkers {
		for pid, p := range wk.procs {
			procs[pid] = p
		}
		denied += wk.denied
	}
	if opt.First {
		for i := range w.best {
			if pid := w.best[i].Load(); pid != 0 {
				res[i].Procs = []*Process{procs[pid]}
			}
		}
	} else {
		for _, wk := range walkers {
			for _, h := range wk.hits {
				res[h.slot].Procs = append(res[h.slot].Procs, procs[h.pid])
			}
		}
		sortOwners(res)
	}
	explainUnseen(qs, res, w.cancelled.Load(), denied)
	return res, ctx.Err()
}

// sortOwners puts each socket's owners in pid order, each once (a process
// holding a socket by two fds).
func sortOwners(res []Result) {
	for i := range res {
		if len(res[i].Procs) > 1 {
			slices.SortFunc(res[i].Procs, func(a, b *Process) int { return a.PID - b.PID })
			res[i].Procs = slices.CompactFunc(res[i].Procs, func(a, b *Process) bool { return a.PID == b.PID })
		}
	}
}

// iterOwners finds the holders of the wanted sockets (inode -> slot) with
// the socket-file iterator, in one pass over the kernel's fd tables; with
// first, only the lowest pid of each. False when the iterator cannot run
// here (not root, no BTF, another pid namespace): then /proc is walked.
func iterOwners(want map[uint32]int32, first bool) ([]hit, bool) {
	var hits []hit
	err := eachSocketFile(func(pid int32, ino uint64) {
		if slot, ok := want[uint32(ino)]; ok && ino <= math.MaxUint32 {
			hits = append(hits, hit{slot, pid})
		}
	})
	if err != nil {
		return nil, false
	}
	if first {
		lowest := make(map[int32]int32, len(want))
		for _, h := range hits {
			if p, ok := lowest[h.slot]; !ok || h.pid < p {
				lowest[h.slot] = h.pid
			}
		}
		hits = hits[:0]
		for slot, pid := range lowest {
			hits = append(hits, hit{slot, pid})
		}
	}
	return hits, true
}

// openProcess reads what we show about process pid, as the walk does
// once it has the fd directory open; nil when it has exited.
func (wk *walker) openProcess(pid int32) *Process {
	p := strconv.AppendInt(wk.path[:0], int64(pid), 10)
	fd, err := unix.Openat(wk.procFD, string(p)+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	return wk.readProcess(pid, fd, nil)
}

// explainUnseen sets Unseen (and Cgroup) of the sockets without owners.
func explainUnseen(qs []Query, res []Result, cancelled bool, denied int) {
	euid := uint32(os.Geteuid())
	var hidden *bool
	var cgroupIDs []uint64
	for i := range res {
		r := &res[i]
		if len(r.Procs) > 0 || r.Unseen != Seen {
			continue
		}
		switch {
		case cancelled:
			r.Unseen = Skipped
			continue
		case denied == 0:
			r.Unseen = NotFound
		case qs[i].UID != euid:
			if hidden == nil {
				h := procHidesPids()
				hidden = &h
			}
			r.Unseen = Denied
			if *hidden {
				r.Unseen = Hidden
			}
		default:
			r.Unseen = NotFound
		}
		if qs[i].CgroupID != 0 {
			cgroupIDs = append(cgroupIDs, qs[i].CgroupID)
		}
	}
	if len(cgroupIDs) == 0 {
		return
	}
	paths := cgroupPaths(cgroupIDs)
	for i := range res {
		r := &res[i]
		if p, ok := paths[qs[i].CgroupID]; ok && len(r.Procs) == 0 && r.Unseen != Skipped {
			r.Cgroup = ParseCgroupPath(p)
		}
	}
}

// run scans processes until there are none left, then helps with the
// chunks of large fd directories that other walkers handed out.
func (wk *walker) run(ctx context.Context) {
	defer func() {
		// Leaving the pid phase: the last walker out closes the chunk
		// queue, since no one can add to it any more.
		if wk.scanning.Add(-1) == 0 {
			close(wk.chunks)
		}
		for c := range wk.chunks {
			wk.doChunk(c)
		}
	}()
	for n := 0; ; n++ {
		select {
		case c := <-wk.chunks:
			wk.doChunk(c)
			continue
		default:
		}
		if wk.opt.First && wk.remaining.Load() == 0 {
			return
		}
		if n%32 == 0 && ctx.Err() != nil {
			wk.cancelled.Store(true)
			return
		}
		i := wk.next.Add(1) - 1
		if i >= int64(len(wk.pids)) {
			return
		}
		wk.scan(wk.pids[i])
	}
}

// fdJob is the fd directory of one process being read, possibly by several
// walkers at once when it is large.
type fdJob struct {
	pid     int32
	fd      uintptr // the open /proc/PID/fd
	parts   atomic.Int32
	matched atomic.Bool
	seen    atomic.Uint64 // walk.bits of the wanted sockets found here
	// vfork says, once a wanted socket is found here, whether the process
	// is a child of vfork that has not exec'd (see vforkChild); stat is
	// what that read of /proc/PID/stat said, for readProcess.
	vforkOnce sync.Once
	vfork     bool
	stat      *procstat.Stat
}

// chunk is part of a large fd directory: the entries of one getdents call.
type chunk struct {
	job  *fdJob
	ents []byte
}

// scan reads the fd links of process pid. A directory that takes more than
// one read (over a thousand files) is shared: each further read becomes a
// chunk other walkers may take, so one process holding most of the sockets
// does not leave the other cores idle.
func (wk *walker) scan(pid int32) {
	p := strconv.AppendInt(wk.path[:0], int64(pid), 10)
	p = append(p, "/fd\x00"...)
	// Plain (not raw) system calls here and below, as for every file
	// system call: procfs usually answers at once, but a call that waits
	// (a lock held by a dying process) must let the runtime run other
	// goroutines and stop the world for a GC meanwhile. They allocate
	// nothing, unlike the os package's.
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(wk.procFD), uintptr(unsafe.Pointer(&p[0])),
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0, 0, 0)
	if errno != 0 {
		if errno == unix.EACCES || errno == unix.EPERM {
			wk.denied++
		}
		return // ENOENT: it exited
	}
	job := &fdJob{pid: pid, fd: fd}
	job.parts.Store(1) // this reader's share
	buf := wk.dirbuf
	for {
		r, _, errno := unix.Syscall(unix.SYS_GETDENTS64, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		n := int(r)
		if errno != 0 || n <= 0 {
			break
		}
		if wk.allBits != 0 && job.seen.Load() == wk.allBits {
			break // another walker found every wanted socket in a part of it
		}
		// Only an empty read ends the directory: getdents also returns
		// early, with room to spare, when a signal is pending, and the Go
		// runtime signals its threads to preempt them. A full read is what
		// a large directory gives, so it is the part worth sharing.
		if full := n >= len(buf)-maxDirent; full && wk.parallel {
			c := chunk{job: job, ents: bytes.Clone(buf[:n])}
			job.parts.Add(1)
			select {
			case wk.chunks <- c:
			default:
				wk.doChunk(c) // the queue is full: do it here
			}
			continue
		}
		if !wk.entries(job, buf[:n]) {
			break
		}
	}
	wk.finish(job)
}

// entries reads the fd links of a run of directory entries; false when the
// walk may stop (First, and every socket has its owner).
func (wk *walker) entries(job *fdJob, buf []byte) bool {
	dfd := int(job.fd)
	for off := 0; off+19 < len(buf); {
		reclen := int(ne.Uint16(buf[off+16:]))
		if reclen == 0 {
			break
		}
		if buf[off+19] != '.' {
			if ino, ok := wk.socketLink(dfd, &buf[off+19]); ok {
				if slot, ok := wk.want[ino]; ok && !wk.isVforkChild(job) && wk.found(slot, job.pid) {
					job.matched.Store(true)
					if bit := wk.bits[slot]; bit != 0 && job.seen.Or(bit)|bit == wk.allBits {
						return false // it holds every socket asked about
					}
				}
			}
		}
		off += reclen
		if wk.opt.First && wk.remaining.Load() == 0 && !wk.canImprove(job.pid) {
			return false
		}
	}
	return true
}

// isVforkChild reports whether the process of job is a child of vfork
// before its exec, asking once per process, and only of those holding a
// wanted socket.
func (wk *walker) isVforkChild(job *fdJob) bool {
	job.vforkOnce.Do(func() {
		if st, err := procstat.Parse(wk.read(job.pid, "stat")); err == nil {
			job.stat = &st
			job.vfork = wk.vforkChild(job.pid, st)
		}
	})
	return job.vfork
}

// kcmpVM is KCMP_VM of include/uapi/linux/kcmp.h.
const kcmpVM = 1

// vforkChild reports whether pid is a child of vfork (Go's os/exec,
// posix_spawn) that has not exec'd yet: its files are a copy of its
// parent's for that instant, so listing it named every fork of a busy
// process as a holder (the iterator's program leaves such tasks out too).
// Such a child has not exec'd (PF_FORKNOEXEC in st, its /proc/PID/stat)
// and shares its parent's memory (kcmp); a forked worker has memory of its
// own.
func (wk *walker) vforkChild(pid int32, st procstat.Stat) bool {
	if st.Flags&procstat.FlagForkNoExec == 0 || st.PPID <= 0 {
		return false
	}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(st.PPID), kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
}

// canImprove reports whether pid is lower than the owner found so far for
// some socket, so that First still keeps the lowest pid when another worker
// found a higher one while this directory was being read. Between pids no
// such check is needed: pids are handed out in ascending order, so every
// pid not yet started is higher than every owner found.
func (wk *walker) canImprove(pid int32) bool {
	for i := range wk.best {
		if pid < wk.best[i].Load() {
			return true
		}
	}
	return false
}

func (wk *walker) doChunk(c chunk) {
	if wk.allBits == 0 || c.job.seen.Load() != wk.allBits {
		wk.entries(c.job, c.ents)
	}
	wk.finish(c.job)
}

// finish ends one part of a job; the last part reads the process (when it
// holds a wanted socket) and closes the directory.
func (wk *walker) finish(job *fdJob) {
	if job.parts.Add(-1) != 0 {
		return
	}
	if job.matched.Load() {
		wk.procs[job.pid] = wk.readProcess(job.pid, int(job.fd), job.stat)
	}
	unix.Syscall(unix.SYS_CLOSE, job.fd, 0, 0)
}

// found records pid as a holder of socket slot; with First only the lowest
// pid is kept (the parent of forked workers, usually).
func (wk *walker) found(slot, pid int32) bool {
	if !wk.opt.First {
		wk.hits = append(wk.hits, hit{slot, pid})
		return true
	}
	for {
		cur := wk.best[slot].Load()
		if cur != 0 && cur <= pid {
			return false
		}
		if wk.best[slot].CompareAndSwap(cur, pid) {
			if cur == 0 {
				wk.remaining.Add(-1)
			}
			return true
		}
	}
}

// socketLink reads the fd link named by the NUL-terminated name in dfd and
// returns the inode of "socket:[INODE]". It allocates nothing: this runs
// once for every open file of every process.
func (wk *walker) socketLink(dfd int, name *byte) (uint32, bool) {
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd), uintptr(unsafe.Pointer(name)),
		uintptr(unsafe.Pointer(&wk.link[0])), uintptr(len(wk.link)), 0, 0)
	if errno != 0 || n < 10 || n > uintptr(len(wk.link)) {
		return 0, false
	}
	return parseSocketLink(wk.link[:n])
}

// readProcess reads what we show about process pid; dfd is its open fd
// directory, whose owner is the process's effective user; st is its
// /proc/PID/stat when already read (nil: read it here).
func (wk *walker) readProcess(pid int32, dfd int, st *procstat.Stat) *Process {
	p := &Process{PID: int(pid)}
	var fst unix.Stat_t
	if unix.Fstat(dfd, &fst) == nil {
		p.UID = fst.Uid
	}
	if st == nil {
		if s, err := procstat.Parse(wk.read(pid, "stat")); err == nil {
			st = &s
		}
	}
	if st != nil {
		p.Comm = st.Comm // what /proc/PID/comm says too
	} else if b := wk.read(pid, "comm"); b != nil {
		p.Comm = string(bytes.TrimSuffix(b, []byte{'\n'}))
	}
	if wk.opt.Details {
		if uid, err := parseStatus(wk.read(pid, "status")); err == nil {
			p.UID = uid
		}
		p.Cmdline = parseCmdline(wk.read(pid, "cmdline"))
		if st != nil {
			p.Start = startTime(st.StartTicks)
		}
		if path, err := ParseProcCgroup(wk.read(pid, "cgroup")); err == nil && path != "" {
			p.Cgroup = ParseCgroupPath(path)
		}
	}
	p.User = LookupUser(p.UID)
	return p
}

// read returns the contents of /proc/PID/name (nil when unreadable).
func (wk *walker) read(pid int32, name string) []byte {
	path := strconv.Itoa(int(pid)) + "/" + name
	fd, err := unix.Openat(wk.procFD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var out []byte
	buf := wk.small[:]
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
		}
		if err != nil || n <= 0 || len(out) > 1<<20 {
			return out
		}
	}
}

// clock is the boot time and tick rate that turn /proc/PID/stat start
// times into wall-clock times.
var clock = sync.OnceValues(func() (boot time.Time, hz int64) {
	hz = 100 // USER_HZ on every Linux architecture we build for
	if av, err := unix.Auxv(); err == nil {
		for _, kv := range av {
			if kv[0] == 17 && kv[1] != 0 { // AT_CLKTCK
				hz = int64(kv[1])
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if t, err := parseBootTime(b); err == nil {
			boot = time.Unix(t, 0)
		}
	}
	return boot, hz
})

func startTime(ticks uint64) time.Time {
	boot, hz := clock()
	if boot.IsZero() {
		return time.Time{}
	}
	return boot.Add(time.Duration(ticks) * time.Second / time.Duration(hz))
}

// PIDs returns the processes of the proc file system open as procFD (the
// numeric entries), in ascending order (the order procfs lists them).
func PIDs(procFD int) ([]int32, error) {
	buf := make([]byte, dirBufSize)
	pids := make([]int32, 0, 512)
	for {
		n, err := unix.Getdents(procFD, buf)
		if err != nil {
			return pids, err
		}
		if n <= 0 {
			return pids, nil
		}
		eachDirent(buf[:n], func(_ uint64, _ uint8, name []byte) {
			if pid, ok := atoiPid(name); ok {
				pids = append(pids, pid)
			}
		})
	}
}

func atoiPid(b []byte) (int32, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	var v int32
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int32(c-'0')
	}
	return v, true
}

// eachDirent calls fn for each linux_dirent64 in buf, with its inode, type
// and name (valid only during the call).
func eachDirent(buf []byte, fn func(ino uint64, typ uint8, name []byte)) {
	for off := 0; off+19 < len(buf); {
		reclen := int(ne.Uint16(buf[off+16:]))
		if reclen < 19 || off+reclen > len(buf) {
			return
		}
		name := buf[off+19 : off+reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		fn(ne.Uint64(buf[off:]), buf[off+18], name)
		off += reclen
	}
}

// procHidesPids reports whether /proc is mounted with hidepid.
func procHidesPids() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	hidden := false
	ParseMountinfo(b, func(point, fstype, opts string) {
		if point == "/proc" && fstype == "proc" {
			hidden = hidesPids(opts)
		}
	})
	return hidden
}

// cgroupPaths finds the paths of cgroup v2 ids: a cgroup's id is the inode
// number of its directory, so one walk of the cgroup2 mount, reading
// directory entries only, finds them all.
func cgroupPaths(ids []uint64) map[uint64]string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	root := ""
	ParseMountinfo(b, func(point, fstype, _ string) {
		if fstype == "cgroup2" && root == "" {
			root = point
		}
	})
	if root == "" {
		return nil
	}
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	found := make(map[uint64]string, len(ids))
	var st unix.Stat_t
	if unix.Stat(root, &st) == nil && want[st.Ino] {
		found[st.Ino] = "/"
	}
	buf := make([]byte, dirBufSize)
	var visit func(dir, rel string, depth int)
	visit = func(dir, rel string, depth int) {
		if len(found) == len(want) || depth > 32 {
			return
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		var subdirs []string
		var inos []uint64
		for {
			n, err := unix.Getdents(fd, buf)
			if err != nil || n <= 0 {
				break
			}
			eachDirent(buf[:n], func(ino uint64, typ uint8, name []byte) {
				if typ == unix.DT_DIR && string(name) != "." && string(name) != ".." {
					subdirs = append(subdirs, string(name))
					inos = append(inos, ino)
				}
			})
		}
		unix.Close(fd)
		for i, name := range subdirs {
			if want[inos[i]] {
				found[inos[i]] = rel + "/" + name
			}
			visit(dir+"/"+name, rel+"/"+name, depth+1)
		}
	}
	visit(root, "", 0)
	return found
}

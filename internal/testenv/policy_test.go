package testenv

import (
	"cmp"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// rawOK are the system calls portolan may make raw (unix.RawSyscall*,
// which the Go scheduler does not see): socket operations that never
// wait. A raw call that blocks stalls its processor, and every
// stop-the-world pause of the garbage collector waits for it. Receives
// and sends are raw only with a non-blocking flag in the call itself.
var rawOK = map[string]string{
	"SYS_SOCKET": "", "SYS_CONNECT": "", "SYS_ACCEPT4": "", "SYS_SETSOCKOPT": "",
	"SYS_GETSOCKNAME": "", "SYS_SHUTDOWN": "", "SYS_EPOLL_CTL": "", "SYS_CLOSE": "",
	"SYS_RECVFROM": "MSG_DONTWAIT", "SYS_RECVMMSG": "MSG_DONTWAIT",
	"SYS_SENDMMSG": "MSG_DONTWAIT", "SYS_SPLICE": "SPLICE_F_NONBLOCK",
	// Sends to a non-blocking socket or pipe, or to the kernel over
	// netlink (handled inside the call): checked by name below.
	"SYS_SENDTO": "", "SYS_WRITE": "",
}

// processWide are calls that change the whole process, which a command or
// library must not make behind main's back (an in-process test binary
// would keep the change for every later test).
var processWide = map[string]bool{"SetGCPercent": true, "SetMemoryLimit": true, "Setrlimit": true, "Prlimit": true, "SetMaxThreads": true}

// TestRawSyscallPolicy walks the module's Go files and checks every raw
// system call against rawOK: file system calls (procfs included) and
// blocking receives must be plain unix.Syscall. It also keeps process-wide
// settings in main.
func TestRawSyscallPolicy(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	calls := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if processWide[sel.Sel.Name] && !strings.HasPrefix(filepath.ToSlash(path), "../../cmd/") && !strings.HasPrefix(filepath.ToSlash(path), "../../bench/") {
				t.Errorf("%s: %s changes the whole process: only main (cmd/portolan) may", fset.Position(call.Pos()), sel.Sel.Name)
			}
			if !strings.HasPrefix(sel.Sel.Name, "RawSyscall") || len(call.Args) == 0 {
				return true
			}
			calls++
			pos := fset.Position(call.Pos())
			nr := ""
			if s, ok := call.Args[0].(*ast.SelectorExpr); ok {
				nr = s.Sel.Name
			}
			need, ok := rawOK[nr]
			if !ok {
				t.Errorf("%s: raw system call %s: only non-blocking socket calls may be raw (use unix.Syscall)", pos, cmp.Or(nr, "with a variable number"))
				return true
			}
			if need != "" && !mentions(call, need) {
				t.Errorf("%s: raw %s without %s: a blocking call must be plain unix.Syscall", pos, nr, need)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Fatal("found no raw system calls: is the walk looking at the module?")
	}
}

// mentions reports whether an argument of call names flag.
func mentions(call *ast.CallExpr, flag string) bool {
	found := false
	for _, a := range call.Args[1:] {
		ast.Inspect(a, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == flag {
				found = true
			}
			return !found
		})
	}
	return found
}

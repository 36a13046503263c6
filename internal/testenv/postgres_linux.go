package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PG is a throwaway PostgreSQL server: a cluster made by initdb in a
// temporary directory, listening on a free loopback port and a unix socket
// in that directory, with trust authentication for the superuser
// "postgres". As root it runs as the postgres system user (PostgreSQL
// refuses to run as root). The server dies with the test process
// (Pdeathsig) even when Stop is never called, and its directory is swept by
// the next StartPostgres.
type PG struct {
	Dir  string // the cluster's directory; the socket lives in it
	Port int

	bin  string // directory of initdb and postgres
	cred *syscall.Credential
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the running server has exited
	log  *os.File
	dbs  int
}

// pgDirPrefix names the clusters' directories: portolan-pg-PID-...
const pgDirPrefix = "portolan-pg-"

// StartPostgres makes a new cluster and starts it; Close at the end of the
// test stops it and removes it. It fails the test under CI=true when
// PostgreSQL is not installed or does not start; elsewhere it skips.
func StartPostgres(t testing.TB) *PG {
	t.Helper()
	p, err := NewPostgres(nil)
	if err != nil {
		skipOrFail(t, "needs PostgreSQL (scripts/deps.sh installs Debian's postgresql): "+err.Error())
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// NewPostgres makes and starts a cluster. settings are extra server
// settings (name=value) beyond the test defaults.
func NewPostgres(settings []string) (*PG, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	sweepPostgres()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", pgDirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	p := &PG{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user to run the server: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	os.Chmod(dir, 0o755)
	data := filepath.Join(dir, "data")
	initdb := p.command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(string(out), 5))
	}
	// Tests need a server, not durability; a benchmark passes its own.
	conf := "listen_addresses = '127.0.0.1'\nunix_socket_directories = '" + dir + "'\n" +
		"fsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 100\nshared_buffers = 64MB\n"
	for _, s := range settings {
		conf += s + "\n"
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		f.Close()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("configure cluster: %w", err)
	}
	if p.Port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.Start(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *PG) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGINT}
	return cmd
}

// Start starts the server (again, after Stop) and waits until it accepts
// connections.
func (p *PG) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(p.Dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// postgres itself, not pg_ctl: a child of this process, so Pdeathsig
	// stops it (fast shutdown) if the test binary dies.
	cmd := p.command(filepath.Join(p.bin, "postgres"), "-D", filepath.Join(p.Dir, "data"), "-p", strconv.Itoa(p.Port))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(90 * time.Second) // a loaded machine is slow
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			break
		}
		select {
		case werr := <-exited:
			log.Close()
			b, _ := os.ReadFile(filepath.Join(p.Dir, "server.log"))
			return fmt.Errorf("postgres exited (%v): %s", werr, lastLines(string(b), 5))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			log.Close()
			return fmt.Errorf("postgres did not accept connections within 90s: %w", err)
		}
	}
	p.cmd, p.log, p.done = cmd, log, make(chan struct{})
	go func(done chan struct{}) {
		<-exited
		close(done)
	}(p.done)
	return nil
}

// Stop stops the server with a fast shutdown (clients are disconnected)
// and waits for it to exit.
func (p *PG) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
	p.cmd = nil
	return nil
}

// Close stops the server and removes its directory.
func (p *PG) Close() error {
	p.Stop()
	return os.RemoveAll(p.Dir)
}

// URL returns the connection URL of database db over TCP.
func (p *PG) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (p *PG) NewDatabase(t testing.TB) string {
	t.Helper()
	url, err := p.CreateDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateDatabase creates an empty database and returns its URL.
func (p *PG) CreateDatabase() (string, error) {
	p.mu.Lock()
	p.dbs++
	name := fmt.Sprintf("t%d_%d", os.Getpid(), p.dbs)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to test postgres: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	return p.URL(name), nil
}

// SocketURL returns the URL of database db over the server's unix socket,
// which reaches it from any network namespace.
func (p *PG) SocketURL(db string) string {
	return fmt.Sprintf("postgres:///%s?host=%s&port=%d&user=postgres", db, p.Dir, p.Port)
}

var shared struct {
	once sync.Once
	pg   *PG
	err  error
}

// Postgres returns the URL of a new, empty database on a server shared by
// the tests of this process (started on first use; StopPostgres in
// TestMain stops it, and it dies with the process in any case).
func Postgres(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.pg, shared.err = NewPostgres(nil) })
	if shared.err != nil {
		skipOrFail(t, "needs PostgreSQL (scripts/deps.sh installs Debian's postgresql): "+shared.err.Error())
	}
	return shared.pg.NewDatabase(t)
}

// StopPostgres stops the shared server of Postgres, if it was started, and
// removes its directory. Call it from TestMain after m.Run.
func StopPostgres() {
	if shared.pg != nil {
		shared.pg.Close()
	}
}

// pgBinDir finds PostgreSQL's server programs: initdb on PATH, or the
// newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("initdb not found on PATH nor in /usr/lib/postgresql/*/bin")
}

func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// sweepPostgres removes the cluster directories of test processes that
// are gone (their servers died with them).
func sweepPostgres() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pgDirPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), pgDirPrefix)
		pid, err := strconv.Atoi(rest[:max(0, strings.IndexByte(rest, '-'))])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

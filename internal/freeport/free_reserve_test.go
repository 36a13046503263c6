package freeport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
)

// childEnv makes the test binary a reserving child (TestReserveChild).
const childEnv = "PORTOLAN_FREE_CHILD"

// TestReserveChild is not a test on its own: run by TestReserveConcurrent
// in child processes, it reserves ports, prints them and holds them until
// its stdin closes.
func TestReserveChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("runs only as a child of TestReserveConcurrent")
	}
	// dir|range|n
	f := strings.Split(spec, "|")
	rng, err := portspec.Parse(f[1])
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(f[2])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Reserve(ctx, n, 0, Options{Dir: f[0], Range: rng})
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ports: %v\n", r.Ports)
	io.Copy(io.Discard, os.Stdin)
}

// TestReserveConcurrent starts 50 processes at once, each reserving 5
// ports from one registry and holding them, and checks that no port is
// handed out twice. When they have exited, their ports are reclaimed: a
// reservation of more ports than were ever left over succeeds.
func TestReserveConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 50 processes")
	}
	const children, each = 50, 5
	dir := t.TempDir()
	// A range of 300 ports outside the ephemeral range: the 250 reserved
	// leave about 50, so the check after the children exit needs reclaim.
	rng := freeTestRange(t, 300)
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var kids []child
	defer func() {
		for _, k := range kids {
			k.stdin.Close()
			k.cmd.Process.Kill()
			k.cmd.Wait()
		}
	}()
	for range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReserveChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+dir+"|"+rng.String()+"|"+strconv.Itoa(each))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		kids = append(kids, child{cmd, stdin, bufio.NewReader(stdout)})
	}
	owner := map[portspec.Port]int{}
	for i, k := range kids {
		line, err := k.out.ReadString('\n')
		if !strings.HasPrefix(line, "ports: [") {
			t.Fatalf("child %d said %q (%v); want its ports", i, line, err)
		}
		fields := strings.Fields(strings.Trim(strings.TrimPrefix(line, "ports: "), "[]\n"))
		if len(fields) != each {
			t.Errorf("child %d got %d ports: %q", i, len(fields), line)
		}
		for _, w := range fields {
			n, err := strconv.Atoi(w)
			if err != nil {
				t.Fatalf("child %d: port %q: %v", i, w, err)
			}
			p := portspec.Port(n)
			if j, dup := owner[p]; dup {
				t.Errorf("port %d handed to child %d and child %d", p, j, i)
			}
			owner[p] = i
		}
	}
	if len(owner) != children*each {
		t.Errorf("%d distinct ports handed out; want %d", len(owner), children*each)
	}
	for _, k := range kids {
		k.stdin.Close()
		if err := k.cmd.Wait(); err != nil {
			t.Errorf("child: %v", err)
		}
	}
	kids = nil

	// Every holder is gone: their ports come back.
	r, err := Reserve(context.Background(), children*each, 0, Options{Dir: dir, Range: rng})
	if err != nil {
		t.Fatalf("Reserve(%d) after the holders exited = %v; want their ports reclaimed", children*each, err)
	}
	r.Release()
}

// freeTestRange returns n consecutive ports from 20000 up that are all free
// now, outside the ephemeral range on a default Linux.
func freeTestRange(t *testing.T, n int) *portspec.Set {
	t.Helper()
	for lo := 20000; lo+n < 32768; lo += n {
		ok := true
		for p := lo; p < lo+n && ok; p++ {
			ok = CheckFree(portspec.Port(p)) == nil
		}
		if ok {
			s := new(portspec.Set)
			s.AddRange(portspec.TCP, portspec.Port(lo), portspec.Port(lo+n-1))
			return s
		}
	}
	t.Skip("no run of free ports for the test range")
	return nil
}

func TestReserveExpiryAndHold(t *testing.T) {
	ctx := context.Background()
	a, b := unusedPort(t), unusedPort(t)
	t0 := time.Now()
	now := t0
	clock := func() time.Time { return now }
	o := Options{Range: setOf(a, b), Dir: t.TempDir(), Holder: NoHolder, Hold: 10 * time.Second, now: clock}

	r, err := Reserve(ctx, 1, time.Minute, o)
	if err != nil {
		t.Fatalf("Reserve(1) = %v", err)
	}
	if !r.Expires.Equal(t0.Add(time.Minute)) {
		t.Errorf("Expires = %v; want %v", r.Expires, t0.Add(time.Minute))
	}
	mine := r.Ports[0]
	other := a
	if mine == a {
		other = b
	}
	// Others get only the other port, however often they ask.
	for range 5 {
		got, err := FindN(ctx, 1, o)
		if err != nil || got[0] != other {
			t.Fatalf("FreePorts while %d is reserved = %v, %v; want [%d]", mine, got, err, other)
		}
	}
	_, err = Reserve(ctx, 2, time.Minute, o)
	var nf *NoFreePortError
	if !errors.As(err, &nf) || nf.Reserved != 1 {
		t.Fatalf("Reserve(2) with one reserved = %v; want a NoFreePortError counting 1 reserved", err)
	}
	if !strings.Contains(err.Error(), "1 reserved by other portolan callers") {
		t.Errorf("error %q does not say a port is reserved by another caller", err)
	}

	// After expiry the port is free again.
	now = t0.Add(time.Minute + time.Second)
	if got, err := FindN(ctx, 2, o); err != nil || len(got) != 2 {
		t.Errorf("FindN(2) after expiry = %v, %v; want both", got, err)
	}

	// Release keeps the port held for Hold, then lets it go.
	t1 := t0.Add(2 * time.Minute)
	now = t1
	r2, err := Reserve(ctx, 2, time.Hour, o)
	if err != nil {
		t.Fatalf("Reserve(2) = %v", err)
	}
	if err := r2.Release(); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if err := r2.Release(); err != nil {
		t.Errorf("second Release = %v; want nil", err)
	}
	if got, err := FindN(ctx, 1, o); err == nil {
		t.Errorf("FreePorts right after Release with Hold = %v; want none (held)", got)
	}
	now = t1.Add(11 * time.Second)
	if got, err := FindN(ctx, 2, o); err != nil || len(got) != 2 {
		t.Errorf("FindN(2) after the hold = %v, %v; want both", got, err)
	}
}

func TestReserveDeadHolder(t *testing.T) {
	ctx := context.Background()
	a := unusedPort(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r, err := Reserve(ctx, 1, time.Hour, Options{Range: setOf(a), Dir: dir, Holder: cmd.Process.Pid})
	if err != nil {
		cmd.Wait()
		t.Fatalf("Reserve for pid %d = %v", cmd.Process.Pid, err)
	}
	if got, err := FindN(ctx, 1, Options{Range: setOf(a), Dir: dir}); err == nil {
		t.Errorf("FreePorts while pid %d lives = %v; want none", cmd.Process.Pid, got)
	}
	cmd.Wait()
	got, err := Reserve(ctx, 1, time.Hour, Options{Range: setOf(a), Dir: dir})
	if err != nil || got.Ports[0] != r.Ports[0] {
		t.Errorf("Reserve after holder %d exited = %v, %v; want %d reclaimed", cmd.Process.Pid, got, err, a)
	}
	if _, err := Reserve(ctx, 1, time.Hour, Options{Dir: dir, Holder: cmd.Process.Pid}); err == nil {
		t.Errorf("Reserve for dead pid %d = nil error; want no such process", cmd.Process.Pid)
	}
	if _, err := Reserve(ctx, 1, 0, Options{Dir: dir, Holder: NoHolder}); err == nil {
		t.Errorf("Reserve(ttl 0, NoHolder) = nil error; want one: it would never end")
	}
}

func TestRegistryDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/"+registryFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Reserve(context.Background(), 1, time.Minute, Options{Dir: dir, Range: setOf(unusedPort(t))})
	if err != nil {
		t.Fatalf("Reserve over a damaged registry = %v; want it replaced", err)
	}
	r.Release()
}

// TestReserveDeadHolderHold: a port reserved for an hour by a process that
// exits is held for Hold from when its death is first seen, not for the
// rest of the hour: failed searches in between must not push the end back
// (prune used to recompute "now + hold" on every read and only a
// successful Reserve saved it).
func TestReserveDeadHolderHold(t *testing.T) {
	ctx := context.Background()
	a := unusedPort(t)
	dir := t.TempDir()
	t0 := time.Now()
	now := t0
	clock := func() time.Time { return now }
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o := Options{Range: setOf(a), Dir: dir, Holder: cmd.Process.Pid, Hold: 10 * time.Second, now: clock}
	if _, err := Reserve(ctx, 1, time.Hour, o); err != nil {
		cmd.Wait()
		t.Fatalf("Reserve for pid %d = %v", cmd.Process.Pid, err)
	}
	cmd.Wait()
	others := Options{Range: setOf(a), Dir: dir, Holder: NoHolder, now: clock}
	// Others ask every few seconds while the hold runs; each search fails.
	for i := range 4 {
		now = t0.Add(time.Duration(i) * 3 * time.Second)
		if got, err := FindN(ctx, 1, others); err == nil {
			t.Fatalf("FreePorts %v after the holder died = %v; want none (held for 10s)", now.Sub(t0), got)
		}
		if _, err := Reserve(ctx, 1, time.Minute, others); err == nil {
			t.Fatalf("Reserve %v after the holder died = nil error; want none free (held for 10s)", now.Sub(t0))
		}
	}
	now = t0.Add(11 * time.Second)
	if got, err := FindN(ctx, 1, others); err != nil || got[0] != a {
		t.Errorf("FreePorts 11s after the holder died = %v, %v; want [%d] (the 10s hold is over)", got, err, a)
	}
}

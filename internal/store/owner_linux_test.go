package store

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestResumeRefusesLiveOwner: a scan another live process runs cannot be
// resumed; once that process is gone, it can.
func TestResumeRefusesLiveOwner(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id, _ := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1"})
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Skipf("start a second process: %v", err)
	}
	defer other.Process.Kill()
	start, err := processStart(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE scans SET owner_pid = ?, owner_start = ? WHERE id = ?`, other.Process.Pid, start, id); err != nil {
		t.Fatal(err)
	}
	_, err = s.ResumeScan(ctx, id)
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "process ") {
		t.Fatalf("ResumeScan of a scan a live process runs = %v; want ErrRunning naming the process", err)
	}
	// The same pid with another start time is a reused pid, not the owner.
	s.db.Exec(`UPDATE scans SET owner_start = ? WHERE id = ?`, start+1, id)
	if _, err := s.ResumeScan(ctx, id); err != nil {
		t.Fatalf("ResumeScan with a reused pid = %v; want it resumed", err)
	}
	s.db.Exec(`UPDATE scans SET owner_pid = ?, owner_start = ? WHERE id = ?`, other.Process.Pid, start, id)
	other.Process.Kill()
	other.Wait()
	if _, err := s.ResumeScan(ctx, id); err != nil {
		t.Fatalf("ResumeScan after its process died = %v; want it resumed", err)
	}
	var pid int
	s.db.QueryRow(`SELECT owner_pid FROM scans WHERE id = ?`, id).Scan(&pid)
	if pid != self().pid {
		t.Errorf("owner after resume = %d; want this process, %d", pid, self().pid)
	}
	// Finishing clears the owner.
	s.FinishScan(ctx, id, Done, Counts{})
	s.db.QueryRow(`SELECT owner_pid FROM scans WHERE id = ?`, id).Scan(&pid)
	if pid != 0 {
		t.Errorf("owner after FinishScan = %d; want 0", pid)
	}
}

// TestDeadOwnerInterrupted: a scan whose process died (kill -9: it never
// wrote its end) is reported interrupted, not running forever.
func TestDeadOwnerInterrupted(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id, err := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1", Ports: "22", Space: 1})
	if err != nil {
		t.Fatal(err)
	}
	if si, _ := s.Scan(ctx, id); si.Status != Running {
		t.Fatalf("own scan: status %s; want running", si.Status)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE scans SET owner_pid = ?, owner_start = 1 WHERE id = ?`, dead.Process.Pid, id); err != nil {
		t.Fatal(err)
	}
	si, err := s.Scan(ctx, id)
	if err != nil || si.Status != Interrupted {
		t.Errorf("Scan of a scan whose process died: status %s, %v; want interrupted", si.Status, err)
	}
	list, err := s.Scans(ctx, 0)
	if err != nil || len(list) != 1 || list[0].Status != Interrupted {
		t.Errorf("Scans: %+v, %v; want the scan interrupted", list, err)
	}
}

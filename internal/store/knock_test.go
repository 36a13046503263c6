package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestKnockNonces checks a nonce is new once, stays known across a reopen
// (a daemon restart), and is forgotten after it expires.
func TestKnockNonces(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	now := time.Unix(1_800_000_000, 0)
	open := func() *Store {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		s.Now = func() time.Time { return now }
		return s
	}
	s := open()
	nonce := []byte("0123456789abcdef")
	for i, want := range []bool{true, false} {
		got, err := s.AddKnockNonce(ctx, nonce, now.Add(time.Minute))
		if err != nil || got != want {
			t.Fatalf("AddKnockNonce #%d = %v, %v; want %v", i+1, got, err, want)
		}
	}
	s.Close()
	s = open()
	defer s.Close()
	if got, err := s.AddKnockNonce(ctx, nonce, now.Add(time.Minute)); err != nil || got {
		t.Fatalf("AddKnockNonce after reopen = %v, %v; want false (replay)", got, err)
	}
	now = now.Add(2 * time.Minute)
	if got, err := s.AddKnockNonce(ctx, nonce, now.Add(time.Minute)); err != nil || !got {
		t.Fatalf("AddKnockNonce after expiry = %v, %v; want true", got, err)
	}
}

func TestKnockEvents(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Unix(1_800_000_000, 0)
	evs := []KnockEvent{
		{Time: t0, Type: "opened", Via: "spa", Src: "198.18.0.2", Allow: "198.18.0.2", Key: "laptop", Ports: "22", Until: t0.Add(30 * time.Second)},
		{Time: t0.Add(time.Second), Type: "rejected", Via: "spa", Src: "198.18.0.3", Reason: "bad signature"},
	}
	if err := s.AddKnockEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	got, err := s.KnockEvents(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Reason != "bad signature" || !got[0].Time.Equal(evs[1].Time) {
		t.Errorf("KnockEvents(1) = %+v; want the rejection", got)
	}
	got, _ = s.KnockEvents(ctx, 0)
	if len(got) != 2 || !got[0].Until.Equal(evs[0].Until) || got[0].Key != "laptop" {
		t.Errorf("KnockEvents(0) = %+v; want both, oldest first", got)
	}
}

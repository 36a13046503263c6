package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

func TestAppendResultJSONMatchesEncodingJSON(t *testing.T) {
	when := time.Date(2026, 11, 24, 3, 4, 5, 123456789, time.UTC)
	results := []scan.Result{
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22, Proto: portspec.TCP, State: scan.Open, Reason: scan.ReasonSynAck, RTT: 1234567 * time.Nanosecond, Service: "ssh", Banner: "SSH-2.0-OpenSSH_9.2", Time: when},
		{Addr: netip.MustParseAddr("fd00::2"), Port: 65535, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused},
		{Addr: netip.MustParseAddr("198.18.0.2"), Port: 0, Proto: portspec.UDP, State: scan.OpenFiltered, Reason: "no-response", RTT: 0},
		{Addr: netip.MustParseAddr("::1"), Port: 80, Proto: portspec.TCP, State: scan.Open, Reason: "syn-ack", RTT: 3 * time.Second, Banner: "HTTP/1.1 200 OK\r\n<html>\"q\" & \\ \x00\xff é", Service: "http", Time: when},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 1, Proto: portspec.TCP, State: scan.Filtered, Reason: "host-timeout", RTT: 400 * time.Nanosecond},
	}
	// Twice over, and each result twice in a row: the writer's copy of
	// the last address and time must never leak into the next line.
	var cached jsonText
	local := when.In(time.FixedZone("X", 3600))
	for i, r := range append(append(results, results...), scan.Result{Addr: results[0].Addr, Time: local}) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(true)
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		got := append(appendResultJSON(nil, r), '\n')
		if string(got) != want.String() {
			t.Errorf("appendResultJSON(%v:%d)\n got %s\nwant %s", r.Addr, r.Port, got, want.String())
		}
		for range 2 {
			if got := string(cached.appendResult(nil, r)) + "\n"; got != want.String() {
				t.Errorf("line %d, cached:\n got %s\nwant %s", i, got, want.String())
			}
		}
	}
}

func FuzzAppendResultJSON(f *testing.F) {
	f.Add("SSH-2.0-x", "ssh", int64(1500))
	f.Add("\x00\"\\<>&\u2028\xff", "h\ttp", int64(0))
	f.Fuzz(func(t *testing.T, banner, service string, rtt int64) {
		r := scan.Result{Addr: netip.MustParseAddr("127.0.0.1"), Port: 80, Proto: portspec.TCP, State: scan.Open,
			Reason: "syn-ack", RTT: time.Duration(rtt), Service: service, Banner: banner}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(true)
		enc.Encode(r)
		if got := string(appendResultJSON(nil, r)) + "\n"; got != want.String() {
			t.Errorf("got %q; want %q", got, want.String())
		}
	})
}

// A result written to a stream reaches the reader even when no more
// results follow (a slow scan), without Close.
func TestStreamWriterFlushesWhenQuiet(t *testing.T) {
	r, w := io.Pipe()
	sw, err := NewStreamWriter(w, FormatList)
	if err != nil {
		t.Fatal(err)
	}
	go sw.Write(scan.Result{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22, Proto: portspec.TCP, State: scan.Open})
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "127.0.0.1:22\n" {
		t.Errorf("read %q, %v; want 127.0.0.1:22", line, err)
	}
	sw.Close()
}

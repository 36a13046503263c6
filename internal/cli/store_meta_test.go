package cli

import (
	"encoding/json"
	"testing"

	"portolan/internal/store"
)

// TestScanMetaAssumeUp: a stored -Pn scan renders its hosts up ("user-set"),
// as nmap -Pn does; any other scan lets hosts that never answered be down.
func TestScanMetaAssumeUp(t *testing.T) {
	tests := []struct {
		name    string
		options string
		want    bool
	}{
		{"-Pn", `{"no_host_down":true}`, true},
		{"default", `{"rate":100}`, false},
		{"no options", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			si := store.ScanInfo{ID: 1, Options: json.RawMessage(tt.options)}
			if got := scanMeta(si).AssumeUp; got != tt.want {
				t.Errorf("scanMeta(options %s).AssumeUp = %v; want %v", tt.options, got, tt.want)
			}
		})
	}
}

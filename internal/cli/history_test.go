package cli

import (
	"testing"
	"time"

	"portolan/internal/output"
)

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "-"},
		{420 * time.Millisecond, "0.42s"},
		{12345 * time.Millisecond, "12.3s"},
		{4*time.Minute + 5*time.Second, "4m05s"},
		{2*time.Hour + 13*time.Minute + 59*time.Second, "2h13m"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.in); got != tt.want {
			t.Errorf("formatDuration(%v) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestScanFormat(t *testing.T) {
	tests := []struct {
		name    string
		json    bool
		flag    string
		want    output.ScanFormat
		wantErr bool
	}{
		{"default", false, "", output.FormatTable, false},
		{"--json", true, "", output.FormatJSON, false},
		{"--format xml", false, "xml", output.FormatXML, false},
		{"--json --format json", true, "json", output.FormatJSON, false},
		{"--json --format csv", true, "csv", "", true},
		{"unknown", false, "html", "", true},
	}
	for _, tt := range tests {
		got, err := scanFormat(&Globals{JSON: tt.json}, tt.flag)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: scanFormat = %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

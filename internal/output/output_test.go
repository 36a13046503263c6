package output

import (
	"bytes"
	"testing"
	"time"
)

func TestTableAlign(t *testing.T) {
	tests := []struct {
		name  string
		table Table
		want  string
	}{
		{
			name:  "left and right",
			table: Table{Header: []string{"PORT", "NAME"}, Rows: [][]string{{"22", "ssh"}, {"8080", "http-alt"}}, RightAlign: []int{0}},
			want:  "PORT  NAME\n  22  ssh\n8080  http-alt\n",
		},
		{
			name:  "no trailing spaces for empty last cells",
			table: Table{Header: []string{"A", "B"}, Rows: [][]string{{"xyz", ""}}},
			want:  "A    B\nxyz\n",
		},
		{
			name:  "unicode width by rune",
			table: Table{Rows: [][]string{{"é", "x"}, {"ab", "y"}}},
			want:  "é   x\nab  y\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.table.Write(&b, false); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("Write() = %q; want %q", b.String(), tt.want)
			}
		})
	}
}

func TestTableColor(t *testing.T) {
	var tb Table
	tb.Header = []string{"STATE"}
	tb.AddColored([]string{"open"}, []Color{Green})
	var b bytes.Buffer
	tb.Write(&b, true)
	want := "\x1b[1mSTATE\x1b[0m\n\x1b[32mopen\x1b[0m\n"
	if b.String() != want {
		t.Errorf("Write(color) = %q; want %q", b.String(), want)
	}
}

func TestColorEnabled(t *testing.T) {
	var b bytes.Buffer
	if ColorEnabled(&b, false) {
		t.Error("ColorEnabled(buffer) = true; want false (not a terminal)")
	}
}

func TestJSONLAndCSV(t *testing.T) {
	var b bytes.Buffer
	j := NewJSONL(&b)
	j.Write(map[string]int{"port": 22})
	j.Write(map[string]string{"name": "<ssh>"})
	if want := "{\"port\":22}\n{\"name\":\"<ssh>\"}\n"; b.String() != want {
		t.Errorf("JSONL = %q; want %q", b.String(), want)
	}
	b.Reset()
	WriteCSV(&b, []string{"port", "desc"}, [][]string{{"80", "World Wide Web, HTTP"}})
	if want := "port,desc\n80,\"World Wide Web, HTTP\"\n"; b.String() != want {
		t.Errorf("CSV = %q; want %q", b.String(), want)
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	off := NewProgress(&b, false)
	off.Update("x %d", 1)
	off.Done()
	if b.Len() != 0 {
		t.Errorf("disabled progress wrote %q", b.String())
	}
	now := time.Unix(0, 0)
	p := NewProgress(&b, true)
	p.now = func() time.Time { return now }
	p.Update("scanning 10%%")
	p.Update("dropped: too soon")
	now = now.Add(time.Second)
	p.Update("50%%")
	p.Done()
	if got, w := b.String(), "\rscanning 10%\r50%         \r   \r"; got != w {
		t.Errorf("progress = %q; want %q", got, w)
	}
}

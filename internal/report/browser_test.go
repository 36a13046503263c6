package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/testenv"
)

// The report is checked in a real browser: Debian's chromium, driven by
// its chromedriver over the WebDriver protocol (plain HTTP and JSON, so
// net/http is all the client needs).

// chromeArgs keep chromium off the network (this machine has none) and
// its state in a fresh profile.
var chromeArgs = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
	"--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1280,1000", "--font-render-hinting=none"}

// browser is a WebDriver session.
type browser struct {
	t    *testing.T
	base string // http://127.0.0.1:PORT/session/ID
}

// newBrowser starts chromedriver and a chromium session, both ended with
// the test. Missing binaries skip the test, or fail it under CI=true; a
// browser that does not start fails it.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	chromium := testenv.RequireCommand(t, "chromium")
	driver := testenv.RequireCommand(t, "chromedriver")
	var root string
	var log bytes.Buffer
	// chromedriver binds its port on 127.0.0.1 and ::1 and exits when
	// either is taken. The port is chosen free on every address, and a
	// start that loses the race to another process is retried.
	for try := 1; root == ""; try++ {
		log.Reset()
		port, exited := startDriver(t, driver, &log)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		deadline := time.Now().Add(30 * time.Second)
		for root == "" {
			resp, err := http.Get(base + "/status")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					root = base
					break
				}
			}
			if isClosed(exited) {
				if try == 5 {
					t.Fatalf("chromedriver exited 5 times:\n%s", log.String())
				}
				break // another port
			}
			if time.Now().After(deadline) {
				t.Fatalf("chromedriver did not answer in 30 s: %v\n%s", err, log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	profile := t.TempDir()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args":   append(chromeArgs, "--user-data-dir="+profile),
		},
		"goog:loggingPrefs": map[string]any{"browser": "ALL"},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	b := &browser{t: t, base: root}
	if err := b.call("POST", "/session", caps, &sess); err != nil {
		t.Fatalf("start chromium: %v\n%s", err, log.String())
	}
	b.base = root + "/session/" + sess.SessionID
	t.Cleanup(func() { b.call("DELETE", "", nil, nil) })
	return b
}

// call sends one WebDriver command and decodes its "value" into out.
func (b *browser) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, raw)
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, env.Value)
	}
	if out != nil {
		return json.Unmarshal(env.Value, out)
	}
	return nil
}

// startDriver starts chromedriver, ended with the test, on a port free on
// every address; exited is closed when it ends.
func startDriver(t *testing.T, driver string, log *bytes.Buffer) (port int, exited chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, driver, "--port="+strconv.Itoa(port), "--allowed-ips=127.0.0.1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start chromedriver: %v", err)
	}
	exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	return port, exited
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// open loads a file and waits until the report's script has drawn it.
func (b *browser) open(path string) {
	b.t.Helper()
	if err := b.call("POST", "/url", map[string]string{"url": "file://" + path}, nil); err != nil {
		b.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !b.evalBool(`return document.body.dataset.ready === "1"`) {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: the report did not finish drawing in 30 s; console: %v", path, b.console())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eval runs script in the page and decodes its result into out.
func (b *browser) eval(script string, out any) {
	b.t.Helper()
	if err := b.call("POST", "/execute/sync", map[string]any{"script": script, "args": []any{}}, out); err != nil {
		b.t.Fatalf("eval %q: %v", script, err)
	}
}

func (b *browser) evalBool(script string) bool {
	var v bool
	b.eval(script, &v)
	return v
}

func (b *browser) evalString(script string) string {
	var v string
	b.eval(script, &v)
	return v
}

// console returns the page's console messages and errors so far.
func (b *browser) console() []string {
	b.t.Helper()
	var entries []struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	if err := b.call("POST", "/se/log", map[string]string{"type": "browser"}, &entries); err != nil {
		b.t.Fatalf("read the console: %v", err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Level+": "+e.Message)
	}
	return out
}

// screenshot returns the viewport as an image.
func (b *browser) screenshot() (image.Image, []byte) {
	b.t.Helper()
	var s string
	if err := b.call("GET", "/screenshot", nil, &s); err != nil {
		b.t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		b.t.Fatal(err)
	}
	return img, raw
}

// imageDiff returns the share of pixels that differ by more than a small
// step in any channel (anti-aliasing and font hinting move a few), and an
// error when the sizes differ.
func imageDiff(a, b image.Image) (float64, error) {
	if a.Bounds() != b.Bounds() {
		return 1, fmt.Errorf("sizes differ: %v and %v", a.Bounds(), b.Bounds())
	}
	r := a.Bounds()
	diff := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, _ := a.At(x, y).RGBA()
			r2, g2, b2, _ := b.At(x, y).RGBA()
			d := max(absDiff(r1, r2), absDiff(g1, g2), absDiff(b1, b2)) >> 8
			if d > 48 {
				diff++
			}
		}
	}
	return float64(diff) / float64(r.Dx()*r.Dy()), nil
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// checkScreenshot compares img with the kept reference testdata/NAME; with
// PORTOLAN_UPDATE_GOLDEN=1 it writes the reference instead.
func checkScreenshot(t *testing.T, name string, img image.Image, raw []byte, tolerance float64) {
	t.Helper()
	ref := filepath.Join("testdata", name)
	if os.Getenv("PORTOLAN_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(ref, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.Open(ref)
	if err != nil {
		t.Fatalf("reference screenshot: %v (PORTOLAN_UPDATE_GOLDEN=1 writes it)", err)
	}
	defer f.Close()
	want, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := imageDiff(want, img)
	if err != nil || d > tolerance {
		got := filepath.Join(t.TempDir(), name)
		os.WriteFile(got, raw, 0o644)
		t.Errorf("screenshot differs from %s: %.2f%% of pixels (tolerance %.2f%%), %v; this run's is %s",
			ref, 100*d, 100*tolerance, err, got)
	}
}

func hasError(console []string) bool {
	for _, l := range console {
		if strings.HasPrefix(l, "SEVERE") || strings.HasPrefix(l, "ERROR") {
			return true
		}
	}
	return false
}

package cli

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestFleetManifest: the Indexed Job in dist/ is the one docs/fleet.md
// shows, parses as a Kubernetes Job whose completion index becomes the
// shard, and its arguments are a valid portolan scan (run here as a dry
// run, which sends nothing, with JOB_COMPLETION_INDEX as Kubernetes sets
// it).
func TestFleetManifest(t *testing.T) {
	raw, err := os.ReadFile("../../dist/portolan-fleet-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(raw)+"```") {
		t.Error("dist/portolan-fleet-job.yaml differs from the manifest in docs/fleet.md")
	}
	var job struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int    `yaml:"completions"`
			Parallelism    int    `yaml:"parallelism"`
			Template       struct {
				Spec struct {
					RestartPolicy string `yaml:"restartPolicy"`
					Containers    []struct {
						Image string   `yaml:"image"`
						Args  []string `yaml:"args"`
						Env   []struct {
							Name string `yaml:"name"`
						} `yaml:"env"`
						VolumeMounts []struct {
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &job); err != nil {
		t.Fatalf("parse the manifest: %v", err)
	}
	s := job.Spec
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || s.CompletionMode != "Indexed" || s.Completions != 16 ||
		s.Template.Spec.RestartPolicy != "Never" || len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("manifest: %+v; want an Indexed batch/v1 Job of 16 completions, one container", job)
	}
	c := s.Template.Spec.Containers[0]
	if len(c.Env) == 0 || c.Env[0].Name != "PORTOLAN_DB" {
		t.Errorf("manifest: env %+v; want PORTOLAN_DB from a secret", c.Env)
	}
	if len(c.VolumeMounts) == 0 || c.VolumeMounts[0].MountPath != "/var/lib/portolan" {
		t.Errorf("manifest: mounts %+v; want the spill directory /var/lib/portolan of the Containerfile", c.VolumeMounts)
	}
	// The completion index is 0-based: pod 3 scans shard 4/16.
	t.Setenv("JOB_COMPLETION_INDEX", "3")
	var out, errOut bytes.Buffer
	args := append(append([]string{}, c.Args...), "--dry-run")
	if code := Main(context.Background(), args, nil, &out, &errOut); code != ExitOK {
		t.Fatalf("portolan %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	}
	if want := "probes    1048576 of a space of 16777216 (shard 4/16)"; !strings.Contains(out.String(), want) {
		t.Errorf("the manifest's scan as pod 3 plans:\n%s\nwant %q", out.String(), want)
	}
}

// TestContainerfile: the image copies the binary make build writes, and
// runs the copy.
func TestContainerfile(t *testing.T) {
	cf, err := os.ReadFile("../../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	built := regexp.MustCompile(`CGO_ENABLED=0 \$\(GO\) build .*-o (\S+) \./cmd/portolan`).FindSubmatch(mk)
	copied := regexp.MustCompile(`(?m)^COPY (\S+) (\S+)$`).FindSubmatch(cf)
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]$`).FindSubmatch(cf)
	if built == nil || copied == nil || entry == nil {
		t.Fatalf("Makefile build %q, Containerfile COPY %q, ENTRYPOINT %q: want all three", built, copied, entry)
	}
	if string(copied[1]) != string(built[1]) {
		t.Errorf("the Containerfile copies %s; make build writes %s", copied[1], built[1])
	}
	if string(entry[1]) != string(copied[2]) {
		t.Errorf("the Containerfile runs %s; it copies the binary to %s", entry[1], copied[2])
	}
	if !regexp.MustCompile(`(?m)^FROM scratch$`).Match(cf) {
		t.Error("the Containerfile is not FROM scratch: the static binary needs nothing else")
	}
}

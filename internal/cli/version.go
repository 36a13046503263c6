package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func init() { register(newVersionCmd) }

// Version is set at build time with -ldflags "-X portolan/internal/cli.Version=v1.2.3".
var Version = "dev"

type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Time      string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified,omitempty"` // built from a work tree with uncommitted changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// buildVersion reads what the build recorded: Version when set with
// -ldflags, else the module version Go stamps from the VCS (a tag, or a
// pseudo-version), and the revision, its time and whether the tree was
// modified.
func buildVersion() versionInfo {
	v := versionInfo{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one-line form: "v1.2.3 (0123456789ab, modified) go1.26 linux/amd64".
func (v versionInfo) String() string {
	var b strings.Builder
	b.WriteString(v.Version)
	if v.Commit != "" {
		fmt.Fprintf(&b, " (%.12s", v.Commit)
		if v.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " %s %s", v.GoVersion, v.Platform)
	return b.String()
}

func newVersionCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print portolan's version",
		Long:    "Print portolan's version, the VCS revision it was built from, and the Go version and platform.",
		Example: "  portolan version\n  portolan --version\n  portolan version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if g.JSON {
				return writeJSON(g, v)
			}
			fmt.Fprintf(g.io.Out, "portolan %s\n", v)
			return nil
		},
	}
}

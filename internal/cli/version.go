package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { register(newVersionCmd) }

// Version is set at build time with -ldflags "-X portolan/internal/cli.Version=v1.2.3".
var Version = "dev"

type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func newVersionCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print portolan's version",
		Example: "  portolan version\n  portolan version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v.Commit = s.Value
					}
				}
			}
			if g.JSON {
				return writeJSON(g, v)
			}
			fmt.Fprintf(g.io.Out, "portolan %s", v.Version)
			if v.Commit != "" {
				fmt.Fprintf(g.io.Out, " (%.12s)", v.Commit)
			}
			fmt.Fprintf(g.io.Out, " %s %s\n", v.GoVersion, v.Platform)
			return nil
		},
	}
}

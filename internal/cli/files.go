package cli

import (
	"errors"
	"io/fs"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// inputFileFlag is the annotation of flags that name a file portolan
// reads (a config, a profile, a target list): shells complete file names
// for them, and a test walks every command to check that a file that
// cannot be opened is bad input (exit 2), not a failed operation.
const inputFileFlag = "portolan_input_file"

// markFiles has shells complete file names for the named flags of set;
// input says they are read, not written.
func markFiles(set *pflag.FlagSet, input bool, names ...string) {
	for _, n := range names {
		_ = set.SetAnnotation(n, cobra.BashCompFilenameExt, []string{})
		if input {
			_ = set.SetAnnotation(n, inputFileFlag, []string{"true"})
		}
	}
}

// fileErr makes a file the user named that cannot be opened or created
// (missing, a directory, no permission) a usage error: the input is
// wrong, and exit 2 says so. Errors while reading or writing an open file
// stay failures.
func fileErr(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok && pe.Op == "open" {
		return usageErr(err)
	}
	return err
}

package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
	"portolan/internal/output"
	"portolan/internal/scan"
	"portolan/internal/sockets"
)

// addCompletions gives shells the values of flags and arguments: formats,
// states, protocols, balancing methods, stored scan ids and the firewall's
// rule numbers. Cobra's scripts (portolan completion bash|zsh|fish) ask
// the binary through its hidden __complete command, so the values are the
// ones this build knows.
func addCompletions(root *cobra.Command) {
	var formats, scanStates, sockStates []string
	for _, f := range output.ScanFormats {
		formats = append(formats, string(f))
	}
	for s := scan.Open; s <= scan.ClosedFiltered; s++ {
		scanStates = append(scanStates, s.String())
	}
	for s := sockets.Established; s <= sockets.Closing; s++ {
		sockStates = append(sockStates, strings.ToLower(strings.ReplaceAll(s.String(), "_", "-")))
	}
	sockStates = append(sockStates, "unconn")
	protos := []string{"tcp", "udp", "sctp", "dccp"}

	flagValues(root, "scan", "format", formats...)
	flagValues(root, "scan", "scan-type", "T\tTCP connect", "n\thost discovery only")
	flagValues(root, "show", "format", formats...)
	flagValues(root, "show", "state", scanStates...)
	flagValues(root, "ls", "state", sockStates...)
	flagValues(root, "lookup", "proto", protos...)
	flagValues(root, "forward", "balance", "round-robin", "least-conn", "source-hash", "first-healthy")
	bashWithoutPackage(root)
	if c, _, err := root.Find([]string{"show"}); err == nil && c.Name() == "show" {
		c.ValidArgsFunction = completeScanIDs
	}
	if c, _, err := root.Find([]string{"firewall", "delete"}); err == nil && c.Name() == "delete" {
		c.ValidArgsFunction = completeRuleNumbers
	}
}

// bashShim stands in for the one function cobra's bash script takes from
// the bash-completion package, when the package is not there: completion
// then works in a bare bash, only without re-joining words that bash
// splits at '=' and ':' (write --format json, not --format=json).
const bashShim = `# portolan: without the bash-completion package (apt-get install
# bash-completion), a minimal stand-in for its _get_comp_words_by_ref.
if ! declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
_get_comp_words_by_ref() {
    while [ $# -gt 0 ]; do
        case $1 in
        -n) shift 2 ;;
        cur) cur=${COMP_WORDS[COMP_CWORD]}; shift ;;
        prev) prev=${COMP_WORDS[COMP_CWORD-1]}; shift ;;
        words) words=("${COMP_WORDS[@]}"); shift ;;
        cword) cword=$COMP_CWORD; shift ;;
        *) shift ;;
        esac
    done
}
fi
`

// bashWithoutPackage makes "completion bash" write the shim before
// cobra's script.
func bashWithoutPackage(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	bash, _, err := root.Find([]string{"completion", "bash"})
	if err != nil || bash.Name() != "bash" {
		return
	}
	bash.Long += "\n\nWithout the bash-completion package the script still works, with one limit: it\ndoes not re-join words that bash splits at '=' and ':' (write --format json,\nnot --format=json). apt-get install bash-completion lifts it.\n"
	bash.RunE = func(cmd *cobra.Command, _ []string) error {
		noDesc, _ := cmd.Flags().GetBool("no-descriptions")
		if _, err := io.WriteString(cmd.OutOrStdout(), bashShim); err != nil {
			return err
		}
		return root.GenBashCompletionV2(cmd.OutOrStdout(), !noDesc)
	}
}

// flagValues completes the flag of the command at path with vals
// ("value\tdescription" gives a description where the shell shows one).
func flagValues(root *cobra.Command, path, flag string, vals ...string) {
	c, _, err := root.Find(strings.Fields(path))
	if err != nil || c.Flags().Lookup(flag) == nil {
		return
	}
	_ = c.RegisterFlagCompletionFunc(flag, func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return vals, cobra.ShellCompDirectiveNoFileComp
	})
}

// completeScanIDs offers the stored scans, newest first, described by
// their targets and start time. It never creates a store.
func completeScanIDs(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	path, _ := cmd.Flags().GetString("db")
	db, err := DBFlags{Path: path}.open(ctx, false)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer db.Close()
	scans, err := db.Scans(ctx, 50)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]cobra.Completion, 0, len(scans))
	for _, si := range scans {
		out = append(out, fmt.Sprintf("%d\t%s, %s", si.ID, si.Targets, si.Started.Local().Format("2006-01-02 15:04")))
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeRuleNumbers offers the rule numbers of portolan's table, each
// described by its rule. Reading the table needs CAP_NET_ADMIN; without
// it there is nothing to offer. It reads without a session, so it never
// takes the lock or recovers a rollback.
func completeRuleNumbers(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	nsName, _ := cmd.Flags().GetString("netns")
	ns, err := firewall.OpenNetns(nsName)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer ns.Close()
	fw := &firewall.Firewall{}
	if nsName != "" {
		fw.NetNS = ns.FD()
	}
	tab, err := fw.Read(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]cobra.Completion, 0, len(tab.Ruleset.Rules))
	for i := range tab.Ruleset.Rules {
		out = append(out, strconv.Itoa(i+1)+"\t"+tab.Ruleset.Rules[i].String())
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// Command buildd-agent is the build-farm worker daemon Launchpad's
// buildd-manager drives over XML-RPC (see `buildd-agent run`), and its
// tools: `config check`, `version`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// subcommands make the command line; other files add theirs in init().
var subcommands = []func() *cobra.Command{newRunCommand, newConfigCommand, newVersionCommand}

// errReported is returned by a command that has already told the user what
// went wrong: the exit status is 1 and nothing more is printed.
var errReported = errors.New("failure already reported")

// newRootCommand makes the command line for args. For `run`, the daemon,
// it holds the run command alone: the other tools' commands, with their
// dozens of flags, would be built at start and kept for the life of the
// process for nothing (≈ 0.2–0.3 MB of idle RSS).
func newRootCommand(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:   "buildd-agent",
		Short: "Build-farm worker agent for Launchpad's buildd-manager",
		Long: "buildd-agent is a build-farm worker: it answers Launchpad's buildd-manager on\n" +
			"XML-RPC (/rpc) and serves its file cache (/filecache/), like launchpad-buildd.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if len(args) > 0 && args[0] == "run" {
		root.AddCommand(newRunCommand())
		return root
	}
	for _, sub := range subcommands {
		root.AddCommand(sub())
	}
	return root
}

// execute runs the command line and returns the exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(args)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(stderr, "buildd-agent: %v\n", err)
		}
		return 1
	}
	return 0
}

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

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

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "buildd-agent",
		Short: "Build-farm worker agent for Launchpad's buildd-manager",
		Long: "buildd-agent is a build-farm worker: it answers Launchpad's buildd-manager on\n" +
			"XML-RPC (/rpc) and serves its file cache (/filecache/), like launchpad-buildd.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, sub := range subcommands {
		root.AddCommand(sub())
	}
	return root
}

// execute runs the command line and returns the exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
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

package main

import (
	"fmt"
	"runtime"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/spf13/cobra"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version (status()'s builder_version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "buildd-agent %s (%s %s/%s)\n",
				agent.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/BurntSushi/toml"
	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/spf13/cobra"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or show a configuration file",
		Args:  cobra.NoArgs,
	}
	var syntaxOnly bool
	check := &cobra.Command{
		Use:   "check [--syntax-only] FILE",
		Short: "Report every problem in a configuration file as FILE:LINE: key: message",
		Long: "Report every problem in a configuration file as FILE:LINE: key: message, then\n" +
			"check this machine for it (unless --syntax-only): the build home and state\n" +
			"directory must be reachable by the chroot backend's mapped ids and the sbuild\n" +
			"user (an error), and the sbuild user should exist (a warning, on stderr).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("cannot read configuration: %w", err)
			}
			cfg, err := agent.ParseConfig(data)
			if err != nil {
				if printProblems(cmd.OutOrStdout(), path, err) {
					return errReported
				}
				return err
			}
			if !syntaxOnly {
				errs, warns := hostProblems(cfg)
				for _, w := range warns {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s: warning: %s\n", path, w.Key, w.Msg)
				}
				if len(errs) > 0 {
					printProblems(cmd.OutOrStdout(), path, agent.ConfigErrors(errs))
					return errReported
				}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return err
		},
	}
	check.Flags().BoolVar(&syntaxOnly, "syntax-only", false, "check the file only, not this machine")
	cmd.AddCommand(check)
	var showPath string
	show := &cobra.Command{
		Use:   "show [--config FILE]",
		Short: "Print the configuration the agent would run with (defaults and derived values filled in)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(showPath)
			if err != nil {
				if printProblems(cmd.ErrOrStderr(), showPath, err) {
					return errReported
				}
				return err
			}
			return toml.NewEncoder(cmd.OutOrStdout()).Encode(cfg)
		},
	}
	show.Flags().StringVarP(&showPath, "config", "c", "", "configuration file (default: the built-in configuration)")
	cmd.AddCommand(show)
	return cmd
}

// loadConfig reads path, or the built-in configuration for "".
func loadConfig(path string) (*agent.Config, error) {
	if path == "" {
		return agent.ParseConfig(nil)
	}
	return agent.LoadConfig(path)
}

// printProblems writes a configuration's problems, one per line, as
// "FILE:LINE: key: message" (the form editors jump to), and reports
// whether err was such a list.
func printProblems(w io.Writer, path string, err error) bool {
	var problems agent.ConfigErrors
	if !errors.As(err, &problems) {
		return false
	}
	if path == "" {
		path = "(built-in configuration)"
	}
	for _, p := range problems {
		loc := path
		if p.Line > 0 {
			loc += ":" + strconv.Itoa(p.Line)
		}
		if p.Key != "" {
			loc += ": " + p.Key
		}
		fmt.Fprintf(w, "%s: %s\n", loc, p.Msg)
	}
	return true
}

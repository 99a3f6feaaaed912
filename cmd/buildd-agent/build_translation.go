package main

// `buildd-agent build translation-templates`: generate a branch's
// translation templates with the farm's translation-templates manager
// (intltool in a user-namespace chroot from the given tarball, the
// reference's POT rules, translation-templates.tar.gz).

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() { buildSubcommands = append(buildSubcommands, newBuildTranslationTemplatesCmd) }

type localTranslationFlags struct {
	config, chroot, output, series, arch string
	gitRepository, gitPath, branch       string
	archives, keys                       []string
}

func newBuildTranslationTemplatesCmd() *cobra.Command {
	var f localTranslationFlags
	cmd := &cobra.Command{
		Use:   "translation-templates (--git-repository URL [--git-path REF] | --branch URL) --chroot FILE [flags]",
		Short: "Generate translation templates from a branch as the farm would (intltool)",
		Long: `Generate the PO templates of a git or Bazaar branch with the farm's
translation-templates manager: the branch is checked out on the host (go-git,
or Breezy for --branch) and streamed into a user-namespace chroot made from
the given Launchpad chroot tarball, where intltool is installed from the
chroot's archives (or --archive) and every intltool PO directory gets its
template. translation-templates.tar.gz, the buildlog and summary.json are
written to --output.`,
		Example: `  sudo buildd-agent build translation-templates \
      --git-repository https://git.example.com/hello.git --git-path main \
      --chroot noble-amd64-chroot.tar.gz --series noble --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalTranslationTemplates(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, "translation-templates", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("translation-templates"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.gitRepository, "git-repository", "", "git repository to generate templates from")
	fl.StringVar(&f.gitPath, "git-path", "", "branch, tag or ref in --git-repository (default: HEAD)")
	fl.StringVar(&f.branch, "branch", "", "Bazaar branch to generate templates from (instead of --git-repository)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in (required)")
	addLocalArchiveFlags(cmd, &f.archives, &f.keys)
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	return cmd
}

func addLocalArchiveFlags(cmd *cobra.Command, archives, keys *[]string) {
	fl := cmd.Flags()
	fl.StringArrayVar(archives, "archive", nil, "sources.list line of an archive to install from (repeatable; default: the chroot's own)")
	fl.StringArrayVar(keys, "trusted-key", nil, "OpenPGP public key file (armoured or binary) the archives are signed with (repeatable)")
}

// localChrootRequest is a request for a build in the chroot tarball,
// cached by its SHA-1 as under the daemon.
func localChrootRequest(chroot string) (builders.Request, error) {
	if chroot == "" {
		return builders.Request{}, errors.New("--chroot is required")
	}
	sum, err := fileSHA1(chroot)
	if err != nil {
		return builders.Request{}, fmt.Errorf("cannot read --chroot: %w", err)
	}
	return builders.Request{Chroot: target.Image{Type: "chroot", Path: chroot, SHA1: sum}}, nil
}

func runLocalTranslationTemplates(ctx context.Context, f localTranslationFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if (f.gitRepository == "") == (f.branch == "") {
		return 0, errors.New("give one of --git-repository and --branch")
	}
	// These builds run on the chroot backend only: no LXD set-up.
	cfg, arch, err := localConfig(f.config, "chroot", f.arch)
	if err != nil {
		return 0, err
	}
	req, err := localChrootRequest(f.chroot)
	if err != nil {
		return 0, err
	}
	args := map[string]any{"series": f.series, "arch_tag": arch}
	if f.branch != "" {
		args["branch"] = f.branch
	} else {
		args["git_repository"] = f.gitRepository
		if f.gitPath != "" {
			args["git_path"] = f.gitPath
		}
	}
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return 0, err
	}
	req.Args = args
	return runLocalBuild(ctx, cfg, "translation-templates", req, arch, f.output, stdout, stderr)
}

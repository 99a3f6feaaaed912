package main

// `buildd-agent build sourcepackagerecipe`: build a source package from a
// git-build-recipe recipe with the farm's sourcepackagerecipe manager
// (git-build-recipe on the host, build-dep and dpkg-buildpackage -S in a
// user-namespace chroot from the given tarball).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func init() { buildSubcommands = append(buildSubcommands, newBuildRecipeCmd) }

type localRecipeFlags struct {
	config, recipe, chroot, output, series, suite, arch, component, purpose string
	distroseries, authorName, authorEmail                                   string
	archives, keys                                                          []string
	bzr                                                                     bool
}

func newBuildRecipeCmd() *cobra.Command {
	var f localRecipeFlags
	cmd := &cobra.Command{
		Use:   "sourcepackagerecipe --recipe FILE --chroot FILE [flags]",
		Short: "Build a source package from a recipe as the farm would (git-build-recipe)",
		Long: `Build a source package from a git-build-recipe recipe with the farm's
sourcepackagerecipe manager: git-build-recipe assembles the tree on the host
with the farm's arguments, the tree is streamed into a user-namespace chroot
made from the given Launchpad chroot tarball, its build-dependencies are
installed from the chroot's archives (or --archive) and dpkg-buildpackage -S
makes the source package. The _source.changes, the files it lists, the
manifest, the buildlog and summary.json (with "dependencies" for a DEPFAIL)
are written to --output.`,
		Example: `  sudo buildd-agent build sourcepackagerecipe --recipe hello.recipe \
      --chroot noble-amd64-chroot.tar.gz --series noble --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalRecipe(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, "sourcepackagerecipe", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("sourcepackagerecipe"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.recipe, "recipe", "", "the recipe file (required)")
	fl.BoolVar(&f.bzr, "bzr", false, "the recipe is a bzr-builder one (the farm cannot build those: the build fails at once)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in (required)")
	addLocalArchiveFlags(cmd, &f.archives, &f.keys)
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot")
	fl.StringVar(&f.distroseries, "distribution", "", "the changelog's distribution (distroseries_name; default: the series)")
	fl.StringVar(&f.suite, "suite", "", "suite written to /CurrentlyBuilding (default: the series)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	fl.StringVar(&f.component, "component", "universe", "component written to /CurrentlyBuilding (ogrecomponent)")
	fl.StringVar(&f.purpose, "purpose", "PPA", "archive purpose written to /CurrentlyBuilding")
	fl.StringVar(&f.authorName, "author-name", "Launchpad Package Builder", "the changelog entry's author name")
	fl.StringVar(&f.authorEmail, "author-email", "noreply@launchpad.net", "the changelog entry's author email")
	return cmd
}

func runLocalRecipe(ctx context.Context, f localRecipeFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.recipe == "" {
		return 0, errors.New("--recipe is required")
	}
	text, err := os.ReadFile(f.recipe)
	if err != nil {
		return 0, fmt.Errorf("cannot read --recipe: %w", err)
	}
	cfg, arch, err := localConfig(f.config, "chroot", f.arch)
	if err != nil {
		return 0, err
	}
	req, err := localChrootRequest(f.chroot)
	if err != nil {
		return 0, err
	}
	suite := f.suite
	if suite == "" {
		suite = f.series
	}
	args := map[string]any{
		"series": f.series, "arch_tag": arch, "suite": suite, "ogrecomponent": f.component,
		"archive_purpose": f.purpose, "author_name": f.authorName, "author_email": f.authorEmail,
		"recipe_text": string(text), "git": !f.bzr,
	}
	if f.distroseries != "" {
		args["distroseries_name"] = f.distroseries
	}
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return 0, err
	}
	req.Args = args
	return runLocalBuild(ctx, cfg, "sourcepackagerecipe", req, arch, f.output, stdout, stderr)
}

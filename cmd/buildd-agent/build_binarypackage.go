package main

// `buildd-agent build binarypackage`: build a Debian source package into
// binary packages with the farm's binarypackage manager (sbuild in unshare
// mode, the same build root, archives, status analysis and gathering).

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/debian"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() { buildSubcommands = append(buildSubcommands, newBuildBinaryPackageCmd) }

type localBinaryPackageFlags struct {
	config, dsc, chroot, output, series, suite, arch, component, purpose string
	archives, keys                                                       []string
	archIndep, debugSymbols                                              bool
}

func newBuildBinaryPackageCmd() *cobra.Command {
	var f localBinaryPackageFlags
	cmd := &cobra.Command{
		Use:   "binarypackage --dsc FILE.dsc --chroot FILE [flags]",
		Short: "Build binary packages from a source package as the farm would (sbuild)",
		Long: `Build a Debian source package with the farm's binarypackage manager: sbuild
in unshare mode as the configured unprivileged user ([sbuild] user), in the
given Launchpad chroot tarball, with the archives and keys the build master
would send. The .dsc's files are read from the .dsc's directory. The results
(the .changes and every file it lists), the buildlog and summary.json (with
"dependencies" for a DEPFAIL) are written to --output.`,
		Example: `  sudo buildd-agent build binarypackage --dsc hello_2.10-3.dsc \
      --chroot noble-amd64-chroot.tar.gz --series noble \
      --archive "deb http://archive.ubuntu.com/ubuntu noble main" --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalBinaryPackage(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, "binarypackage", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("binarypackage"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.dsc, "dsc", "", "the source package's .dsc (its files next to it) (required)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in (required)")
	fl.StringArrayVar(&f.archives, "archive", nil, "sources.list line of an archive to build against (repeatable; default: the chroot's own)")
	fl.StringArrayVar(&f.keys, "trusted-key", nil, "OpenPGP public key file (armoured or binary) the archives are signed with (repeatable)")
	fl.BoolVar(&f.archIndep, "arch-indep", false, "also build the architecture-independent packages (sbuild -A)")
	fl.BoolVar(&f.debugSymbols, "debug-symbols", false, "keep the -dbgsym packages (no DEB_BUILD_OPTIONS=noautodbgsym)")
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot")
	fl.StringVar(&f.suite, "suite", "", "suite to build for, e.g. noble-updates (default: the series)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	fl.StringVar(&f.component, "component", "main", "the source's component (ogrecomponent)")
	fl.StringVar(&f.purpose, "purpose", "PRIMARY", "archive purpose written to /CurrentlyBuilding (PRIMARY, PPA, ...)")
	return cmd
}

// binaryPackageBuildArgs turns the flags into the build() arguments
// buildd-manager would send.
func binaryPackageBuildArgs(f localBinaryPackageFlags, arch string) (map[string]any, error) {
	suite := f.suite
	if suite == "" {
		suite = f.series
	}
	args := map[string]any{
		"series":              f.series,
		"suite":               suite,
		"arch_tag":            arch,
		"ogrecomponent":       f.component,
		"archive_purpose":     f.purpose,
		"arch_indep":          f.archIndep,
		"build_debug_symbols": f.debugSymbols,
	}
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return nil, err
	}
	return args, nil
}

// dscFilemap is the filemap buildd-manager would send: the .dsc and every
// file it lists, from the .dsc's directory.
func dscFilemap(dscPath string) (map[string]string, error) {
	f, err := os.Open(dscPath)
	if err != nil {
		return nil, fmt.Errorf("cannot open --dsc: %w", err)
	}
	defer f.Close()
	d, err := debian.ParseDsc(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dscPath, err)
	}
	files := map[string]string{filepath.Base(dscPath): dscPath}
	entries := d.ChecksumsSha256
	if len(entries) == 0 {
		entries = d.Files
	}
	for _, e := range entries {
		p := filepath.Join(filepath.Dir(dscPath), e.Name)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s lists %s: %w", filepath.Base(dscPath), e.Name, err)
		}
		files[e.Name] = p
	}
	return files, nil
}

func fileSHA1(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func runLocalBinaryPackage(ctx context.Context, f localBinaryPackageFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.dsc == "" || f.chroot == "" {
		return 0, errors.New("--dsc and --chroot are required")
	}
	cfg, arch, err := localConfig(f.config, "", f.arch)
	if err != nil {
		return 0, err
	}
	args, err := binaryPackageBuildArgs(f, arch)
	if err != nil {
		return 0, err
	}
	files, err := dscFilemap(f.dsc)
	if err != nil {
		return 0, err
	}
	// The repacked chroot is cached by the tarball's SHA-1, as under the daemon.
	sum, err := fileSHA1(f.chroot)
	if err != nil {
		return 0, fmt.Errorf("cannot read --chroot: %w", err)
	}
	req := builders.Request{Chroot: target.Image{Type: "chroot", Path: f.chroot, SHA1: sum}, Files: files, Args: args}
	return runLocalBuild(ctx, cfg, "binarypackage", req, arch, f.output, stdout, stderr)
}

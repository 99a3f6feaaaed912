package main

// `buildd-agent build livefs`: build a live filesystem with the farm's
// livefs manager (livecd-rootfs's auto scripts under live-build in a
// privileged LXD container made from the given chroot tarball).

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/cobra"
)

func init() { buildSubcommands = append(buildSubcommands, newBuildLiveFSCmd) }

type localLiveFSFlags struct {
	config, chroot, output, series, arch, project, subproject, subarch, pocket string
	datestamp, imageFormat, locale, channel, repoSnapshot, snapshotService     string
	cohortKey                                                                  string
	extraPPAs, extraSnaps, imageTargets, archives, keys                        []string
	debug, fastCleanup                                                         bool
}

func newBuildLiveFSCmd() *cobra.Command {
	var f localLiveFSFlags
	cmd := &cobra.Command{
		Use:   "livefs --project PROJECT --chroot FILE [flags]",
		Short: "Build a live filesystem as the farm would (livecd-rootfs and live-build)",
		Long: `Build a live filesystem with the farm's livefs manager: a privileged LXD
container from the given chroot tarball, livecd-rootfs installed from its
archives (or --archive), livecd-rootfs's auto scripts linked into /build,
lb clean --purge, lb config and lb build with the farm's environment
(PROJECT, SUITE, NOW, IMAGEFORMAT, PROPOSED, …). The /build/livecd.* files,
the buildlog and summary.json are written to --output.`,
		Example: `  sudo buildd-agent build livefs --project ubuntu-cpc --series noble \
      --chroot noble-amd64-chroot.tar.gz --datestamp 20250101-000000 --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalLiveFS(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, "livefs", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("livefs"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in (required)")
	addLocalArchiveFlags(cmd, &f.archives, &f.keys)
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot (SUITE)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (ARCH; default: the first of [builder] architectures)")
	fl.StringVar(&f.project, "project", "", "livecd-rootfs project (PROJECT; required)")
	fl.StringVar(&f.subproject, "subproject", "", "subproject (SUBPROJECT)")
	fl.StringVar(&f.subarch, "subarch", "", "subarchitecture (SUBARCH)")
	fl.StringVar(&f.pocket, "pocket", "release", `pocket ("proposed" sets PROPOSED=1)`)
	fl.StringVar(&f.datestamp, "datestamp", "", "date stamp (NOW)")
	fl.StringVar(&f.imageFormat, "image-format", "", "image format (IMAGEFORMAT)")
	fl.StringVar(&f.locale, "locale", "", "build with ubuntu-defaults-image for this locale instead of live-build")
	fl.StringArrayVar(&f.extraPPAs, "extra-ppa", nil, "additional PPA (EXTRA_PPAS; repeatable)")
	fl.StringArrayVar(&f.extraSnaps, "extra-snap", nil, "additional snap (EXTRA_SNAPS; repeatable)")
	fl.StringVar(&f.channel, "channel", "", "snap channel (CHANNEL)")
	fl.StringArrayVar(&f.imageTargets, "image-target", nil, "image target (IMAGE_TARGETS; repeatable)")
	fl.StringVar(&f.repoSnapshot, "repo-snapshot-stamp", "", "package repository snapshot (REPO_SNAPSHOT_STAMP)")
	fl.StringVar(&f.snapshotService, "snapshot-service-timestamp", "", "snapshot service time stamp (SNAPSHOT_SERVICE_TIMESTAMP)")
	fl.StringVar(&f.cohortKey, "cohort-key", "", "snap cohort key (COHORT_KEY)")
	fl.BoolVar(&f.debug, "debug", false, "live-build debugging (set -x)")
	fl.BoolVar(&f.fastCleanup, "fast-cleanup", false, "leave the container to the machine's end")
	return cmd
}

// liveFSBuildArgs are the build() arguments buildd-manager would send.
func liveFSBuildArgs(f localLiveFSFlags, arch string) map[string]any {
	args := map[string]any{"series": f.series, "arch_tag": arch, "project": f.project, "pocket": f.pocket,
		"debug": f.debug, "fast_cleanup": f.fastCleanup}
	for k, v := range map[string]string{"subproject": f.subproject, "subarch": f.subarch, "datestamp": f.datestamp,
		"image_format": f.imageFormat, "locale": f.locale, "channel": f.channel, "repo_snapshot_stamp": f.repoSnapshot,
		"snapshot_service_timestamp": f.snapshotService, "cohort-key": f.cohortKey} {
		if v != "" {
			args[k] = v
		}
	}
	for k, v := range map[string][]string{"extra_ppas": f.extraPPAs, "extra_snaps": f.extraSnaps, "image_targets": f.imageTargets} {
		if len(v) > 0 {
			l := make([]any, len(v))
			for i, s := range v {
				l[i] = s
			}
			args[k] = l
		}
	}
	return args
}

func runLocalLiveFS(ctx context.Context, f localLiveFSFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.project == "" {
		return 0, errors.New("--project is required")
	}
	req, err := localChrootRequest(f.chroot)
	if err != nil {
		return 0, err
	}
	cfg, arch, err := localConfig(f.config, "", f.arch)
	if err != nil {
		return 0, err
	}
	args := liveFSBuildArgs(f, arch)
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return 0, err
	}
	req.Args = args
	return runLocalBuild(ctx, cfg, "livefs", req, arch, f.output, stdout, stderr)
}

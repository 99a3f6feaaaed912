package builders

// The livefs manager: launchpad-buildd's LiveFilesystemBuildManager
// (lpbuildd/livefs.py) and its in-target buildlivefs operation
// (lpbuildd/target/build_livefs.py) in one. livecd-rootfs drives
// live-build (lb) in a privileged LXD container, the only kind of target in
// which lb can bootstrap a root and make image files (loop devices, mount).
//
// The reference's command line (--project, --subarch, --proposed, …) is not
// kept as such: each argument goes straight to where buildlivefs puts it,
// lb config's or lb build's environment or ubuntu-defaults-image's argv.
//
//	what failed                                   reference             status
//	-------------------------------------------------------------------------------
//	making, creating or starting the target       unpack/mount ≠ 0      CHROOTFAIL
//	archives, trusted_keys, apt-get update        sources/keys ≠ 0      CHROOTFAIL
//	apt-get install livecd-rootfs, snap store     buildlivefs exit 200  PACKAGEFAIL
//	  proxy, ubuntu-defaults-builder
//	snap install hello                            ignored               (logged)
//	rm/mkdir/ln, lb clean/config/build,           buildlivefs exit 201  PACKAGEFAIL
//	  ubuntu-defaults-image exit ≠ 0
//	a command cannot be run at all                in-target dies        BUILDERFAIL
//	gathering results fails                       "Failed to gather…"   PACKAGEFAIL
//	stopping or removing the target fails         umount/remove ≠ 0     BUILDERFAIL
//	abort                                         reaped                ABORTED
//	everything succeeded                          exit 0, gathered      OK, with /build/livecd.*

import (
	"context"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() { Register("livefs", NewLiveFSManager) }

// livefsAutoScripts are the live-build auto/ scripts livecd-rootfs ships,
// linked into /build/auto as the reference does.
var livefsAutoScripts = []string{"config", "build", "clean"}

// LiveFSAutoDir is where livecd-rootfs keeps them.
const LiveFSAutoDir = "/usr/share/livecd-rootfs/live-build/auto"

// LiveFSArgs are the livefs manager's build arguments (buildd-manager's
// livefs metadata plus pocket and datestamp). Metadata keys the reference
// does not read (lb_args and others) are ignored, as there.
type LiveFSArgs struct {
	Common                   CommonArgs
	Project                  string
	Subproject               string
	Subarch                  string
	Pocket                   string
	Datestamp                string
	ImageFormat              string
	Locale                   string
	ExtraPPAs                []string
	ExtraSnaps               []string
	Channel                  string
	ImageTargets             []string
	RepoSnapshotStamp        string
	SnapshotServiceTimestamp string
	CohortKey                string
	Debug                    bool
}

// ParseLiveFSArgs validates a livefs build's arguments.
func ParseLiveFSArgs(args map[string]any) (LiveFSArgs, error) {
	p := NewArgParser(args)
	var a LiveFSArgs
	a.Common = ParseCommonArgs(p)
	a.Project = p.RequiredString("project")
	a.Subproject = p.String("subproject")
	a.Subarch = p.String("subarch")
	// The reference reads pocket with extra_args["pocket"]: a KeyError
	// without it. Only "proposed" changes anything (PROPOSED=1).
	if !p.Has("pocket") {
		p.Fail("pocket", "is required")
	}
	a.Pocket = p.String("pocket")
	a.Datestamp = p.String("datestamp")
	a.ImageFormat = p.String("image_format")
	a.Locale = p.String("locale")
	a.ExtraPPAs = p.StringList("extra_ppas")
	a.ExtraSnaps = p.StringList("extra_snaps")
	a.Channel = p.String("channel")
	a.ImageTargets = p.StringList("image_targets")
	a.RepoSnapshotStamp = p.String("repo_snapshot_stamp")
	a.SnapshotServiceTimestamp = p.String("snapshot_service_timestamp")
	a.CohortKey = p.String("cohort-key")
	a.Debug = p.Bool("debug")
	// The locale is an argument of ubuntu-defaults-image: one that reads
	// as an option would be taken for one.
	if strings.HasPrefix(a.Locale, "-") {
		p.Fail("locale", "must not start with '-'")
	}
	if err := p.Err(); err != nil {
		return LiveFSArgs{}, err
	}
	return a, nil
}

// arch is buildlivefs's --arch: the build's arch_tag, else the builder's.
func (a LiveFSArgs) arch(cfg ManagerConfig) string {
	if a.Common.ArchTag != "" {
		return a.Common.ArchTag
	}
	return cfg.Arch
}

// LBBuildEnv is base_lb_env, the environment of lb build (after LANG and
// SHELL), in the reference's order. The reference only passes an argument
// on its command line when it is non-empty, so an empty one sets nothing.
func (a LiveFSArgs) LBBuildEnv(arch string) []string {
	env := []string{"PROJECT=" + a.Project, "ARCH=" + arch}
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add("SUBPROJECT", a.Subproject)
	add("SUBARCH", a.Subarch)
	add("CHANNEL", a.Channel)
	add("IMAGE_TARGETS", strings.Join(a.ImageTargets, " "))
	add("REPO_SNAPSHOT_STAMP", a.RepoSnapshotStamp)
	add("SNAPSHOT_SERVICE_TIMESTAMP", a.SnapshotServiceTimestamp)
	add("COHORT_KEY", a.CohortKey)
	return env
}

// LBConfigEnv is lb_env, the environment of lb config: LBBuildEnv, then
// SUITE, NOW, IMAGEFORMAT, PROPOSED, EXTRA_PPAS and EXTRA_SNAPS.
func (a LiveFSArgs) LBConfigEnv(arch string) []string {
	env := a.LBBuildEnv(arch)
	env = append(env, "SUITE="+a.Common.Series)
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add("NOW", a.Datestamp)
	add("IMAGEFORMAT", a.ImageFormat)
	if a.Pocket == "proposed" {
		env = append(env, "PROPOSED=1")
	}
	add("EXTRA_PPAS", strings.Join(a.ExtraPPAs, " "))
	add("EXTRA_SNAPS", strings.Join(a.ExtraSnaps, " "))
	return env
}

// LiveFSManager runs one livefs build.
type LiveFSManager struct {
	req      Request
	args     LiveFSArgs
	progress ProgressFunc
}

// NewLiveFSManager is the livefs manager's Factory.
func NewLiveFSManager(req Request) (Manager, error) {
	a, err := ParseLiveFSArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &LiveFSManager{req: req, args: a}, nil
}

// Args are the validated arguments.
func (m *LiveFSManager) Args() LiveFSArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *LiveFSManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager: livefs builds have no builder proxy.
func (m *LiveFSManager) ProxyInfo() (bool, string) { return false, "" }

var livefsPhases = []string{"start target", "install", "lb clean", "lb config", "lb build",
	"gather results", "clean up"}

// livefsBuildDir is buildlivefs's working directory.
const livefsBuildDir = "/build"

// Run implements Manager.
func (m *LiveFSManager) Run(ctx context.Context, env *Env) Result {
	b := NewContainerBuild(env, m.req, m.args.Common, m.progress, livefsPhases)
	// live-build mounts, makes device nodes and attaches loop devices:
	// the reference's privileged container, for this manager only.
	b.Spec.Privileged = true
	f := m.build(ctx, b)
	if f == nil {
		b.Phase("gather results")
		f = b.GatherResults(ctx, livefsBuildDir, func(name string) bool { return strings.HasPrefix(name, "livecd.") })
	}
	return b.Finish(ctx, f)
}

func (m *LiveFSManager) build(ctx context.Context, b *ContainerBuild) *Failure {
	b.Phase("start target")
	// The reference's backend is LXD: the chroot backend has no
	// privileged root to give live-build.
	if f := b.StartTarget(ctx, "lxd", m.req.Chroot); f != nil {
		return f
	}
	if f := b.ConfigureArchives(ctx, m.args.Common.Archives, m.args.Common.TrustedKeys, b.Env.Config.AptProxyURL); f != nil {
		return f
	}
	b.Phase("install")
	if f := m.install(ctx, b); f != nil {
		return prefixFailure(f, "Install failed")
	}
	if f := m.lb(ctx, b); f != nil {
		return prefixFailure(f, "Build failed")
	}
	return nil
}

// install is build_livefs.py's install phase.
func (m *LiveFSManager) install(ctx context.Context, b *ContainerBuild) *Failure {
	b.Logf("Running install phase...")
	deps := []string{"livecd-rootfs"}
	// The LXD backend supports snapd; udev works around
	// https://bugs.launchpad.net/snapd/+bug/1731519.
	avail, f := b.AvailablePackages(ctx, "snapd", "fuse", "squashfuse", "udev")
	if f != nil {
		return f
	}
	deps = append(deps, avail...)
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: append([]string{"apt-get", "-y", "install"}, deps...)}); f != nil {
		return f
	}
	if f := b.InstallSnapStoreProxy(ctx, b.Env.Config.SnapStoreProxyURL, BuildPackageFail); f != nil {
		return f
	}
	if m.args.Locale != "" {
		if f := b.Run(ctx, BuildPackageFail, target.Command{
			Args: []string{"apt-get", "-y", "--install-recommends", "install", "ubuntu-defaults-builder"},
		}); f != nil {
			return f
		}
	}
	// The reference installs the hello snap to get past snapd's first-use
	// udev race (its LXD backend tries any snap install three times) and
	// ignores any failure of it.
	if f := snapInstall(ctx, b, "hello"); f != nil {
		if f.Status == BuildAborted {
			return f
		}
		b.Logf("Unable to install the \"hello\" snap with error: %v Ignoring the failure and proceeding with the next steps!", f.Err)
	}
	return nil
}

// lb is build_livefs.py's build phase: ubuntu-defaults-image for a
// locale, else livecd-rootfs's auto scripts under live-build.
func (m *LiveFSManager) lb(ctx context.Context, b *ContainerBuild) *Failure {
	a := m.args
	arch := a.arch(b.Env.Config)
	run := func(env []string, args ...string) *Failure {
		return b.Run(ctx, BuildPackageFail, target.Command{Args: args, Env: b.BuildEnv(env...), Dir: livefsBuildDir})
	}
	b.Logf("Running build phase...")
	// Launchpad's chroots have /build; a chroot without it would run
	// every command in the target's default directory instead.
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"mkdir", "-p", livefsBuildDir}}); f != nil {
		return f
	}
	if a.Locale != "" {
		b.Phase("lb build")
		return run(nil, "ubuntu-defaults-image", "--locale", a.Locale, "--arch", arch, "--release", a.Common.Series)
	}
	b.Phase("lb clean")
	if f := run(nil, "rm", "-rf", "auto", "local"); f != nil {
		return f
	}
	if f := run(nil, "mkdir", "-p", "auto"); f != nil {
		return f
	}
	for _, s := range livefsAutoScripts {
		if f := run(nil, "ln", "-s", LiveFSAutoDir+"/"+s, "auto/"); f != nil {
			return f
		}
	}
	if a.Debug {
		if f := run(nil, "mkdir", "-p", "local/functions"); f != nil {
			return f
		}
		if f := run(nil, "sh", "-c", "echo 'set -x' >local/functions/debug.sh"); f != nil {
			return f
		}
	}
	if f := run(nil, "lb", "clean", "--purge"); f != nil {
		return f
	}
	b.Phase("lb config")
	if f := run(a.LBConfigEnv(arch), "lb", "config"); f != nil {
		return f
	}
	b.Phase("lb build")
	return run(a.LBBuildEnv(arch), "lb", "build")
}

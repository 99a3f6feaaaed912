package builders

// The snap manager: launchpad-buildd's SnapBuildManager (lpbuildd/snap.py)
// and its in-target buildsnap operation (lpbuildd/target/build_snap.py)
// in one, run from the agent against a target.
//
// Where the reference runs one in-target process whose exit code decides
// the status, this manager runs each command itself; the mapping is kept:
//
//	what failed                                   reference              status
//	----------------------------------------------------------------------------------
//	making, creating or starting the target       unpack/mount-chroot ≠0 CHROOTFAIL
//	archives, trusted_keys, apt-get update        sources/keys/update ≠0 CHROOTFAIL
//	starting the builder proxy                    host-side exception    BUILDERFAIL
//	a command of the install phase exits ≠ 0      buildsnap exit 200     PACKAGEFAIL
//	  (apt-get, snap install/refresh/ack/set,
//	  snap store proxy assertions, proxy files)
//	the source checkout (vcs error, bad ref)      buildsnap exit 201     PACKAGEFAIL
//	snapcraft pull, tar, snapcraft, sha512sum ≠ 0 buildsnap exit 201     PACKAGEFAIL
//	a command cannot be run at all, copying the   in-target dies, ≠200/1 BUILDERFAIL
//	  source into the target fails (agent or
//	  target broke)
//	gathering results fails                       "Failed to gather      PACKAGEFAIL
//	                                              results: …"
//	stopping or removing the target fails         umount/remove ≠ 0      BUILDERFAIL
//	  (only if nothing failed before)
//	abort (ctx cancelled)                         reaped, exit 137       ABORTED (the agent decides)
//	everything succeeded                          exit 0, gathered       OK, with the filemap

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() { Register("snap", NewSnapManager) }

// snapResultSuffixes are the files gathered from /build/<name>
// (snaps, their manifests, debug symbols, dpkg lists, components).
var snapResultSuffixes = []string{".snap", ".manifest", ".debug", ".dpkg.yaml", ".comp"}

// SnapArgs are the snap manager's build arguments.
type SnapArgs struct {
	Common                CommonArgs
	Name                  string
	Channels              map[string]string
	BuildRequestID        string
	HasBuildRequestID     bool
	BuildRequestTimestamp string
	ProxyURL              string
	RevocationEndpoint    string
	DisableProxyAfterPull bool
	GitRepository         string
	GitPath               string
	// Branch is a Bazaar branch (instead of GitRepository).
	Branch              string
	BuildSourceTarball  bool
	Private             bool
	TargetArchitectures []string
	LaunchpadInstance   string
	LaunchpadServerURL  string
	// FetchService is set with use_fetch_service.
	FetchService *FetchService
}

// ParseSnapArgs validates a snap build's arguments.
func ParseSnapArgs(args map[string]any) (SnapArgs, error) {
	p := NewArgParser(args)
	var a SnapArgs
	a.Common = ParseCommonArgs(p)
	a.Name = p.PathComponent("name")
	a.Channels = p.StringMap("channels")
	a.BuildRequestID, a.HasBuildRequestID = p.Scalar("build_request_id")
	a.BuildRequestTimestamp = p.String("build_request_timestamp")
	a.ProxyURL = p.URL("proxy_url", "http", "https")
	a.RevocationEndpoint = p.URL("revocation_endpoint", "http", "https")
	a.DisableProxyAfterPull = p.Bool("disable_proxy_after_pull")
	a.Branch, a.GitRepository, a.GitPath = parseCraftSource(p)
	a.BuildSourceTarball = p.Bool("build_source_tarball")
	a.Private = p.Bool("private")
	a.TargetArchitectures = p.StringList("target_architectures")
	a.LaunchpadInstance = p.String("launchpad_instance")
	a.LaunchpadServerURL = p.String("launchpad_server_url")
	// Launchpad may send build_path; the reference ignores it for snaps.
	// secrets only carries the fetch service's certificate.
	a.FetchService = parseFetchService(p, args)
	checkSnapChannels(p, a.Channels)
	for i, arch := range a.TargetArchitectures {
		if !archName().MatchString(arch) {
			p.Fail("target_architectures", "element %d (%q) is not an architecture tag", i, arch)
		}
	}
	if err := p.Err(); err != nil {
		return SnapArgs{}, err
	}
	return a, nil
}

// SnapManager runs one snap build.
type SnapManager struct {
	req      Request
	args     SnapArgs
	progress ProgressFunc
}

// NewSnapManager is the snap manager's Factory.
func NewSnapManager(req Request) (Manager, error) {
	a, err := ParseSnapArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &SnapManager{req: req, args: a}, nil
}

// Args are the validated arguments.
func (m *SnapManager) Args() SnapArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *SnapManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager.
func (m *SnapManager) ProxyInfo() (bool, string) {
	return m.args.FetchService != nil, m.args.RevocationEndpoint
}

// snapPhases are the phases SetProgress is told about.
var snapPhases = []string{"start target", "install", "fetch source", "snapcraft pull",
	"snapcraft build", "stop proxy", "gather results", "clean up"}

// ImageInfo is SNAPCRAFT_IMAGE_INFO: json.dumps(…, sort_keys=True).
func (a SnapArgs) ImageInfo() string {
	data := map[string]string{}
	if a.HasBuildRequestID {
		data["build-request-id"] = "lp-" + a.BuildRequestID
	}
	if a.BuildRequestTimestamp != "" {
		data["build-request-timestamp"] = a.BuildRequestTimestamp
	}
	if a.Common.BuildURL != "" {
		data["build_url"] = a.Common.BuildURL
	}
	return PythonJSONObject(data)
}

// snapcraftEnv is the environment of snapcraft pull (pull=true) and of
// snapcraft itself, after LANG, SHELL and the proxy variables.
func (a SnapArgs) snapcraftEnv(pull bool) []string {
	var env []string
	if pull {
		env = append(env, "SNAPCRAFT_LOCAL_SOURCES=1", "SNAPCRAFT_SETUP_CORE=1")
	}
	if !a.Private {
		env = append(env, "SNAPCRAFT_BUILD_INFO=1")
	}
	env = append(env, "SNAPCRAFT_IMAGE_INFO="+a.ImageInfo(), "SNAPCRAFT_BUILD_ENVIRONMENT=host")
	if !pull && len(a.TargetArchitectures) > 0 {
		env = append(env, "SNAPCRAFT_BUILD_FOR="+a.TargetArchitectures[0])
	}
	if a.LaunchpadInstance != "" {
		env = append(env, "LAUNCHPAD_INSTANCE="+a.LaunchpadInstance)
	}
	if a.LaunchpadServerURL != "" {
		env = append(env, "LAUNCHPAD_SERVER_URL="+a.LaunchpadServerURL)
	}
	return env
}

// Run implements Manager: the craft flow with snapcraft's declaration.
func (m *SnapManager) Run(ctx context.Context, env *Env) Result {
	a := m.args
	fl := &Flow{
		Request:            m.req,
		Common:             a.Common,
		Progress:           m.progress,
		Phases:             snapPhases,
		ProxyURL:           a.ProxyURL,
		RevocationEndpoint: a.RevocationEndpoint,
		GitRepository:      a.GitRepository,
		GitPath:            a.GitPath,
		Branch:             a.Branch,
		SourceDir:          m.buildDir(),
		Install:            m.install,
		Steps: []FlowStep{
			{Phase: "snapcraft pull", Run: func(ctx context.Context, b *ContainerBuild, _ string) *Failure { return m.pull(ctx, b) }},
			{Phase: "snapcraft build", Run: func(ctx context.Context, b *ContainerBuild, _ string) *Failure { return m.snapcraft(ctx, b) }},
		},
		Results:      snapResult,
		ExtraResults: m.tarballPaths(),
		FetchService: a.FetchService,
	}
	return fl.Run(ctx, env)
}

// snapResult picks the files gathered from /build/<name>.
func snapResult(name string) bool {
	for _, s := range snapResultSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

func (m *SnapManager) buildDir() string { return "/build/" + m.args.Name }

func (m *SnapManager) tarballPaths() []string {
	if !m.args.BuildSourceTarball {
		return nil
	}
	return []string{"/build/" + m.args.Name + ".tar.gz"}
}

// install is build_snap.py's install phase.
func (m *SnapManager) install(ctx context.Context, b *ContainerBuild) *Failure {
	a := m.args
	b.Logf("Running install phase...")
	var deps []string
	if b.Proxy != nil {
		deps = append(deps, proxyDeps...)
		if f := b.InstallGitProxy(ctx); f != nil {
			return f
		}
	}
	// udev works around https://bugs.launchpad.net/snapd/+bug/1731519.
	avail, f := withVCSDeps(ctx, b, a.Branch, "snapd", "fuse", "squashfuse", "udev")
	if f != nil {
		return f
	}
	deps = append(deps, avail...)
	if _, ok := a.Channels["snapcraft"]; ok {
		// snapcraft needs sudo but cannot depend on it as a snap.
		deps = append(deps, "sudo")
	} else {
		deps = append(deps, "snapcraft")
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: append([]string{"apt-get", "-y", "install"}, deps...)}); f != nil {
		return f
	}
	if f := b.InstallSnapStoreProxy(ctx, b.Env.Config.SnapStoreProxyURL, BuildPackageFail); f != nil {
		return f
	}
	for _, s := range slices.Sorted(maps.Keys(a.Channels)) {
		if s == "snapcraft" {
			continue // needs --classic, below
		}
		ch := "--channel=" + a.Channels[s]
		if f := snapInstall(ctx, b, ch, s); f != nil {
			return f
		}
		// A snap preinstalled in the image needs a refresh to change channel.
		if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"snap", "refresh", ch, s}}); f != nil {
			return f
		}
	}
	if ch, ok := a.Channels["snapcraft"]; ok {
		if f := snapInstall(ctx, b, "--classic", "--channel="+ch, "snapcraft"); f != nil {
			return f
		}
	}
	if b.Proxy != nil {
		if f := b.InstallSVNServers(ctx, BuildPackageFail); f != nil {
			return f
		}
	}
	return nil
}

// pull is build_snap.py's pull phase, with the optional source tarball and
// the early token revocation.
func (m *SnapManager) pull(ctx context.Context, b *ContainerBuild) *Failure {
	a := m.args
	b.Logf("Running pull phase...")
	if f := b.Run(ctx, BuildPackageFail, target.Command{
		Args: []string{"snapcraft", "pull"},
		Env:  b.BuildEnv(a.snapcraftEnv(true)...),
		Dir:  m.buildDir(),
	}); f != nil {
		return f
	}
	if a.BuildSourceTarball {
		if f := b.Run(ctx, BuildPackageFail, target.Command{
			Args: []string{"tar", "-czf", a.Name + ".tar.gz", "--format=gnu", "--sort=name", "--exclude-vcs",
				"--numeric-owner", "--owner=0", "--group=0", a.Name},
			Env: b.BuildEnv(),
			Dir: "/build",
		}); f != nil {
			return f
		}
	}
	if a.DisableProxyAfterPull && a.ProxyURL != "" && a.RevocationEndpoint != "" {
		b.CutOffProxy(ctx)
	}
	return nil
}

// snapcraft is build_snap.py's build phase.
func (m *SnapManager) snapcraft(ctx context.Context, b *ContainerBuild) *Failure {
	b.Logf("Running build phase...")
	if f := b.Run(ctx, BuildPackageFail, target.Command{
		Args: []string{"snapcraft"},
		Env:  b.BuildEnv(m.args.snapcraftEnv(false)...),
		Dir:  m.buildDir(),
	}); f != nil {
		return f
	}
	entries, err := b.Target.ListDir(ctx, m.buildDir())
	if err != nil {
		return b.ctxFail(ctx, BuildBuilderFail, "cannot list %s: %w", m.buildDir(), err)
	}
	for _, e := range entries {
		// Regular files only: sha512sum of a FIFO named *.snap would
		// block until abort.
		if !e.Mode.IsRegular() || !strings.HasSuffix(e.Name, ".snap") {
			continue
		}
		if f := b.Run(ctx, BuildPackageFail, target.Command{
			Args: []string{"sha512sum", e.Name},
			Env:  b.BuildEnv(),
			Dir:  m.buildDir(),
		}); f != nil {
			return f
		}
	}
	return nil
}

// snapInstallAttempts: the reference's LXD backend tries `snap install` up
// to three times, working around a snapd/udev race on first use.
const snapInstallAttempts = 3

// snapInstall runs `snap install args...`, retrying a failure (not an
// abort, not a target that cannot run commands) like the reference.
func snapInstall(ctx context.Context, b *ContainerBuild, args ...string) *Failure {
	var f *Failure
	for i := 0; i < snapInstallAttempts; i++ {
		f = b.Run(ctx, BuildPackageFail, target.Command{Args: append([]string{"snap", "install"}, args...)})
		if f == nil || f.Status != BuildPackageFail {
			return f
		}
	}
	return f
}

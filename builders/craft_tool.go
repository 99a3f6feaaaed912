package builders

// What the charm, rock and craft managers share: launchpad-buildd's
// CharmBuildManager, RockBuildManager and CraftBuildManager with their
// build-charm, build-rock and build-craft operations, which differ only in
// the tool (charmcraft, rockcraft, sourcecraft), a few install packages,
// the results they keep, the exit mapping and a few environment
// variables. Each manager is a craftTool declaration (charm.go, rock.go,
// craft.go) run on the craft flow (flow.go):
//
//	install   apt-get -y install [python3 socat] [snapd fuse squashfuse udev, those available] git <deps>;
//	          the snap store proxy; snap install --channel=C S for each channel but the tool's;
//	          snap install --classic [--channel=C] <tool>; mkdir -p /home/buildd
//	repo      the checkout into /home/buildd/<name>, revision_id
//	pack      <tool> pack -v --destructive-mode in /home/buildd/<name>/<build_path>
//	results   the tool's files in that directory

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// craftTool declares one of the managers.
type craftTool struct {
	// tag is the manager tag, tool the snap that builds ("charmcraft").
	tag, tool string
	// defaultChannel is the tool's channel when channels does not name
	// it ("" = snap's default).
	defaultChannel string
	// deps are the apt packages installed after the VCS's.
	deps []string
	// result picks the results by file name.
	result func(name string) bool
	// anyFailureIsPackageFail: the reference maps every non-zero exit of
	// the operation to PACKAGEFAIL (rock, craft), not only 200/201 (charm).
	anyFailureIsPackageFail bool
	// craftPlatform: craft_platform is read and exported as CRAFT_PLATFORM.
	craftPlatform bool
	// launchpadEnv: LAUNCHPAD_INSTANCE and LAUNCHPAD_SERVER_URL are exported.
	launchpadEnv bool
	// environmentVariables: environment_variables is read (craft); its
	// credentials become the build's (craft_credentials.go).
	environmentVariables bool
}

// phases are what SetProgress is told about.
func (t *craftTool) phases() []string {
	return []string{"start target", "install", "fetch source", t.tool + " pack", "stop proxy", "gather results", "clean up"}
}

// CraftArgs are the arguments of a charm, rock or craft build.
type CraftArgs struct {
	Common CommonArgs
	Name   string
	// Branch is a Bazaar branch (instead of GitRepository).
	Branch        string
	GitRepository string
	GitPath       string
	// BuildPath is build_path ("" when not given: the tree itself).
	BuildPath          string
	Channels           map[string]string
	ProxyURL           string
	RevocationEndpoint string
	Private            bool
	// CraftPlatform is charm's craft_platform.
	CraftPlatform string
	// LaunchpadInstance and LaunchpadServerURL are rock's and craft's.
	LaunchpadInstance  string
	LaunchpadServerURL string
	// EnvironmentVariables is craft's environment_variables.
	EnvironmentVariables map[string]string
	// FetchService is set with use_fetch_service.
	FetchService *FetchService
}

// parseArgs validates a build's arguments for this tool.
func (t *craftTool) parseArgs(args map[string]any) (CraftArgs, error) {
	p := NewArgParser(args)
	var a CraftArgs
	a.Common = ParseCommonArgs(p)
	a.Name = p.PathComponent("name")
	a.Branch, a.GitRepository, a.GitPath = parseCraftSource(p)
	a.BuildPath = p.String("build_path")
	a.Channels = p.StringMap("channels")
	a.ProxyURL = p.URL("proxy_url", "http", "https")
	a.RevocationEndpoint = p.URL("revocation_endpoint", "http", "https")
	a.Private = p.Bool("private")
	if t.craftPlatform {
		a.CraftPlatform = p.String("craft_platform")
	}
	if t.launchpadEnv {
		a.LaunchpadInstance = p.String("launchpad_instance")
		a.LaunchpadServerURL = p.String("launchpad_server_url")
	}
	if t.environmentVariables {
		a.EnvironmentVariables = p.StringMap("environment_variables")
		checkEnvironmentVariables(p, a.EnvironmentVariables)
	}
	// secrets only carries the fetch service's certificate.
	a.FetchService = parseFetchService(p, args)
	checkSnapChannels(p, a.Channels)
	if err := p.Err(); err != nil {
		return CraftArgs{}, err
	}
	return a, nil
}

// parseCraftSource reads the source: a Bazaar branch or a git repository
// (exactly one, as the reference's --branch/--git-repository) and git_path.
func parseCraftSource(p *ArgParser) (branch, repository, gitPath string) {
	branch = p.String("branch")
	repository = p.String("git_repository")
	gitPath = p.String("git_path")
	switch {
	case branch != "" && repository != "":
		p.Fail("branch", "give branch or git_repository, not both")
	case branch == "" && repository == "":
		if p.Has("git_repository") || p.Has("branch") {
			p.Fail("git_repository", "must not be empty")
		} else {
			p.Fail("git_repository", "is required (or branch, for a Bazaar branch)")
		}
	case gitPath != "" && repository == "":
		p.Fail("git_path", "needs git_repository")
	}
	if branch != "" && !bzrBranchURL(branch) {
		// Breezy runs on the host: no file:// or local paths.
		p.Fail("branch", "must be an http, https or bzr URL, or lp:")
	}
	for _, c := range []struct{ name, v string }{{"branch", branch}, {"git_repository", repository}, {"git_path", gitPath}} {
		if strings.HasPrefix(c.v, "-") {
			p.Fail(c.name, "must not start with '-'")
		}
		if strings.ContainsAny(c.v, "\n\r") {
			p.Fail(c.name, "must be one line")
		}
	}
	return branch, repository, gitPath
}

// withVCSDeps returns those of optional that the build's archives have,
// followed by the reference's vcs_deps for the source: git always (the
// checkout in the target needs it); bzr for a branch only when the archives
// have it, since the branch is fetched on the host here, with Breezy, so
// bzr in the build root is for the build's own use and its absence is no
// reason to fail the build.
func withVCSDeps(ctx context.Context, b *ContainerBuild, branch string, optional ...string) ([]string, *Failure) {
	if branch != "" {
		optional = append(slices.Clip(optional), "bzr")
	}
	deps, f := b.AvailablePackages(ctx, optional...)
	if f != nil {
		return nil, f
	}
	if branch == "" {
		deps = append(deps, "git")
	}
	return deps, nil
}

// checkSnapChannels checks a channels argument: snap names to channels.
func checkSnapChannels(p *ArgParser, channels map[string]string) {
	for snap, channel := range channels {
		if !snapName().MatchString(snap) {
			p.Fail("channels", "%q is not a snap name", snap)
		}
		if channel == "" || strings.ContainsAny(channel, " \t\n\r") || strings.HasPrefix(channel, "-") {
			p.Fail("channels", "%q is not a channel (for snap %q)", channel, snap)
		}
	}
}

// craftManager runs one charm, rock or craft build.
type craftManager struct {
	tool     *craftTool
	req      Request
	args     CraftArgs
	progress ProgressFunc
}

// factory is the tool's manager Factory.
func (t *craftTool) factory(req Request) (Manager, error) {
	a, err := t.parseArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &craftManager{tool: t, req: req, args: a}, nil
}

// SetProgress implements ProgressReporter.
func (m *craftManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager.
func (m *craftManager) ProxyInfo() (bool, string) {
	return m.args.FetchService != nil, m.args.RevocationEndpoint
}

// Args are the validated arguments.
func (m *craftManager) Args() CraftArgs { return m.args }

// sourceDir is /home/buildd/<name>: the tools' snaps cannot see /build.
func (m *craftManager) sourceDir() string { return "/home/buildd/" + m.args.Name }

// Run implements Manager.
func (m *craftManager) Run(ctx context.Context, env *Env) Result {
	a := m.args
	t := m.tool
	fl := &Flow{
		Request:                 m.req,
		Common:                  a.Common,
		Progress:                m.progress,
		Phases:                  t.phases(),
		ProxyURL:                a.ProxyURL,
		RevocationEndpoint:      a.RevocationEndpoint,
		GitRepository:           a.GitRepository,
		GitPath:                 a.GitPath,
		Branch:                  a.Branch,
		SourceDir:               m.sourceDir(),
		BuildPath:               a.BuildPath,
		Install:                 m.install,
		Results:                 t.result,
		AnyFailureIsPackageFail: t.anyFailureIsPackageFail,
		FetchService:            a.FetchService,
	}
	var creds *craftCredentials
	if t.environmentVariables {
		var err error
		creds, err = newCraftCredentials(a.EnvironmentVariables)
		fl.Secrets = creds.secrets()
		if err != nil {
			// The reference fails in build(), after the checkout.
			fl.Inspect = func(string) error { return err }
		}
	}
	fl.Steps = []FlowStep{{Phase: t.tool + " pack", Run: func(ctx context.Context, b *ContainerBuild, dir string) *Failure {
		return m.pack(ctx, b, dir, creds)
	}}}
	return fl.Run(ctx, env)
}

// install is build-charm's, build-rock's and build-craft's install phase.
func (m *craftManager) install(ctx context.Context, b *ContainerBuild) *Failure {
	a := m.args
	t := m.tool
	b.Logf("Running install phase")
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
	deps = append(deps, t.deps...)
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: append([]string{"apt-get", "-y", "install"}, deps...)}); f != nil {
		return f
	}
	if f := b.InstallSnapStoreProxy(ctx, b.Env.Config.SnapStoreProxyURL, BuildPackageFail); f != nil {
		return f
	}
	for _, s := range slices.Sorted(maps.Keys(a.Channels)) {
		if s == t.tool {
			continue // needs --classic, below
		}
		if f := snapInstall(ctx, b, "--channel="+a.Channels[s], s); f != nil {
			return f
		}
	}
	toolArgs := []string{"--classic"}
	if ch, ok := a.Channels[t.tool]; ok {
		toolArgs = append(toolArgs, "--channel="+ch)
	} else if t.defaultChannel != "" {
		toolArgs = append(toolArgs, "--channel="+t.defaultChannel)
	}
	if f := snapInstall(ctx, b, append(toolArgs, t.tool)...); f != nil {
		return f
	}
	// The tools' snaps cannot see /build: the work is under /home/buildd.
	return b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"mkdir", "-p", "/home/buildd"}})
}

// packEnv is the environment of `<tool> pack` after LANG, SHELL and the
// proxy variables, in the reference's order.
func (m *craftManager) packEnv(creds *craftCredentials) []string {
	a := m.args
	var env []string
	if a.CraftPlatform != "" {
		env = append(env, "CRAFT_PLATFORM="+a.CraftPlatform)
	}
	if creds != nil {
		env = append(env, creds.cargo...)
	}
	if a.LaunchpadInstance != "" {
		env = append(env, "LAUNCHPAD_INSTANCE="+a.LaunchpadInstance)
	}
	if a.LaunchpadServerURL != "" {
		env = append(env, "LAUNCHPAD_SERVER_URL="+a.LaunchpadServerURL)
	}
	return env
}

// pack is the build phase: craft's credentials, then `<tool> pack`.
func (m *craftManager) pack(ctx context.Context, b *ContainerBuild, dir string, creds *craftCredentials) *Failure {
	if creds != nil && creds.maven != "" {
		if f := writeMavenSettings(ctx, b, m.sourceDir(), creds.maven); f != nil {
			return f
		}
	}
	b.Logf("Running build phase...")
	return b.Run(ctx, BuildPackageFail, target.Command{
		Args: []string{m.tool.tool, "pack", "-v", "--destructive-mode"},
		Env:  b.BuildEnv(m.packEnv(creds)...),
		Dir:  dir,
	})
}

package builders

// The craft flow: the one implementation of what snap, charm, rock and
// craft builds share (launchpad-buildd's BuildManagerProxyMixin managers
// and their in-target build-* operations). A manager declares what differs
// (its install phase, where the source goes, the steps after the checkout,
// which results it keeps, how failures map) in a Flow; Flow.Run does the
// rest in the reference's order:
//
//	start target     create and start (CHROOTFAIL), archives and keys (CHROOTFAIL),
//	                 the builder proxy (BUILDERFAIL)
//	install          Flow.Install                          "Install failed: …"
//	fetch source     git checkout on the host, streamed into
//	                 Flow.SourceDir; revision_id             "Build failed: …"
//	(build path)     build_path resolved inside the tree     "Build failed: invalid build file path: …"
//	Flow.Steps       in the build directory                "Build failed: …"
//	stop proxy       stop listening, revoke the token (whatever happened)
//	gather results   Flow.Results from the build directory   PACKAGEFAIL
//	clean up         stop and remove the target            BUILDERFAIL if only that failed
//
// Failures of the phases the reference runs in its in-target operation
// (install, fetch, build path, steps) keep their status (a non-zero exit
// is PACKAGEFAIL, a command that cannot be run BUILDERFAIL) unless
// AnyFailureIsPackageFail says the manager maps every exit of that
// operation to PACKAGEFAIL, as rock and craft do.

import (
	"context"
	"path"
)

// Flow declares one build of a craft-style manager.
type Flow struct {
	Request  Request
	Common   CommonArgs
	Progress ProgressFunc
	// Phases are the names given to the progress reporter, in order.
	Phases []string

	ProxyURL           string
	RevocationEndpoint string
	GitRepository      string
	GitPath            string
	// Branch is a Bazaar branch, instead of GitRepository.
	Branch string
	// Secrets are masked in the build log from the start, besides the
	// passwords of ProxyURL and GitRepository.
	Secrets []string

	// SourceDir is where the checkout goes in the target: /build/<name>
	// for snaps, /home/buildd/<name> for the others.
	SourceDir string
	// BuildPath is the build_path argument: the directory under SourceDir
	// the steps run in and results are gathered from ("" = SourceDir). It
	// is resolved inside the checkout (ResolveBuildPath): leaving the tree
	// by "..", an absolute path or a symlink fails the build.
	BuildPath string

	// Install is the manager's install phase (after the target, the
	// archives and the proxy are up).
	Install func(ctx context.Context, b *ContainerBuild) *Failure
	// Inspect, if set, looks at a git checkout on the host (tree) before
	// it is removed; an error fails the build as PACKAGEFAIL.
	Inspect func(tree string) error
	// Steps run after the checkout, each announced as its phase; dir is
	// the resolved build directory.
	Steps []FlowStep
	// Results picks the files gathered from the build directory (regular
	// files only, sorted); ExtraResults are paths gathered after them if
	// they exist.
	Results      func(name string) bool
	ExtraResults []string
	// FetchService, if set, is the fetch-service mode (use_fetch_service).
	FetchService *FetchService
	// AnyFailureIsPackageFail maps every failure of the in-target phases
	// to PACKAGEFAIL (rock and craft: the reference's buildFail for any
	// non-zero exit of build-rock/build-craft).
	AnyFailureIsPackageFail bool
}

// FlowStep is one phase after the checkout.
type FlowStep struct {
	Phase string
	Run   func(ctx context.Context, b *ContainerBuild, dir string) *Failure
}

// Run runs the build and always tears down.
func (fl *Flow) Run(ctx context.Context, env *Env) Result {
	b := NewContainerBuild(env, fl.Request, fl.Common, fl.Progress, fl.Phases)
	b.AddURLSecrets(fl.ProxyURL)
	b.AddURLSecrets(fl.GitRepository)
	b.AddURLSecrets(fl.Branch)
	for _, s := range fl.Secrets {
		b.AddSecret(s)
	}
	dir, f := fl.build(ctx, b)
	// The reference stops the proxy and revokes its token as soon as the
	// build operation ends, whatever the result, before gathering.
	b.Phase("stop proxy")
	b.StopProxy(ctx)
	b.Phase("gather results")
	if f == nil {
		f = b.GatherResults(ctx, dir, fl.Results, fl.ExtraResults...)
	}
	return b.Finish(ctx, f)
}

// build runs the phases up to the end of the last step and returns the
// build directory.
func (fl *Flow) build(ctx context.Context, b *ContainerBuild) (string, *Failure) {
	b.Phase("start target")
	if f := b.StartTarget(ctx, "", fl.Request.Chroot); f != nil {
		return "", f
	}
	if f := b.ConfigureArchives(ctx, fl.Common.Archives, fl.Common.TrustedKeys, b.Env.Config.AptProxyURL); f != nil {
		return "", f
	}
	b.FetchService = fl.FetchService != nil
	if fl.FetchService != nil {
		b.FetchServiceCA = fl.FetchService.Certificate
	}
	if fl.ProxyURL != "" {
		if f := b.StartProxy(ctx, fl.ProxyURL, fl.RevocationEndpoint); f != nil {
			return "", f
		}
	}
	if fl.FetchService != nil {
		b.ProxyEnv = append(b.ProxyEnv, fetchServiceEnv...)
	}

	b.Phase("install")
	f := fl.Install(ctx, b)
	if f == nil && fl.FetchService != nil {
		f = b.InstallFetchService(ctx, fl.FetchService, fl.Common.Series)
	}
	if f != nil {
		return "", fl.inTarget(prefixFailure(f, "Install failed"))
	}

	b.Phase("fetch source")
	b.Logf("Running repo phase...")
	var (
		rel                 string
		pathErr, inspectErr error
	)
	var rev string
	if fl.Branch != "" {
		rev, f = b.fetchBzr(ctx, fl.Branch, fl.SourceDir, fl.ProxyURL)
		if f == nil {
			rel, pathErr = ResolveBuildPathInTarget(ctx, b.Target, fl.SourceDir, fl.BuildPath)
		}
	} else {
		rev, f = b.FetchGitInspect(ctx, fl.GitRepository, fl.GitPath, fl.SourceDir, fl.ProxyURL, func(tree string) {
			rel, pathErr = ResolveBuildPath(tree, fl.SourceDir, fl.BuildPath)
			if pathErr == nil && fl.Inspect != nil {
				inspectErr = fl.Inspect(tree)
			}
		})
	}
	if f != nil {
		return "", fl.inTarget(prefixFailure(f, "Build failed"))
	}
	if env := b.Env; env.SetStatus != nil {
		env.SetStatus("revision_id", rev)
	}
	if pathErr != nil {
		return "", prefixFailure(&Failure{Status: BuildPackageFail, Err: pathErr}, "Build failed")
	}
	if inspectErr != nil {
		return "", prefixFailure(&Failure{Status: BuildPackageFail, Err: inspectErr}, "Build failed")
	}
	dir := path.Join(fl.SourceDir, rel)

	for _, s := range fl.Steps {
		b.Phase(s.Phase)
		if f := s.Run(ctx, b, dir); f != nil {
			return "", fl.inTarget(prefixFailure(f, "Build failed"))
		}
	}
	return dir, nil
}

// inTarget applies AnyFailureIsPackageFail.
func (fl *Flow) inTarget(f *Failure) *Failure {
	if f == nil || !fl.AnyFailureIsPackageFail || f.Status == BuildAborted || f.Status == BuildPackageFail {
		return f
	}
	return &Failure{Status: BuildPackageFail, Err: f.Err}
}

// prefixFailure puts the reference's phase message in front of a failure.
func prefixFailure(f *Failure, prefix string) *Failure {
	if f.Status == BuildAborted {
		return f
	}
	return &Failure{Status: f.Status, Err: &prefixedError{prefix: prefix, err: f.Err}}
}

type prefixedError struct {
	prefix string
	err    error
}

func (e *prefixedError) Error() string { return e.prefix + ": " + e.err.Error() }
func (e *prefixedError) Unwrap() error { return e.err }

package builders

// ContainerBuild, the run-time half of launchpad-buildd's in-target
// operations that the container managers (snap, charm, rock, craft, …)
// share: start the target, run commands with the reference's environment,
// and always tear down. The builder proxy, the source checkout and result
// gathering are in common_proxy.go, common_checkout.go and common_gather.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// ---------------------------------------------------------------------------
// Failures

// Failure ends a build with a status. The managers' phases return it; Err
// is what the build log says.
type Failure struct {
	Status BuildStatus
	Err    error
}

func (f *Failure) Error() string { return string(f.Status) + ": " + f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Fail makes a Failure.
func Fail(status BuildStatus, format string, a ...any) *Failure {
	return &Failure{Status: status, Err: fmt.Errorf(format, a...)}
}

// ---------------------------------------------------------------------------
// Progress

// ProgressFunc is told when a manager enters a phase: step of total, 1-based.
type ProgressFunc func(step, total int, phase string)

// ProgressReporter is implemented by managers that announce their phases;
// `buildd-agent build` shows them as "==> [3/8] snapcraft pull".
type ProgressReporter interface {
	SetProgress(ProgressFunc)
}

// ---------------------------------------------------------------------------
// ContainerBuild

// ContainerBuild is one build's run-time state for a container manager.
// Its methods log like launchpad-buildd and return *Failure with the
// status the reference's exit codes map to.
type ContainerBuild struct {
	Env    *Env
	Log    io.Writer
	Common CommonArgs
	Spec   target.Spec
	Target target.Target
	// Proxy is nil when the build has no proxy_url.
	Proxy BuilderProxy
	// ProxyEnv is Proxy.Env() once the proxy runs.
	ProxyEnv []string
	// FetchService: proxy_url is a fetch-service session (revoked in its
	// form, the source checked out shallow; flow_fetchservice.go).
	FetchService bool
	// FetchServiceCA is the fetch service's certificate, which the host
	// side's https (the source checkout) trusts too.
	FetchServiceCA []byte
	// Shallow checks the source out at depth 1, the one ref only (the
	// fetch service always does; the oci manager does as build_oci.py).
	Shallow bool

	progress  ProgressFunc
	phases    []string
	proxyOnce sync.Once
}

// NewContainerBuild prepares a build; progress may be nil. phases names
// the manager's phases in order, for the progress reporter.
func NewContainerBuild(env *Env, req Request, common CommonArgs, progress ProgressFunc, phases []string) *ContainerBuild {
	arch := common.ArchTag
	if arch == "" {
		arch = env.Config.Arch
	}
	return &ContainerBuild{
		Env:    env,
		Log:    env.Log,
		Common: common,
		Spec: target.Spec{
			BuildID:     req.BuildID,
			Series:      common.Series,
			Arch:        arch,
			Constraints: common.Constraints,
			FastCleanup: common.FastCleanup,
		},
		progress: progress,
		phases:   phases,
	}
}

// Logf writes one line to the build log.
func (b *ContainerBuild) Logf(format string, a ...any) {
	fmt.Fprintf(b.Log, format+"\n", a...)
}

// Phase announces a phase (one of those given to NewContainerBuild) to the
// progress reporter; skipped phases simply are not announced.
func (b *ContainerBuild) Phase(name string) {
	if b.progress == nil {
		return
	}
	for i, p := range b.phases {
		if p == name {
			b.progress(i+1, len(b.phases), name)
			return
		}
	}
	b.progress(len(b.phases), len(b.phases), name)
}

// AddSecret masks s in the build log from now on.
func (b *ContainerBuild) AddSecret(s string) {
	if s != "" && b.Env.AddSecret != nil {
		b.Env.AddSecret(s)
	}
}

// AddURLSecrets masks the password of a URL's userinfo, decoded and as
// written (percent-encoded), wherever it later shows up.
func (b *ContainerBuild) AddURLSecrets(raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return
	}
	b.AddSecret(pw)
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		authority := rest
		if k := strings.IndexAny(authority, "/?#"); k >= 0 {
			authority = authority[:k]
		}
		if k := strings.LastIndexByte(authority, '@'); k >= 0 {
			if _, rawPW, ok := strings.Cut(authority[:k], ":"); ok {
				b.AddSecret(rawPW)
			}
		}
	}
}

// StartTarget makes and starts the target (the reference's unpack-chroot
// and mount-chroot): any failure is CHROOTFAIL.
func (b *ContainerBuild) StartTarget(ctx context.Context, backend string, img target.Image) *Failure {
	if backend == "" {
		backend = b.Env.Config.Backend
	}
	if backend == "" {
		backend = "lxd"
	}
	img.Type = b.Common.ImageType
	t, err := b.Env.NewTarget(ctx, backend, b.Spec)
	if err != nil {
		return b.ctxFail(ctx, BuildChrootFail, "cannot make the %s target: %w", backend, err)
	}
	b.Target = t
	if err := t.Create(ctx, img); err != nil {
		return b.ctxFail(ctx, BuildChrootFail, "cannot create the target: %w", err)
	}
	if err := t.Start(ctx); err != nil {
		return b.ctxFail(ctx, BuildChrootFail, "cannot start the target: %w", err)
	}
	return nil
}

// ctxFail is a Failure, ABORTED if ctx was cancelled (the agent decides
// the final status of an aborted build; this keeps the log honest).
func (b *ContainerBuild) ctxFail(ctx context.Context, status BuildStatus, format string, a ...any) *Failure {
	if ctx.Err() != nil {
		return &Failure{Status: BuildAborted, Err: fmt.Errorf(format, a...)}
	}
	return Fail(status, format, a...)
}

// BuildEnv is run_build_command's environment: LANG and SHELL, the proxy
// environment, then extra.
func (b *ContainerBuild) BuildEnv(extra ...string) []string {
	env := []string{"LANG=C.UTF-8", "SHELL=/bin/sh"}
	env = append(env, b.ProxyEnv...)
	return append(env, extra...)
}

// Run runs a command through builders.Run (the "[ctime]" and "RUN:" lines)
// and maps the outcome: a command that cannot be run is BUILDERFAIL (the
// agent or the target broke), a non-zero exit is failStatus (the
// reference's in-target exits 200/201 → PACKAGEFAIL).
func (b *ContainerBuild) Run(ctx context.Context, failStatus BuildStatus, cmd target.Command) *Failure {
	code, err := Run(ctx, b.Target, b.Log, cmd)
	if err != nil {
		return b.ctxFail(ctx, BuildBuilderFail, "cannot run %s: %w", cmd.Args[0], err)
	}
	if ctx.Err() != nil {
		return &Failure{Status: BuildAborted, Err: fmt.Errorf("%s interrupted by abort", cmd.Args[0])}
	}
	if code != 0 {
		// QuoteArgs keeps the reference's trailing space after a lone argv[0].
		return Fail(failStatus, "%s failed with exit status %d", strings.TrimSuffix(QuoteArgs(cmd.Args), " "), code)
	}
	return nil
}

// Output runs a command (logged) and returns its standard output; its
// standard error goes nowhere, as in the reference's get_output runs.
func (b *ContainerBuild) Output(ctx context.Context, cmd target.Command) (string, int, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.Discard
	code, err := Run(ctx, b.Target, b.Log, cmd)
	return out.String(), code, err
}

// AvailablePackages are those of pkgs that PackageAvailable finds, in
// order (the reference's `for dep in …: if is_package_available(dep)`).
// Failing to run apt-cache is the builder's failure.
func (b *ContainerBuild) AvailablePackages(ctx context.Context, pkgs ...string) ([]string, *Failure) {
	var avail []string
	for _, pkg := range pkgs {
		ok, err := b.PackageAvailable(ctx, pkg)
		if err != nil {
			return nil, b.ctxFail(ctx, BuildBuilderFail, "cannot run apt-cache: %w", err)
		}
		if ok {
			avail = append(avail, pkg)
		}
	}
	return avail, nil
}

// PackageAvailable is the reference's is_package_available: `apt-cache
// show P` succeeds and names the package.
func (b *ContainerBuild) PackageAvailable(ctx context.Context, pkg string) (bool, error) {
	out, code, err := b.Output(ctx, target.Command{Args: []string{"apt-cache", "show", pkg}})
	if err != nil {
		return false, err
	}
	if code != 0 {
		return false, nil
	}
	for _, line := range strings.Split(out, "\n") {
		if line == "Package: "+pkg {
			return true, nil
		}
	}
	return false, nil
}

// Finish ends the build whatever happened: the proxy is stopped and its
// token revoked, the target stopped and removed (unless fast_cleanup), and
// the status decided. A failure earlier in the build keeps its status; a
// teardown failure of an otherwise good build is BUILDERFAIL (the
// reference's umount-chroot/remove-build failures).
func (b *ContainerBuild) Finish(ctx context.Context, f *Failure) Result {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	b.StopProxy(tctx)
	if f != nil && f.Status != BuildAborted {
		b.Logf("%s", f.Err)
	}
	b.Phase("clean up")
	if b.Target != nil {
		// With fast_cleanup (Spec.FastCleanup) the target decides what
		// teardown it skips: the LXD container is left to the throw-away
		// machine, while the chroot target still kills its namespace and
		// removes its build home, since those would otherwise outlive
		// the build (until the agent exits, and on disk for good).
		if b.Common.FastCleanup {
			b.Logf("fast_cleanup: skipping what the machine's end removes")
		}
		var errs []error
		if err := b.Target.Stop(tctx); err != nil {
			errs = append(errs, fmt.Errorf("cannot stop the target: %w", err))
		}
		if err := b.Target.Remove(tctx); err != nil {
			errs = append(errs, fmt.Errorf("cannot remove the target: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			b.Logf("%v", err)
			if f == nil {
				f = &Failure{Status: BuildBuilderFail, Err: err}
			}
		}
	}
	if ctx.Err() != nil {
		return Result{Status: BuildAborted}
	}
	if f != nil {
		return Result{Status: f.Status}
	}
	return Result{Status: BuildOK}
}

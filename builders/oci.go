package builders

// The oci manager: launchpad-buildd's OCIBuildManager (lpbuildd/oci.py)
// and its in-target build-oci operation (lpbuildd/target/build_oci.py),
// on the craft flow (flow.go) with its own result gathering (oci_save.go):
//
//	install   [python3 socat, the git proxy, docker's HTTP(S)_PROXY drop-ins]
//	          apt-get -y install [python3 socat] git|bzr; apt-get -y install docker.io;
//	          the snap store proxy; [systemctl daemon-reload];
//	          systemctl restart docker; mkdir -p /home/buildd
//	repo      the checkout into /home/buildd/<name>
//	build     docker build --no-cache [proxy build-args] --tag <name>
//	          [--file <build_path>/<build_file>] [--build-arg=K=V]… <context>
//	results   docker save <name>, streamed: <layer>.tar.gz, manifest.json,
//	          each config, digests.json
//
// Exit mapping as iterate_BUILD_OCI: an install or build command that
// exits ≠ 0 (the reference's 200/201) is PACKAGEFAIL, a command that
// cannot be run BUILDERFAIL; result gathering failing is PACKAGEFAIL.
//
// Where this differs from the reference, on purpose:
//   - no add-apt-repository of the docker-rollback PPA: that archive is
//     Launchpad's to send among archives (docker.io then comes from it by
//     its epoch); an agent never adds an archive the build did not name.
//   - the v2 metadata directory is taken from `docker info`'s storage
//     driver instead of the hard-coded vfs one, so that it holds whatever
//     driver docker picks in the container.
//   - build_args are passed sorted by key (XML-RPC structs reach Go as
//     maps; the reference keeps the master's order).
//   - build_file must resolve inside the tree without a symlink in its
//     directories, and must not itself be a symlink.
//   - with a proxy, systemctl daemon-reload before restarting docker: the
//     drop-ins take effect even when docker.io was installed already.

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() { Register("oci", NewOCIManager) }

// OCIArgs are the oci manager's build arguments (buildd-manager §4.6).
type OCIArgs struct {
	Common CommonArgs
	Name   string
	// Branch is a Bazaar branch (instead of GitRepository).
	Branch        string
	GitRepository string
	GitPath       string
	// BuildFile is build_file ("" = docker's default, Dockerfile).
	BuildFile string
	// BuildPath is build_path ("" = the tree itself, the reference's ".").
	BuildPath string
	// BuildArgs are the user's --build-arg values.
	BuildArgs          map[string]string
	ProxyURL           string
	RevocationEndpoint string
}

// ParseOCIArgs validates an oci build's arguments.
func ParseOCIArgs(args map[string]any) (OCIArgs, error) {
	p := NewArgParser(args)
	var a OCIArgs
	a.Common = ParseCommonArgs(p)
	a.Name = p.PathComponent("name")
	a.Branch, a.GitRepository, a.GitPath = parseCraftSource(p)
	a.BuildFile = p.String("build_file")
	a.BuildPath = p.String("build_path")
	a.BuildArgs = p.StringMap("build_args")
	a.ProxyURL = p.URL("proxy_url", "http", "https")
	a.RevocationEndpoint = p.URL("revocation_endpoint", "http", "https")
	// buildd-manager sends use_fetch_service False for OCI builds; the
	// reference has no fetch-service mode for them.
	if p.Bool("use_fetch_service") {
		p.Fail("use_fetch_service", "the oci manager has no fetch-service mode")
	}
	// metadata (build info, may be nil or hold nils) is not used by the
	// reference's builder either; it is accepted whatever it holds.
	if a.Name != "" && a.Name != strings.ToLower(a.Name) {
		// docker refuses upper case in --tag; say so before building.
		p.Fail("name", "must be lower case (it is the image's docker tag)")
	}
	for k, v := range a.BuildArgs {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.HasPrefix(k, "-") {
			p.Fail("build_args", "%q is not a build argument name", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			p.Fail("build_args", "the value of %q must not contain a NUL byte", k)
		}
	}
	if strings.HasPrefix(a.BuildFile, "-") {
		p.Fail("build_file", "must not start with '-'")
	}
	if err := p.Err(); err != nil {
		return OCIArgs{}, err
	}
	return a, nil
}

// OCIManager runs one oci build.
type OCIManager struct {
	req      Request
	args     OCIArgs
	progress ProgressFunc
}

// NewOCIManager is the oci manager's Factory.
func NewOCIManager(req Request) (Manager, error) {
	a, err := ParseOCIArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &OCIManager{req: req, args: a}, nil
}

// Args are the validated arguments.
func (m *OCIManager) Args() OCIArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *OCIManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager (buildd-manager does not ask for OCI builds).
func (m *OCIManager) ProxyInfo() (bool, string) { return false, m.args.RevocationEndpoint }

var ociPhases = []string{"start target", "install", "fetch source", "docker build", "stop proxy", "gather results", "clean up"}

// buildDir is /home/buildd/<name>, as the reference (docker's snap cannot
// see /build).
func (m *OCIManager) buildDir() string { return "/home/buildd/" + m.args.Name }

// Run implements Manager: the flow's phases up to docker build, then the
// proxy is stopped and its token revoked, then the image is saved and
// gathered.
func (m *OCIManager) Run(ctx context.Context, env *Env) Result {
	a := m.args
	fl := &Flow{
		Request:            m.req,
		Common:             a.Common,
		Progress:           m.progress,
		Phases:             ociPhases,
		ProxyURL:           a.ProxyURL,
		RevocationEndpoint: a.RevocationEndpoint,
		GitRepository:      a.GitRepository,
		GitPath:            a.GitPath,
		Branch:             a.Branch,
		SourceDir:          m.buildDir(),
		BuildPath:          a.BuildPath,
		Install:            m.install,
		Steps:              []FlowStep{{Phase: "docker build", Run: m.dockerBuild}},
	}
	b := NewContainerBuild(env, fl.Request, fl.Common, fl.Progress, fl.Phases)
	b.AddURLSecrets(fl.ProxyURL)
	b.AddURLSecrets(fl.GitRepository)
	b.AddURLSecrets(fl.Branch)
	// build_oci.py always clones with --depth 1.
	b.Shallow = true
	_, f := fl.build(ctx, b)
	b.Phase("stop proxy")
	b.StopProxy(ctx)
	b.Phase("gather results")
	if f == nil {
		f = m.gather(ctx, b)
	}
	return b.Finish(ctx, f)
}

const dockerDropInDir = "/etc/systemd/system/docker.service.d"

// dockerProxyDropIn is the systemd drop-in that gives dockerd the builder
// proxy for pulls (the reference's http_proxy.conf / https_proxy.conf).
func dockerProxyDropIn(variable, proxyURL string) string {
	return fmt.Sprintf("[Service]\nEnvironment=\"%s=%s\"\n", variable, proxyURL)
}

// install is build-oci's install phase.
func (m *OCIManager) install(ctx context.Context, b *ContainerBuild) *Failure {
	b.Logf("Running install phase...")
	var deps []string
	if b.Proxy != nil {
		deps = append(deps, proxyDeps...)
		if f := b.InstallGitProxy(ctx); f != nil {
			return f
		}
		if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"mkdir", "-p", dockerDropInDir}}); f != nil {
			return f
		}
		for _, v := range []string{"http_proxy", "https_proxy"} {
			p := dockerDropInDir + "/" + v + ".conf"
			body := dockerProxyDropIn(strings.ToUpper(v), b.Proxy.URL())
			if err := b.Target.CopyIn(ctx, strings.NewReader(body), p, 0, 0, 0o644); err != nil {
				return b.ctxFail(ctx, BuildPackageFail, "cannot write %s: %w", p, err)
			}
		}
	}
	vcs, f := withVCSDeps(ctx, b, m.args.Branch)
	if f != nil {
		return f
	}
	deps = append(deps, vcs...)
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: append([]string{"apt-get", "-y", "install"}, deps...)}); f != nil {
		return f
	}
	// docker.io comes from the build's archives (with Launchpad's
	// docker-rollback PPA among them when the master sends it).
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"apt-get", "-y", "install", "docker.io"}}); f != nil {
		return f
	}
	if f := b.InstallSnapStoreProxy(ctx, b.Env.Config.SnapStoreProxyURL, BuildPackageFail); f != nil {
		return f
	}
	if b.Proxy != nil {
		// The reference relies on docker.io's postinst reloading systemd
		// after the drop-ins are written; with docker.io already in the
		// image nothing runs it, and the restart would start dockerd
		// without the proxy.
		if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"systemctl", "daemon-reload"}}); f != nil {
			return f
		}
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"systemctl", "restart", "docker"}}); f != nil {
		return f
	}
	return b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"mkdir", "-p", "/home/buildd"}})
}

// buildFileArg resolves build_path/build_file in the target and returns
// it relative to the source tree (docker build runs there).
func (m *OCIManager) buildFileArg(ctx context.Context, b *ContainerBuild) (string, error) {
	rel := path.Join(m.args.BuildPath, m.args.BuildFile)
	if m.args.BuildPath == "" {
		rel = path.Join(".", m.args.BuildFile)
	}
	if path.IsAbs(m.args.BuildFile) || path.IsAbs(m.args.BuildPath) || strings.IndexByte(rel, 0) >= 0 {
		return "", fmt.Errorf("%w: %s is an absolute path", ErrInvalidBuildPath, rel)
	}
	dir, err := ResolveBuildPathInTarget(ctx, b.Target, m.buildDir(), path.Dir(rel))
	if err != nil {
		return "", err
	}
	base := path.Base(rel)
	if base == "." || base == ".." || base == "/" {
		return "", fmt.Errorf("%w: %s names a directory", ErrInvalidBuildPath, rel)
	}
	file := path.Join(dir, base)
	info, err := b.Target.Stat(ctx, path.Join(m.buildDir(), file))
	switch {
	case errors.Is(err, target.ErrNotExist):
		// docker build says so, as it would in the reference.
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrInvalidBuildPath, err)
	case !info.Mode.IsRegular():
		return "", fmt.Errorf("%w: %s is not a regular file", ErrInvalidBuildPath, rel)
	}
	return file, nil
}

// dockerBuildArgv is build-oci's docker build command line; context is
// the resolved build directory, file the --file path ("" = none).
func (m *OCIManager) dockerBuildArgv(proxyURL, file, context string) []string {
	argv := []string{"docker", "build", "--no-cache"}
	if proxyURL != "" {
		for _, v := range []string{"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"} {
			argv = append(argv, "--build-arg", v+"="+proxyURL)
		}
	}
	argv = append(argv, "--tag", m.args.Name)
	if file != "" {
		argv = append(argv, "--file", file)
	}
	// Last, so that the user's values override the proxy ones.
	keys := make([]string, 0, len(m.args.BuildArgs))
	for k := range m.args.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, "--build-arg="+k+"="+m.args.BuildArgs[k])
	}
	return append(argv, context)
}

// dockerBuild is build-oci's build phase; dir is the resolved build_path.
func (m *OCIManager) dockerBuild(ctx context.Context, b *ContainerBuild, dir string) *Failure {
	b.Logf("Running build phase...")
	file := ""
	if m.args.BuildFile != "" {
		var err error
		if file, err = m.buildFileArg(ctx, b); err != nil {
			if ctx.Err() != nil {
				return &Failure{Status: BuildAborted, Err: err}
			}
			return &Failure{Status: BuildPackageFail, Err: err}
		}
	}
	proxyURL := ""
	if b.Proxy != nil {
		proxyURL = b.Proxy.URL()
	}
	return b.Run(ctx, BuildPackageFail, target.Command{
		Args: m.dockerBuildArgv(proxyURL, file, dir),
		Env:  b.BuildEnv(),
		Dir:  m.buildDir(),
	})
}

// dockerStorageDriver asks docker which storage driver it runs with: the
// v2 metadata (pulled layers' registry digests) is kept under it.
func dockerStorageDriver(ctx context.Context, b *ContainerBuild) (string, error) {
	out, code, err := b.Output(ctx, target.Command{Args: []string{"docker", "info", "--format", "{{.Driver}}"}})
	if err != nil {
		return "", fmt.Errorf("cannot run docker info: %w", err)
	}
	if code != 0 {
		return "", fmt.Errorf("docker info failed with exit status %d", code)
	}
	d := strings.TrimSpace(out)
	if !storageDriverName.MatchString(d) {
		return "", fmt.Errorf("docker info names no usable storage driver (%q)", truncateForLog(d))
	}
	return d, nil
}

func truncateForLog(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

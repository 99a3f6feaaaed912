package builders

// What the container managers (snap, ci, oci, charm, rock, craft) share:
// typed argument parsing that names the bad argument, and ContainerBuild,
// the run-time half of launchpad-buildd's in-target operations: start the
// target, run commands with the reference's environment, wire the builder
// proxy, fetch the source on the host and stream it in, gather results
// straight into the file cache, and always tear down.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/proxy"
	"github.com/buildd-agent/buildd-agent/vcs"
)

// ---------------------------------------------------------------------------
// Arguments

// ArgParser reads a build's XML-RPC argument struct with the types
// launchpad-buildd's managers expect. The first problem is kept and
// reported by Err as an *ArgError naming the argument, so a Factory reads
// every argument in a row and checks once. A nil value counts as absent,
// as Python's args.get does.
type ArgParser struct {
	args map[string]any
	err  error
}

// NewArgParser reads args (which may be nil).
func NewArgParser(args map[string]any) *ArgParser { return &ArgParser{args: args} }

// Err is the first problem found, an *ArgError, or nil.
func (p *ArgParser) Err() error { return p.err }

// Fail records a problem with an argument unless one was recorded already.
func (p *ArgParser) Fail(name, format string, a ...any) {
	if p.err == nil {
		p.err = &ArgError{Arg: name, Reason: fmt.Sprintf(format, a...)}
	}
}

func (p *ArgParser) get(name string) (any, bool) {
	v, ok := p.args[name]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// Has reports whether name is present and not nil.
func (p *ArgParser) Has(name string) bool {
	_, ok := p.get(name)
	return ok
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case int, int32, int64:
		return "integer"
	case float64:
		return "double"
	case []byte:
		return "base64"
	case []any:
		return "array"
	case map[string]any:
		return "struct"
	}
	return fmt.Sprintf("%T", v)
}

// String returns a string argument; absent gives "".
func (p *ArgParser) String(name string) string {
	v, ok := p.get(name)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		p.Fail(name, "must be a string, not %s", typeName(v))
		return ""
	}
	if strings.IndexByte(s, 0) >= 0 {
		p.Fail(name, "must not contain a NUL byte")
		return ""
	}
	return s
}

// RequiredString returns a string argument that must be present and non-empty.
func (p *ArgParser) RequiredString(name string) string {
	if !p.Has(name) {
		p.Fail(name, "is required")
		return ""
	}
	s := p.String(name)
	if s == "" && p.err == nil {
		p.Fail(name, "must not be empty")
	}
	return s
}

// Bool returns a boolean argument; absent gives false.
func (p *ArgParser) Bool(name string) bool {
	v, ok := p.get(name)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		p.Fail(name, "must be a boolean, not %s", typeName(v))
	}
	return b
}

// StringList returns an array of strings; absent gives nil, an empty array
// a non-nil empty slice (the reference tells them apart for archives).
func (p *ArgParser) StringList(name string) []string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		p.Fail(name, "must be an array of strings, not %s", typeName(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			p.Fail(name, "element %d must be a string, not %s", i, typeName(e))
			return nil
		}
		out = append(out, s)
	}
	return out
}

// StringMap returns a struct whose members are all strings; absent gives nil.
func (p *ArgParser) StringMap(name string) map[string]string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.Fail(name, "must be a struct of strings, not %s", typeName(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for k, e := range m {
		s, ok := e.(string)
		if !ok {
			p.Fail(name, "member %q must be a string, not %s", k, typeName(e))
			return nil
		}
		out[k] = s
	}
	return out
}

// Scalar returns an integer or string argument as a string (Launchpad sends
// ids as either); ok is false when absent.
func (p *ArgParser) Scalar(name string) (s string, ok bool) {
	v, present := p.get(name)
	if !present {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case int:
		return strconv.Itoa(v), true
	case int32:
		return strconv.FormatInt(int64(v), 10), true
	}
	p.Fail(name, "must be an integer or a string, not %s", typeName(v))
	return "", false
}

// URL returns a URL argument with one of the given schemes and a host.
func (p *ArgParser) URL(name string, schemes ...string) string {
	s := p.String(name)
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the whole URL, which may carry credentials.
		p.Fail(name, "is not a valid URL")
		return ""
	}
	okScheme := false
	for _, sc := range schemes {
		if u.Scheme == sc {
			okScheme = true
		}
	}
	if !okScheme {
		p.Fail(name, "must be a %s URL", strings.Join(schemes, " or "))
		return ""
	}
	if u.Host == "" {
		p.Fail(name, "must name a host")
		return ""
	}
	return s
}

// Reject fails if name is present: for arguments the reference accepts but
// this agent does not support.
func (p *ArgParser) Reject(name, reason string) {
	if p.Has(name) {
		p.Fail(name, "%s", reason)
	}
}

var (
	// seriesName and archName end up in container and image names.
	seriesName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	archName   = regexp.MustCompile(`^[a-z0-9][a-z0-9]{0,15}$`)
	// snapName is snapd's rule for snap names (plus the store's length cap).
	snapName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
)

// PathComponent returns a required argument used as one path component
// inside the target (/build/<name>): no slash, not "." or "..".
func (p *ArgParser) PathComponent(name string) string {
	s := p.RequiredString(name)
	if s == "" {
		return ""
	}
	if strings.ContainsRune(s, '/') || s == "." || s == ".." || strings.HasPrefix(s, "-") || len(s) > 200 || !utf8.ValidString(s) {
		p.Fail(name, "must be a plain file name (no '/', not '.' or '..', not starting with '-')")
		return ""
	}
	return s
}

// CommonArgs are the arguments every manager reads (launchpad-buildd's
// BuildManager.initiate table).
type CommonArgs struct {
	Series string
	// ArchTag is "" when not given: the builder's own architecture then.
	ArchTag string
	// ImageType is "chroot" (the default) or "lxd".
	ImageType      string
	FastCleanup    bool
	ArchivePrivate bool
	Constraints    []string
	BuildURL       string
	// Archives (sources.list lines) and TrustedKeys (base64 keys) are nil
	// when not given.
	Archives    []string
	TrustedKeys []string
}

// ParseCommonArgs reads the common arguments.
func ParseCommonArgs(p *ArgParser) CommonArgs {
	c := CommonArgs{
		Series:         p.RequiredString("series"),
		ArchTag:        p.String("arch_tag"),
		ImageType:      p.String("image_type"),
		FastCleanup:    p.Bool("fast_cleanup"),
		ArchivePrivate: p.Bool("archive_private"),
		Constraints:    p.StringList("builder_constraints"),
		BuildURL:       p.String("build_url"),
		Archives:       p.StringList("archives"),
		TrustedKeys:    p.StringList("trusted_keys"),
	}
	if c.Series != "" && !seriesName.MatchString(c.Series) {
		p.Fail("series", "must be a series name like \"noble\" (lower-case letters, digits, '-')")
	}
	if c.ArchTag != "" && !archName.MatchString(c.ArchTag) {
		p.Fail("arch_tag", "must be an architecture tag like \"amd64\"")
	}
	switch c.ImageType {
	case "":
		c.ImageType = "chroot"
	case "chroot", "lxd":
	default:
		p.Fail("image_type", "must be \"chroot\" or \"lxd\", not %q", c.ImageType)
	}
	// An empty archives list makes the reference fail its sources step
	// (an argparse error → CHROOTFAIL); refusing it up front loses nothing.
	if c.Archives != nil && len(c.Archives) == 0 {
		p.Fail("archives", "must not be an empty array (leave it out instead)")
	}
	for i, k := range c.TrustedKeys {
		if _, err := decodeBase64Key(k); err != nil {
			p.Fail("trusted_keys", "element %d: %v", i, err)
		}
	}
	for i, line := range c.Archives {
		if strings.ContainsAny(line, "\n\r") || strings.TrimSpace(line) == "" {
			p.Fail("archives", "element %d must be one non-empty sources.list line", i)
		}
	}
	return c
}

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
// Seams onto package proxy and package vcs (wired at the end of this file). Managers
// see the builder proxy through this narrow interface so that unit tests
// can record what happens to it.

// BuilderProxy is a running local builder proxy (package proxy).
type BuilderProxy interface {
	// URL is what the target uses ("http://10.10.10.1:8222/").
	URL() string
	// Env is the proxy environment for build commands (http_proxy, ...,
	// GIT_PROXY_COMMAND, SNAPPY_STORE_NO_CDN), "KEY=VALUE" each.
	Env() []string
	// Secrets are strings the build log must never show.
	Secrets() []string
	// CutOff revokes the upstream token early and refuses further requests
	// (disable_proxy_after_pull).
	CutOff(ctx context.Context) error
	// Stop stops listening and revokes the token.
	Stop(ctx context.Context) error
}

// ProxyConfig is what a manager asks the builder proxy for.
type ProxyConfig struct {
	Upstream           string
	RevocationEndpoint string
	ListenAddr         string
	// Listener, if set, is served instead of listening on ListenAddr: a
	// socket inside the target's own network (target.Listener).
	Listener net.Listener
	Log      io.Writer
}

// CheckoutOptions are given to the host-side VCS checkout.
type CheckoutOptions struct {
	// ProxyURL is the upstream proxy (with credentials) to fetch through.
	ProxyURL string
	// MirrorDir caches repositories between builds ("" = none).
	MirrorDir string
	Log       io.Writer
}

var (
	// StartProxyFunc starts a builder proxy.
	StartProxyFunc = startBuilderProxy
	// GitProxyScript and GitProxyPath are the git:// proxy helper copied
	// into the target (the reference's lpbuildd-git-proxy).
	GitProxyScript = proxy.GitProxyScript
	GitProxyPath   = proxy.GitProxyPath
	// CheckoutFunc checks out repository at ref ("" = HEAD) into dir on the
	// host and returns the commit it resolved to.
	CheckoutFunc = checkoutGit
	// WriteTarFunc writes the tree at dir as a tar stream, every entry
	// owned by uid:gid; excludeVCS leaves out .git and friends.
	WriteTarFunc = func(w io.Writer, dir string, uid, gid int, excludeVCS bool) error {
		return vcs.WriteTar(w, dir, vcs.TarOptions{UID: uid, GID: gid, ExcludeVCS: excludeVCS})
	}
)

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

// ProxyListenAddr is where the builder proxy listens: [proxy] bind_address
// or the target's view of the host, on [proxy] port.
func (b *ContainerBuild) ProxyListenAddr() string {
	host := b.Env.Config.ProxyBind
	if _, own := b.Target.(target.Listener); host == "" || own {
		// A target with a network of its own has no bridge address.
		host = b.Target.ProxyHost()
	}
	port := b.Env.Config.ProxyPort
	if port == 0 {
		port = 8222
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// StartProxy starts the builder proxy in front of upstream and registers
// its secrets. A proxy that cannot start is the builder's fault.
func (b *ContainerBuild) StartProxy(ctx context.Context, upstream, revocationEndpoint string) *Failure {
	b.AddURLSecrets(upstream)
	if StartProxyFunc == nil {
		return Fail(BuildBuilderFail, "cannot start the builder proxy: this agent was built without one")
	}
	cfg := ProxyConfig{
		Upstream:           upstream,
		RevocationEndpoint: revocationEndpoint,
		ListenAddr:         b.ProxyListenAddr(),
		Log:                b.Log,
	}
	if l, ok := b.Target.(target.Listener); ok {
		// The build's network is its own: the proxy listens inside it,
		// where nothing on the host can use its credentials.
		ln, err := l.Listen(ctx, "tcp", cfg.ListenAddr)
		if err != nil {
			return b.ctxFail(ctx, BuildBuilderFail, "cannot start the builder proxy: %w", err)
		}
		cfg.Listener = ln
	}
	p, err := StartProxyFunc(ctx, cfg)
	if err != nil {
		return b.ctxFail(ctx, BuildBuilderFail, "cannot start the builder proxy: %w", err)
	}
	for _, s := range p.Secrets() {
		b.AddSecret(s)
	}
	b.Proxy = p
	b.ProxyEnv = p.Env()
	return nil
}

// StopProxy stops the builder proxy and revokes its token (once; errors
// are only logged, as the reference's revoke_proxy_token does).
func (b *ContainerBuild) StopProxy(ctx context.Context) {
	if b.Proxy == nil {
		return
	}
	b.proxyOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// Stop writes "Revoking proxy token..." and the outcome itself.
		if err := b.Proxy.Stop(ctx); err != nil {
			b.Logf("Unable to stop the builder proxy cleanly: %v", err)
		}
	})
}

// CutOffProxy revokes the token early (disable_proxy_after_pull).
func (b *ContainerBuild) CutOffProxy(ctx context.Context) {
	if b.Proxy == nil {
		return
	}
	if err := b.Proxy.CutOff(ctx); err != nil {
		b.Logf("Unable to revoke the proxy token: %v", err)
	}
}

// InstallGitProxy copies the git:// proxy helper into the target.
func (b *ContainerBuild) InstallGitProxy(ctx context.Context) *Failure {
	if len(GitProxyScript) == 0 {
		return Fail(BuildBuilderFail, "cannot install the git proxy helper: this agent was built without one")
	}
	if err := b.Target.CopyIn(ctx, bytes.NewReader(GitProxyScript), GitProxyPath, 0, 0, 0o755); err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "cannot copy the git proxy helper to %s: %w", GitProxyPath, err)
	}
	return nil
}

// InstallSVNServers writes /root/.subversion/servers pointing Subversion
// at the builder proxy (the reference's install_svn_servers).
func (b *ContainerBuild) InstallSVNServers(ctx context.Context, failStatus BuildStatus) *Failure {
	u, err := url.Parse(b.Proxy.URL())
	if err != nil {
		return Fail(BuildBuilderFail, "cannot parse the builder proxy URL: %w", err)
	}
	text := fmt.Sprintf("[global]\nhttp-proxy-host = %s\nhttp-proxy-port = %s\n", u.Hostname(), u.Port())
	if u.User != nil {
		text += fmt.Sprintf("http-proxy-username = %s\n", u.User.Username())
		if pw, ok := u.User.Password(); ok {
			text += fmt.Sprintf("http-proxy-password = %s\n", pw)
		}
	}
	if f := b.Run(ctx, failStatus, target.Command{Args: []string{"mkdir", "-p", "/root/.subversion"}}); f != nil {
		return f
	}
	if err := b.Target.CopyIn(ctx, strings.NewReader(text), "/root/.subversion/servers", 0, 0, 0o644); err != nil {
		return b.ctxFail(ctx, failStatus, "cannot write /root/.subversion/servers: %w", err)
	}
	return nil
}

// snapStoreAssertionsPath is where the snap store proxy's assertions are
// put in the target for `snap ack`.
const snapStoreAssertionsPath = "/tmp/snap-store-proxy.assertions"

// snapStoreClient fetches the snap store proxy's assertions; a seam for tests.
var snapStoreClient = &http.Client{Timeout: 60 * time.Second}

// InstallSnapStoreProxy points snapd at a snap store proxy (the
// reference's snapstore.py): the assertions are fetched from the host and
// acked in the target; the store id, if any, is set.
func (b *ContainerBuild) InstallSnapStoreProxy(ctx context.Context, proxyURL string, failStatus BuildStatus) *Failure {
	if proxyURL == "" {
		return nil
	}
	b.Logf("Installing snap store proxy assertions")
	u, err := url.Parse(proxyURL)
	if err != nil || u.Host == "" {
		return Fail(failStatus, "invalid snap store proxy URL in the configuration")
	}
	base := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/v2/auth/store/assertions"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String(), nil)
	if err != nil {
		return Fail(failStatus, "cannot fetch snap store proxy assertions: %w", err)
	}
	resp, err := snapStoreClient.Do(req)
	if err != nil {
		return b.ctxFail(ctx, failStatus, "cannot fetch snap store proxy assertions: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Fail(failStatus, "cannot fetch snap store proxy assertions from %s: %s", base.String(), resp.Status)
	}
	assertions, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return b.ctxFail(ctx, failStatus, "cannot read snap store proxy assertions: %w", err)
	}
	// The reference runs `snap ack /dev/stdin` with the assertions on
	// stdin. Re-opening /dev/stdin fails in an unprivileged container (the
	// pipe belongs to an unmapped host user), so they go through a file.
	if err := b.Target.CopyIn(ctx, bytes.NewReader(assertions), snapStoreAssertionsPath, 0, 0, 0o600); err != nil {
		return b.ctxFail(ctx, failStatus, "cannot copy the snap store proxy assertions in: %w", err)
	}
	if f := b.Run(ctx, failStatus, target.Command{Args: []string{"snap", "ack", snapStoreAssertionsPath}}); f != nil {
		return f
	}
	if f := b.Run(ctx, failStatus, target.Command{Args: []string{"rm", "-f", snapStoreAssertionsPath}}); f != nil {
		return f
	}
	if id := resp.Header.Get("X-Assertion-Store-Id"); id != "" {
		return b.Run(ctx, failStatus, target.Command{Args: []string{"snap", "set", "core", "proxy.store=" + id}})
	}
	return nil
}

// HostWorkDir makes a private directory on the host for this build's
// source checkout, under the state directory.
func (b *ContainerBuild) HostWorkDir() (string, error) {
	base := b.Env.Config.StateDir
	if base == "" {
		base = os.TempDir()
	}
	base = filepath.Join(base, "work")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("cannot create work directory %q: %w", base, err)
	}
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, b.Spec.BuildID)
	if len(id) > 64 {
		id = id[:64]
	}
	return os.MkdirTemp(base, "build-"+id+"-")
}

// FetchGit checks repository at ref out on the host (through the upstream
// proxy: the target has no other way out), streams the tree into the
// target at dest owned by root with its .git kept (snapcraft may read it,
// as it would after the reference's in-target clone), and returns the
// commit. Any VCS failure is the reference's "Build failed" (201 →
// PACKAGEFAIL); failing to write into the target is the builder's.
func (b *ContainerBuild) FetchGit(ctx context.Context, repository, ref, dest, upstreamProxy string) (string, *Failure) {
	if CheckoutFunc == nil || WriteTarFunc == nil {
		return "", Fail(BuildBuilderFail, "cannot fetch the source: this agent was built without VCS support")
	}
	work, err := b.HostWorkDir()
	if err != nil {
		return "", Fail(BuildBuilderFail, "%w", err)
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	mirror := ""
	if b.Env.Config.StateDir != "" {
		mirror = GitMirrorDir(b.Env.Config.StateDir)
	}
	rev, err := CheckoutFunc(ctx, repository, ref, tree, CheckoutOptions{ProxyURL: upstreamProxy, MirrorDir: mirror, Log: b.Log})
	if err != nil {
		return "", b.ctxFail(ctx, BuildPackageFail, "cannot check out %s: %w", describeSource(repository, ref), err)
	}
	if f := b.Run(ctx, BuildBuilderFail, target.Command{Args: []string{"mkdir", "-p", path.Dir(dest)}}); f != nil {
		return "", f
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := WriteTarFunc(pw, tree, 0, 0, false)
		pw.CloseWithError(err)
		done <- err
	}()
	copyErr := b.Target.CopyTreeIn(ctx, pr, dest, 0, 0)
	// Unblock the writer if the copy stopped before reading everything.
	pr.CloseWithError(errCopyStopped)
	tarErr := <-done
	if tarErr != nil && !errors.Is(tarErr, errCopyStopped) {
		return "", b.ctxFail(ctx, BuildPackageFail, "cannot pack the source tree: %w", tarErr)
	}
	if copyErr != nil {
		return "", b.ctxFail(ctx, BuildBuilderFail, "cannot copy the source into the target at %s: %w", dest, copyErr)
	}
	return rev, nil
}

var errCopyStopped = errors.New("the copy into the target stopped")

// describeSource names a repository for messages without its credentials.
func describeSource(repository, ref string) string {
	shown := repository
	if u, err := url.Parse(repository); err == nil && u.User != nil {
		u.User = nil
		shown = u.String()
	}
	if ref == "" {
		return shown
	}
	return shown + " at " + ref
}

// errNotRegular: a result path that is not a regular file (a FIFO, a
// device, a socket, a directory or a symlink) is never opened.
var errNotRegular = errors.New("not a regular file")

// AddWaitingFileFromTarget streams a result from the target straight into
// the file cache (no temporary copy), under its base name.
//
// Only a regular file is ever opened: the path is lstat'ed first, because
// opening a FIFO blocks until someone writes to it (in LXD's file API as in
// any plain open), and a device could stream for ever. A file over
// [limits] result_file_bytes by its apparent size (a sparse file counts in
// full) is refused before a byte is read. The backends' CopyOut checks the
// type of what it opens again, as a process left in the build may swap the
// file meanwhile; and whatever a backend does, the copy ends when ctx does.
func (b *ContainerBuild) AddWaitingFileFromTarget(ctx context.Context, p string) error {
	info, err := b.Target.Stat(ctx, p)
	if err != nil {
		return fmt.Errorf("cannot store %s: %w", p, err)
	}
	if !info.Mode.IsRegular() {
		return fmt.Errorf("cannot store %s: %w", p, errNotRegular)
	}
	if lim := b.Env.Config.ResultFileBytes; lim > 0 && info.Size > lim {
		b.Logf("Result %s is %d bytes, over this builder's limit of %d bytes ([limits] result_file_bytes); it is not stored.", p, info.Size, lim)
		return fmt.Errorf("cannot store %s: %w: %d bytes, [limits] result_file_bytes is %d", p, ErrResultTooLarge, info.Size, lim)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(b.Target.CopyOut(ctx, p, pw))
	}()
	// A backend blocked in CopyOut despite ctx must not hold the store.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	defer stop()
	_, err = b.Env.AddWaitingFile(path.Base(p), pr)
	pr.CloseWithError(errors.New("result stored"))
	if err != nil {
		return fmt.Errorf("cannot store %s: %w", p, err)
	}
	return nil
}

// GatherResults adds every regular file in dir (sorted, symlinks skipped as
// the reference does) whose name match accepts, then the extra paths that
// exist. A failure is the reference's "Failed to gather results" →
// PACKAGEFAIL; so is a result over the builder's size limits.
func (b *ContainerBuild) GatherResults(ctx context.Context, dir string, match func(name string) bool, extra ...string) *Failure {
	add := func(p string) error {
		err := b.AddWaitingFileFromTarget(ctx, p)
		if errors.Is(err, errNotRegular) {
			// Listed as a regular file, something else by the time it
			// was to be read: skipped, as it would have been.
			b.Logf("Not gathering %s: not a regular file", p)
			return nil
		}
		return err
	}
	err := func() error {
		if _, err := b.Target.Stat(ctx, dir); err == nil {
			entries, err := b.Target.ListDir(ctx, dir)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.Mode&fs.ModeSymlink != 0 || !match(e.Name) {
					continue
				}
				if !e.Mode.IsRegular() {
					b.Logf("Not gathering %s: not a regular file", path.Join(dir, e.Name))
					continue
				}
				if err := add(path.Join(dir, e.Name)); err != nil {
					return err
				}
			}
		} else if !errors.Is(err, target.ErrNotExist) {
			return err
		}
		for _, p := range extra {
			info, err := b.Target.Stat(ctx, p)
			if errors.Is(err, target.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if !info.Mode.IsRegular() {
				b.Logf("Not gathering %s: not a regular file", p)
				continue
			}
			if err := add(p); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
	}
	return nil
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

// PythonJSONString encodes s as Python's json.dumps does by default
// (ensure_ascii): non-ASCII as \uXXXX (surrogate pairs above the BMP), no
// HTML escaping, unlike encoding/json.
func PythonJSONString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\b':
			sb.WriteString(`\b`)
		case r == '\f':
			sb.WriteString(`\f`)
		case r < 0x20 || r >= 0x7f && r <= 0xffff:
			fmt.Fprintf(&sb, `\u%04x`, r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&sb, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// PythonJSONObject is json.dumps(d, sort_keys=True) of a flat string dict.
func PythonJSONObject(values map[string]string) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	// Byte order of UTF-8 is code point order, which is Python's.
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(PythonJSONString(k))
		sb.WriteString(": ")
		sb.WriteString(PythonJSONString(values[k]))
	}
	sb.WriteByte('}')
	return sb.String()
}

// startBuilderProxy is StartProxyFunc on package proxy.
func startBuilderProxy(ctx context.Context, cfg ProxyConfig) (BuilderProxy, error) {
	p, err := proxy.Start(ctx, proxy.Config{
		Upstream:           cfg.Upstream,
		RevocationEndpoint: cfg.RevocationEndpoint,
		ListenAddr:         cfg.ListenAddr,
		Listener:           cfg.Listener,
		Log:                cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// GitMirrorDir is where builds keep bare mirrors of the repositories they
// fetch (the agent prunes it by size).
func GitMirrorDir(stateDir string) string { return filepath.Join(stateDir, "git-mirrors") }

// checkoutGit is CheckoutFunc on package vcs.
func checkoutGit(ctx context.Context, repository, ref, dir string, opts CheckoutOptions) (string, error) {
	return vcs.Checkout(ctx, vcs.Source{Repository: repository, Path: ref}, dir, vcs.Options{
		ProxyURL:  opts.ProxyURL,
		MirrorDir: opts.MirrorDir,
		Log:       opts.Log,
	})
}

package builders

// The builder proxy as the container managers see it (a seam onto package
// proxy), and what points the target's tools at it: the git:// helper,
// Subversion's servers file, the snap store proxy.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/proxy"
)

// ---------------------------------------------------------------------------
// Seams onto package proxy (wired at the end of this file). Managers see
// the builder proxy through this narrow interface so that unit tests can
// record what happens to it.

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
	// FetchService revokes the token the fetch service's way.
	FetchService bool
}

var (
	// StartProxyFunc starts a builder proxy.
	StartProxyFunc = startBuilderProxy
	// GitProxyScript and GitProxyPath are the git:// proxy helper copied
	// into the target (the reference's lpbuildd-git-proxy).
	GitProxyScript = proxy.GitProxyScript
	GitProxyPath   = proxy.GitProxyPath
)

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
		FetchService:       b.FetchService,
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

// proxyDeps are the packages a build behind the builder proxy installs
// (the reference's proxy_deps). socat carries the git:// helper. python3
// is the reference's helper's interpreter; ours is a shell script, but
// builds have come to rely on python3 being there (snapcraft's and the
// crafts' plugins, project scripts), so it is installed all the same.
var proxyDeps = []string{"python3", "socat"}

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

// startBuilderProxy is StartProxyFunc on package proxy.
func startBuilderProxy(ctx context.Context, cfg ProxyConfig) (BuilderProxy, error) {
	p, err := proxy.Start(ctx, proxy.Config{
		Upstream:           cfg.Upstream,
		RevocationEndpoint: cfg.RevocationEndpoint,
		ListenAddr:         cfg.ListenAddr,
		Listener:           cfg.Listener,
		Log:                cfg.Log,
		FetchService:       cfg.FetchService,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

package tests

// The builder proxy seen from a real build container: tools in an LXD
// container on the project's bridge fetch through the proxy listening on
// the bridge address (10.10.10.1), which forwards to an authenticated squid
// on loopback, in front of origins on loopback. squid resolves the origins'
// name (example.com, which httptest's TLS certificate covers) to 127.0.0.1
// through its own hosts file: the container's no_proxy covers 127.0.0.1.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/proxy"
	"github.com/buildd-agent/buildd-agent/tests/gitserver"
	"github.com/buildd-agent/buildd-agent/tests/squidtest"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func TestBuilderProxyFromLXDContainer(t *testing.T) {
	testenv.RequireLXD(t)
	testenv.RequireCommand(t, "squid")
	tarball := testenv.ChrootTarball(t)
	ctx := context.Background()

	// Origins: a payload server over HTTP and HTTPS, and a git server.
	const payload = 8 << 20
	data := bytes.Repeat([]byte("builder proxy payload\n"), payload/22+1)[:payload]
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	origin := httptest.NewServer(h)
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(h)
	defer tlsOrigin.Close()
	git := gitserver.Start(t)
	repo := git.NewRepo(t, "app")
	repo.WriteFile(t, "snapcraft.yaml", "name: app\n")
	head := repo.Commit(t, "first")

	const user, pass = "lxdjob", "lxd-s3cret/t0ken"
	squid := squidtest.Start(t, squidtest.Options{
		Users: map[string]string{user: pass},
		Hosts: map[string]string{"example.com": "127.0.0.1"},
	})
	var revMu sync.Mutex
	var revocations []string
	rev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		revMu.Lock()
		revocations = append(revocations, r.Method+" "+r.URL.Path)
		revMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rev.Close()

	// The container.
	cfg := lxd.Config{
		Instance: "proxytest", NamePrefix: "proxytest", Profile: "buildd-agent-proxytest",
		Address: "10.10.10.150", ReadyTimeout: 90 * time.Second, ImageMaxCount: 1,
	}
	host, err := lxd.NewHost(ctx, cfg)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() {
		host.Close()
		if c, err := lxdclient.ConnectLXDUnix("", nil); err == nil {
			_ = c.DeleteProfile(cfg.Profile)
			c.Disconnect()
		}
	})
	buildLog := &testenv.SyncBuffer{}
	tgt, err := host.Factory()(ctx, target.Spec{BuildID: "proxy-1", Series: "bookworm", Arch: "amd64"},
		target.Options{Log: buildLog, ReadyTimeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tgt.Stop(ctx); _ = tgt.Remove(ctx) })
	sha, err := proxyTestFileSHA1(tarball)
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.Create(ctx, target.Image{Path: tarball, SHA1: sha, Type: "chroot"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := tgt.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}

	// The proxy on the bridge, as a build gets it.
	p, err := proxy.Start(ctx, proxy.Config{
		Upstream:           squid.URL(user),
		RevocationEndpoint: rev.URL + "/tokens/" + user,
		ListenAddr:         net.JoinHostPort(tgt.ProxyHost(), "0"),
		Log:                buildLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx)
	if !strings.HasPrefix(p.URL(), "http://10.10.10.1:") {
		t.Fatalf("proxy URL %s", p.URL())
	}

	run := func(args ...string) (string, int) {
		t.Helper()
		var out bytes.Buffer
		code, err := tgt.Run(ctx, target.Command{Args: args, Env: p.Env(), Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return out.String(), code
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, code := run(args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s\nbuild log:\n%s\nsquid:\n%s", args, code, out, buildLog, squid.AccessLog())
		}
		return out
	}
	portOf := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Port()
	}

	// curl, plain HTTP through the proxy.
	out := mustRun("sh", "-c", "curl -sS --fail http://example.com:"+portOf(origin.URL)+"/payload | sha256sum")
	if !strings.HasPrefix(out, want) {
		t.Errorf("HTTP payload sha256 %q, want %s", out, want)
	}
	// curl, HTTPS through a CONNECT tunnel, verifying the test CA.
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrigin.Certificate().Raw})
	if err := tgt.CopyIn(ctx, bytes.NewReader(caPEM), "/tmp/test-ca.pem", 0, 0, 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRun("sh", "-c", "curl -sS --fail --cacert /tmp/test-ca.pem https://example.com:"+portOf(tlsOrigin.URL)+"/payload | sha256sum")
	if !strings.HasPrefix(out, want) {
		t.Errorf("HTTPS payload sha256 %q, want %s", out, want)
	}
	// git over smart HTTP through the proxy.
	httpRepo := strings.Replace(repo.URL(), "127.0.0.1", "example.com", 1)
	mustRun("git", "clone", "-q", httpRepo, "/tmp/app-http")
	if got := strings.TrimSpace(mustRun("git", "-C", "/tmp/app-http", "rev-parse", "HEAD")); got != head {
		t.Errorf("HTTP clone at %s, want %s", got, head)
	}
	// git:// through GIT_PROXY_COMMAND (socat CONNECT through the proxy).
	if err := tgt.CopyIn(ctx, bytes.NewReader(proxy.GitProxyScript), proxy.GitProxyPath, 0, 0, 0o755); err != nil {
		t.Fatal(err)
	}
	gitRepo := strings.Replace(repo.GitURL(), "127.0.0.1", "example.com", 1)
	mustRun("git", "clone", "-q", gitRepo, "/tmp/app-git")
	if got := strings.TrimSpace(mustRun("git", "-C", "/tmp/app-git", "rev-parse", "HEAD")); got != head {
		t.Errorf("git:// clone at %s, want %s", got, head)
	}

	// The build log has one access line per request, never the secret.
	log := buildLog.String()
	for _, wantLine := range []string{
		`"GET http://example.com:` + portOf(origin.URL) + `/payload HTTP/1.1" 200 ` + strconv.Itoa(payload) + ` "-" "curl/`,
		`"CONNECT example.com:` + portOf(tlsOrigin.URL) + ` HTTP/1.1" 200 `,
		`"GET ` + httpRepo + `/info/refs?service=git-upload-pack HTTP/1.1" 200 `,
		// socat speaks HTTP/1.0.
		`"CONNECT example.com:` + portOf(git.GitBase) + ` HTTP/1.0" 200 `,
	} {
		if !strings.Contains(log, wantLine) {
			t.Errorf("build log lacks %q:\n%s", wantLine, log)
		}
	}

	// disable_proxy_after_pull: the container is cut off and the token revoked.
	if err := p.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://example.com:"+portOf(origin.URL)+"/payload")
	if out != "403" {
		t.Errorf("after cut-off curl got %q, want 403", out)
	}
	p.Stop(ctx)
	revMu.Lock()
	if len(revocations) != 1 || revocations[0] != "DELETE /tokens/"+user {
		t.Errorf("revocations %q", revocations)
	}
	revMu.Unlock()
	for _, s := range p.Secrets() {
		if strings.Contains(buildLog.String(), s) {
			t.Errorf("build log contains the secret %q", s)
		}
	}
	if t.Failed() {
		t.Logf("build log:\n%s", buildLog)
	}
}

func proxyTestFileSHA1(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

package tests

// End-to-end tests of snap builds: the real buildd-agent binary driven over
// XML-RPC the way buildd-manager drives it, building in a real LXD
// container made from the test chroot (with the snap/snapcraft stand-ins
// of tests/standins), fetching through a real authenticated squid, from a
// real git server. Each test owns the container lp-<series>-<arch> for its
// duration, so none of them runs in parallel.

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/gitserver"
	"github.com/buildd-agent/buildd-agent/tests/squidtest"
	"github.com/buildd-agent/buildd-agent/tests/standins"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	// snapE2ESeries and snapE2EArch name the container lp-<series>-<arch>.
	snapE2ESeries = "bookworm"
	snapE2EArch   = "amd64"
	// snapE2EInstance labels the LXD objects of these tests' agents.
	snapE2EInstance = "snape2e"
	snapE2EProfile  = "buildd-agent-snape2e"
	snapE2EUser     = "snapbuilder"
	snapE2EPass     = "pr0xy-s3cret-t0ken"
)

func snapE2EContainer() string { return "lp-" + snapE2ESeries + "-" + snapE2EArch }

var (
	snapChrootOnce sync.Once
	snapChrootSHA1 string
)

// snapE2EChroot is the stand-in chroot tarball and its SHA-1.
func snapE2EChroot(t testing.TB) (string, string) {
	p := standins.TestChroot(t)
	snapChrootOnce.Do(func() {
		f, err := os.Open(p)
		if err != nil {
			return
		}
		defer f.Close()
		h := sha1.New()
		io.Copy(h, f)
		snapChrootSHA1 = hex.EncodeToString(h.Sum(nil))
	})
	if snapChrootSHA1 == "" {
		t.Fatalf("cannot hash %s", p)
	}
	return p, snapChrootSHA1
}

var (
	snapBinOnce sync.Once
	snapBinPath string
	snapBinErr  error
)

// snapE2EBinary builds cmd/buildd-agent once per test process.
func snapE2EBinary(t testing.TB) string {
	t.Helper()
	snapBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snape2e-bin-")
		if err != nil {
			snapBinErr = err
			return
		}
		snapBinPath = filepath.Join(dir, "buildd-agent")
		cmd := exec.Command("go", "build", "-o", snapBinPath, "./cmd/buildd-agent")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			snapBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if snapBinErr != nil {
		t.Fatal(snapBinErr)
	}
	return snapBinPath
}

func snapFreePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("cannot find a free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// snapFixture is what a snap build talks to: squid (upstream proxy), an
// origin behind it, the git server, a revocation endpoint and a server
// handing out the chroot.
type snapFixture struct {
	squid       *squidtest.Server
	upstream    string
	origin      *httptest.Server
	payload     string
	git         *gitserver.Server
	repo        *gitserver.Repo
	revMu       sync.Mutex
	revocations []string
	revURL      string
	chrootPath  string
	chrootSHA1  string
	chrootURL   string
	// archiveLine and archiveKey are the signed test archive the builds
	// get as `archives` and `trusted_keys` (buildd-manager always sends
	// them): stand-ins of what the install phases add that the test
	// chroot lacks (python3 of the proxy dependencies; the crafts'
	// python3-pip, python3-setuptools and dirmngr).
	archiveLine string
	archiveKey  string
}

func newSnapFixture(t testing.TB) *snapFixture {
	t.Helper()
	testenv.RequireLXD(t)
	testenv.RequireCommand(t, "lxc")
	f := &snapFixture{}
	f.chrootPath, f.chrootSHA1 = snapE2EChroot(t)
	f.squid = squidtest.Start(t, squidtest.Options{Users: map[string]string{snapE2EUser: snapE2EPass}})
	f.upstream = f.squid.URL(snapE2EUser)
	f.payload = fmt.Sprintf("payload-%d", time.Now().UnixNano())
	// The origin listens on 127.0.0.2: squid reaches it on loopback, and
	// the build cannot mistake it for its own localhost (the proxy
	// environment has no_proxy for 127.0.0.1 and localhost).
	f.origin = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, f.payload)
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("cannot listen on 127.0.0.2: %v", err)
	}
	f.origin.Listener.Close()
	f.origin.Listener = ln
	f.origin.Start()
	t.Cleanup(f.origin.Close)
	rev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		f.revMu.Lock()
		f.revocations = append(f.revocations, r.Method+" "+r.URL.Path+" "+user+":"+pass)
		f.revMu.Unlock()
	}))
	t.Cleanup(rev.Close)
	f.revURL = rev.URL + "/tokens/" + snapE2EUser
	chroot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, f.chrootPath)
	}))
	t.Cleanup(chroot.Close)
	f.chrootURL = chroot.URL + "/chroot.tar.gz"
	f.git = gitserver.Start(t)
	f.repo = f.git.NewRepo(t, "hello")
	debs := t.TempDir()
	var extra []string
	for _, name := range []string{"python3", "python3-pip", "python3-setuptools", "dirmngr"} {
		extra = append(extra, aptarchive.BinaryPackage(t, debs, aptarchive.BinarySpec{Name: name, Version: "99.0+standin"}))
	}
	archive := aptarchive.Build(t, aptarchive.Options{NoBase: true, Extra: extra})
	// On the bridge: apt in the container reaches it directly.
	f.archiveLine = archive.SourcesLine(archive.Serve(t, "10.10.10.1:0"))
	f.archiveKey = archive.TrustedKey()
	return f
}

// trustedKeyFile writes the archive's key (base64, as build() gets it)
// to a file for a local build's --trusted-key.
func (f *snapFixture) trustedKeyFile(t testing.TB) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(f.archiveKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(p, key, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapcraftYAML is the test snap's snapcraft.yaml; extra adds stand-in keys.
func (f *snapFixture) snapcraftYAML(version string, extra ...string) string {
	y := fmt.Sprintf("name: hello\nversion: '%s'\nsummary: test snap\nstandin-fetch: %s/payload\n", version, f.origin.URL)
	for _, e := range extra {
		y += e + "\n"
	}
	return y
}

func (f *snapFixture) revoked() []string {
	f.revMu.Lock()
	defer f.revMu.Unlock()
	return append([]string(nil), f.revocations...)
}

// snapAgent is a running `buildd-agent run`.
type snapAgent struct {
	url       string
	stateDir  string
	proxyPort int
	config    string
	cmd       *exec.Cmd
	output    *testenv.SyncBuffer
	exited    chan struct{}
}

// lxdTestBridge makes a test's own LXD bridge named name at host/24, as
// the agent would (it repairs it to its own settings at start), so that
// archives and proxies can listen on its address before the agent runs,
// and deletes it at the end. On the shared lpbuilddbr0 every e2e agent's
// container is 10.10.10.2, so tests that may run beside others use their
// own. No NAT and no routing: LXD's default ipv4.routing=true would turn
// on the host's forwarding (TestLXDTestBridgeHasNoRouteOut).
func lxdTestBridge(t testing.TB, name, host string) {
	t.Helper()
	exec.Command("lxc", "network", "delete", name).Run() // a leftover
	out, err := exec.Command("lxc", "network", "create", name, "ipv4.address="+host+"/24",
		"ipv4.nat=false", "ipv4.routing=false", "ipv4.dhcp=false", "ipv6.address=none").CombinedOutput()
	if err != nil {
		t.Fatalf("lxc network create %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("lxc", "network", "delete", name).Run() })
}

// writeSnapAgentConfig writes a config for a test agent: loopback port,
// state in dir, its own proxy port on the bridge, its own LXD label.
func writeSnapAgentConfig(t testing.TB, dir string, port, proxyPort int, proxyExtra ...string) string {
	t.Helper()
	return writeLXDAgentConfig(t, dir, snapE2EArch, port, proxyPort, snapE2EProfile, snapE2ELXDExtra, proxyExtra...)
}

// writeLXDAgentConfig writes the config of a test agent on the LXD
// backend: loopback port, state in dir, its own proxy port, its own LXD
// profile, lxdExtra appended to [lxd] (e.g. its instance label), and no
// NAT: test containers have no route out.
func writeLXDAgentConfig(t testing.TB, dir, arch string, port, proxyPort int, profile, lxdExtra string, proxyExtra ...string) string {
	t.Helper()
	conf := fmt.Sprintf(`[builder]
architectures = [%q]
bind_address = "127.0.0.1"
port = %d
state_dir = %q
backend = "lxd"
abort_timeout = "120s"

[proxy]
port = %d
%s

[lxd]
bridge = "lpbuilddbr0"
subnet = "10.10.10.1/24"
nat = false
storage_pool = "default"
profile = %q
privileged = false
ready_timeout = "120s"
%s
[log]
level = "debug"
`, arch, port, dir, proxyPort, strings.Join(proxyExtra, "\n"), profile, lxdExtra)
	p := filepath.Join(dir, "buildd-agent.toml")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapE2ELXDExtra is appended to [lxd]: the tests' own instance label.
var snapE2ELXDExtra = fmt.Sprintf("instance = %q\n", snapE2EInstance)

func startSnapAgent(t testing.TB, proxyExtra ...string) *snapAgent {
	t.Helper()
	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	port := snapFreePort(t, "127.0.0.1")
	a.proxyPort = snapFreePort(t, "10.10.10.1")
	a.config = writeSnapAgentConfig(t, a.stateDir, port, a.proxyPort, proxyExtra...)
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.start(t, bin, func() {
		// Whatever happened, leave no container (nor our profile) behind.
		exec.Command("lxc", "delete", "--force", snapE2EContainer()).Run()
		exec.Command("lxc", "profile", "delete", snapE2EProfile).Run()
	})
	return a
}

// start runs `buildd-agent run --config a.config` and waits until it
// answers; at the test's end it is stopped (SIGINT, then SIGKILL after
// 60 s), its output shown if the test failed, and then cleanup runs.
func (a *snapAgent) start(t testing.TB, bin string, cleanup func()) {
	t.Helper()
	a.cmd = exec.Command(bin, "run", "--config", a.config)
	a.cmd.Stdout, a.cmd.Stderr = a.output, a.output
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.cmd.Process.Signal(os.Interrupt)
		select {
		case <-a.exited:
		case <-time.After(60 * time.Second):
			a.cmd.Process.Kill()
			<-a.exited
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", a.output.String())
		}
		if cleanup != nil {
			cleanup()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := a.callErr("echo", "ping"); err == nil {
			return
		}
		select {
		case <-a.exited:
			t.Fatalf("agent exited at start:\n%s", a.output.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not answer within 60s:\n%s", a.output.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *snapAgent) callErr(method string, params ...any) (any, error) {
	return rpcCall(a.url, method, params...)
}

func (a *snapAgent) call(t testing.TB, method string, params ...any) any {
	t.Helper()
	v, err := a.callErr(method, params...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return v
}

func (a *snapAgent) status(t testing.TB) map[string]any {
	t.Helper()
	st, ok := a.call(t, "status").(map[string]any)
	if !ok {
		t.Fatalf("status() is not a struct")
	}
	return st
}

// waitState polls status() until builder_status is want.
func (a *snapAgent) waitState(t testing.TB, want string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := a.status(t)
		if st["builder_status"] == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("builder still %v after %s (want %s); log:\n%s", st["builder_status"], timeout, want, a.fetch(t, "buildlog"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (a *snapAgent) fetch(t testing.TB, name string) []byte {
	t.Helper()
	resp, err := http.Get(a.url + "/filecache/" + name)
	if err != nil {
		t.Fatalf("GET /filecache/%s: %v", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /filecache/%s: %v %s", name, err, resp.Status)
	}
	return b
}

// ensureChroot gives the agent the chroot the way buildd-manager does.
func (a *snapAgent) ensureChroot(t testing.TB, f *snapFixture) {
	t.Helper()
	res, ok := a.call(t, "ensurepresent", f.chrootSHA1, f.chrootURL, "", "").([]any)
	if !ok || len(res) != 2 || res[0] != true {
		t.Fatalf("ensurepresent = %#v", res)
	}
}

// startBuild calls build() and checks it was accepted.
func (a *snapAgent) startBuild(t testing.TB, f *snapFixture, id string, args map[string]any) {
	t.Helper()
	res, ok := a.call(t, "build", id, "snap", f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" || res[1] != id {
		t.Fatalf("build() = %#v", res)
	}
}

func (f *snapFixture) buildArgs(gitPath string) map[string]any {
	args := map[string]any{
		"series":                  snapE2ESeries,
		"arch_tag":                snapE2EArch,
		"name":                    "hello",
		"channels":                map[string]any{"snapcraft": "8.x/stable", "core22": "latest/stable"},
		"build_request_id":        int64(4242),
		"build_request_timestamp": "2026-11-28T12:00:00Z",
		"build_url":               "https://launchpad.test/~u/+snap/hello/+build/77",
		"proxy_url":               f.upstream,
		"revocation_endpoint":     f.revURL,
		"git_repository":          f.repo.URL(),
		"target_architectures":    []any{snapE2EArch},
		"archives":                []any{f.archiveLine},
		"trusted_keys":            []any{f.archiveKey},
	}
	if gitPath != "" {
		args["git_path"] = gitPath
	}
	return args
}

func snapContainerExists(name string) bool {
	return exec.Command("lxc", "info", name).Run() == nil
}

func snapSHA1Hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// TestSnapE2EFromTag is buildd-manager's view of a good snap build from a
// tag, through squid, against the real binary.
func TestSnapE2EFromTag(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("1.0"))
	f.repo.WriteFile(t, "src/hello.c", "int main(void) { return 0; }\n")
	commit := f.repo.Commit(t, "hello 1.0")
	f.repo.AnnotatedTag(t, "1.0", "release 1.0")

	// A snap store proxy ([proxy] snapstore): the agent fetches its
	// assertions on the host and acks them in the target.
	var storeHits atomic.Int32
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/auth/store/assertions" {
			http.NotFound(w, r)
			return
		}
		storeHits.Add(1)
		w.Header().Set("X-Assertion-Store-Id", "snape2e-store")
		io.WriteString(w, "type: account-key\n\nsignature\n")
	}))
	t.Cleanup(store.Close)

	a := startSnapAgent(t, fmt.Sprintf("snapstore = %q", store.URL+"/"))
	a.ensureChroot(t, f)
	args := f.buildArgs("refs/tags/1.0")
	a.startBuild(t, f, "SNAPBUILD-1", args)
	st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
	log := string(a.fetch(t, "buildlog"))
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if st["build_id"] != "SNAPBUILD-1" {
		t.Errorf("build_id = %v", st["build_id"])
	}
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v, want the tagged commit %s", st["revision_id"], commit)
	}
	filemap, _ := st["filemap"].(map[string]any)
	names := make([]string, 0, len(filemap))
	for n := range filemap {
		names = append(names, n)
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "hello_1.0_amd64.manifest hello_1.0_amd64.snap" {
		t.Fatalf("filemap names = %q (the symlink hello_latest.snap must not be there)", got)
	}
	for name, sum := range filemap {
		data := a.fetch(t, sum.(string))
		if snapSHA1Hex(data) != sum {
			t.Errorf("%s: content SHA-1 %s != filemap %s", name, snapSHA1Hex(data), sum)
		}
		switch {
		case strings.HasSuffix(name, ".snap"):
			if !bytes.HasPrefix(data, []byte("hsqs")) {
				t.Errorf("%s is not a squashfs", name)
			}
		case strings.HasSuffix(name, ".manifest"):
			m := string(data)
			for _, want := range []string{
				"cwd: /build/hello\n",
				"user: 0:0\n",
				"env SNAPCRAFT_BUILD_FOR=amd64\n",
				"env SNAPCRAFT_BUILD_INFO=1\n",
				`env SNAPCRAFT_IMAGE_INFO={"build-request-id": "lp-4242", "build-request-timestamp": "2026-11-28T12:00:00Z", "build_url": "https://launchpad.test/~u/+snap/hello/+build/77"}` + "\n",
				fmt.Sprintf("env http_proxy=http://10.10.10.1:%d/\n", a.proxyPort),
				"env GIT_PROXY_COMMAND=/usr/local/bin/lpbuildd-git-proxy\n",
				"fetched: " + f.payload + "\n",
			} {
				if !strings.Contains(m, want) {
					t.Errorf("manifest lacks %q:\n%s", want, m)
				}
			}
		}
	}
	// The build log: the build URL first, the reference's RUN lines, no secret.
	if !strings.HasPrefix(log, args["build_url"].(string)+"\n") || strings.Count(log, args["build_url"].(string)) != 1 {
		t.Errorf("log does not start with the build URL, once:\n%.300s", log)
	}
	// python3 with the proxy dependencies: builds rely on it (issue 12).
	// (udev is not in the test archive, which replaces the chroot's.)
	for _, want := range []string{"RUN: apt-get -y install python3 socat git sudo\n",
		"RUN: snapcraft pull\n", "RUN: snap install --classic --channel=8.x/stable snapcraft\n",
		"RUN: sha512sum hello_1.0_amd64.snap\n", "Revoking proxy token...\n", "GET " + f.origin.URL + "/payload",
		"RUN: snap ack /tmp/snap-store-proxy.assertions\n", "RUN: snap set core proxy.store=snape2e-store\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if storeHits.Load() != 1 {
		t.Errorf("snap store proxy assertions fetched %d times, want 1", storeHits.Load())
	}
	if strings.Contains(log, snapE2EPass) {
		t.Errorf("the build log shows the proxy password")
	}
	if tail, ok := st["logtail"].([]byte); ok && bytes.Contains(tail, []byte(snapE2EPass)) {
		t.Errorf("logtail shows the proxy password")
	}
	// The snapcraft stand-in's fetch went through squid, with credentials.
	if al := f.squid.AccessLog(); !strings.Contains(al, f.origin.URL+"/payload") || !strings.Contains(al, snapE2EUser) {
		t.Errorf("squid did not see the fetch:\n%s", al)
	}
	if revs := f.revoked(); len(revs) != 1 || revs[0] != "DELETE /tokens/"+snapE2EUser+" "+snapE2EUser+":"+snapE2EPass {
		t.Errorf("revocations = %q", revs)
	}
	if snapContainerExists(snapE2EContainer()) {
		t.Errorf("container %s left after the build", snapE2EContainer())
	}
	if got := a.call(t, "clean"); got != "BuilderStatus.IDLE" {
		t.Errorf("clean() = %v", got)
	}
	if st := a.status(t); st["builder_status"] != "BuilderStatus.IDLE" || st["revision_id"] != nil {
		t.Errorf("after clean: %v", st)
	}
}

// TestSnapE2EBranchWithSourceTarball builds a branch and checks the source
// tarball (sorted members, all 0/0, no VCS files), the early token
// revocation, and fast_cleanup leaving the container.
func TestSnapE2EBranchWithSourceTarball(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("0.1"))
	f.repo.WriteFile(t, "README", "readme\n")
	f.repo.Commit(t, "base")
	f.repo.Branch(t, "feature")
	f.repo.WriteFile(t, "src/b.txt", "b\n")
	f.repo.WriteFile(t, "src/a.txt", "a\n")
	f.repo.WriteFile(t, ".gitignore", "parts/\n")
	commit := f.repo.Commit(t, "feature work")

	a := startSnapAgent(t)
	a.ensureChroot(t, f)
	args := f.buildArgs("feature")
	args["build_source_tarball"] = true
	args["disable_proxy_after_pull"] = true
	args["fast_cleanup"] = true
	delete(args, "target_architectures")
	a.startBuild(t, f, "SNAPBUILD-2", args)
	st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
	log := string(a.fetch(t, "buildlog"))
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v, want %s", st["revision_id"], commit)
	}
	filemap, _ := st["filemap"].(map[string]any)
	sum, ok := filemap["hello.tar.gz"].(string)
	if !ok {
		t.Fatalf("no hello.tar.gz in %v", filemap)
	}
	tarball := filepath.Join(t.TempDir(), "hello.tar.gz")
	os.WriteFile(tarball, a.fetch(t, sum), 0o644)
	out, err := exec.Command("tar", "-tvzf", tarball, "--numeric-owner").CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tvzf: %v\n%s", err, out)
	}
	var members []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 {
			t.Fatalf("odd tar line %q", line)
		}
		if fields[1] != "0/0" {
			t.Errorf("%s owned by %s, want 0/0", fields[5], fields[1])
		}
		members = append(members, fields[5])
	}
	if !sort.StringsAreSorted(members) {
		t.Errorf("members not sorted: %q", members)
	}
	for _, m := range members {
		if strings.Contains(m, ".git/") || strings.HasSuffix(m, ".git") || strings.HasSuffix(m, ".gitignore") {
			t.Errorf("VCS file in the tarball: %s", m)
		}
	}
	for _, want := range []string{"hello/", "hello/README", "hello/snap/snapcraft.yaml", "hello/src/a.txt", "hello/src/b.txt"} {
		if !snapContains(members, want) {
			t.Errorf("tarball lacks %s: %q", want, members)
		}
	}
	// Cut off after pull: one revocation, logged between pull and build.
	iPull, iRevoke, iBuild := strings.Index(log, "RUN: snapcraft pull"), strings.Index(log, "Revoking proxy token..."), strings.Index(log, "RUN: snapcraft \n")
	if !(iPull >= 0 && iPull < iRevoke && iRevoke < iBuild) {
		t.Errorf("revocation not between pull (%d) and build (%d): %d", iPull, iBuild, iRevoke)
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations = %q, want exactly one", revs)
	}
	// fast_cleanup: the container is left as it was, for the machine to be
	// thrown away; here the test removes it.
	if !strings.Contains(log, "fast_cleanup: skipping what the machine's end removes\n") {
		t.Errorf("log lacks the fast_cleanup line")
	}
	if !snapContainerExists(snapE2EContainer()) {
		t.Errorf("fast_cleanup, yet the container is gone")
	}
	a.call(t, "clean")
	if err := exec.Command("lxc", "delete", "--force", snapE2EContainer()).Run(); err != nil {
		t.Errorf("cannot delete the container left by fast_cleanup: %v", err)
	}
}

func snapContains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestSnapE2EFailures checks the status mapping of failed builds.
func TestSnapE2EFailures(t *testing.T) {
	f := newSnapFixture(t)
	a := startSnapAgent(t)
	a.ensureChroot(t, f)
	cases := []struct {
		name   string
		yaml   []string
		path   string
		occupy bool
		want   string
		log    string
	}{
		// PACKAGEFAIL: the snap's own build fails (the other exit codes and
		// phases map the same way; builders' unit tests cover each).
		{name: "snapcraft exits 201", yaml: []string{"standin-fail-build: 201"}, want: "BuildStatus.PACKAGEFAIL", log: "Build failed: snapcraft failed with exit status 201"},
		// BUILDERFAIL: the builder cannot offer its proxy.
		{name: "proxy port taken", occupy: true, want: "BuildStatus.BUILDERFAIL", log: "cannot start the builder proxy"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("2."+strconv.Itoa(i), tc.yaml...))
			f.repo.Commit(t, tc.name)
			if tc.occupy {
				l, err := net.Listen("tcp", net.JoinHostPort("10.10.10.1", strconv.Itoa(a.proxyPort)))
				if err != nil {
					t.Fatalf("cannot occupy the proxy port: %v", err)
				}
				defer l.Close()
			}
			id := "SNAPFAIL-" + strconv.Itoa(i)
			a.startBuild(t, f, id, f.buildArgs(tc.path))
			st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
			log := string(a.fetch(t, "buildlog"))
			if st["build_status"] != tc.want {
				t.Errorf("build_status = %v, want %s; log:\n%s", st["build_status"], tc.want, log)
			}
			if !strings.Contains(log, tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, log)
			}
			if _, has := st["filemap"]; has != (tc.want == "BuildStatus.PACKAGEFAIL") {
				t.Errorf("filemap present = %v for %s", has, tc.want)
			}
			if snapContainerExists(snapE2EContainer()) {
				t.Errorf("container left after a failed build")
			}
			if strings.Contains(log, snapE2EPass) {
				t.Errorf("log shows the proxy password")
			}
			a.call(t, "clean")
		})
	}
}

// TestSnapE2EAbort aborts during snapcraft: WAITING ABORTED, nothing left.
func TestSnapE2EAbort(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("3.0", "standin-sleep-build: 600"))
	f.repo.Commit(t, "slow")
	a := startSnapAgent(t)
	a.ensureChroot(t, f)
	a.startBuild(t, f, "SNAPABORT-1", f.buildArgs(""))
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(string(a.fetch(t, "buildlog")), "sleeping 600s as asked") {
		if st := a.status(t); st["builder_status"] != "BuilderStatus.BUILDING" {
			t.Fatalf("builder %v before the sleep; log:\n%s", st["builder_status"], a.fetch(t, "buildlog"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapcraft never started; log:\n%s", a.fetch(t, "buildlog"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	abortAt := time.Now()
	if got := a.call(t, "abort"); got != "BuilderStatus.ABORTING" {
		t.Errorf("abort() = %v", got)
	}
	st := a.waitState(t, "BuilderStatus.WAITING", 3*time.Minute)
	t.Logf("abort to WAITING: %s", time.Since(abortAt).Round(time.Millisecond))
	if st["build_status"] != "BuildStatus.ABORTED" {
		t.Errorf("build_status = %v; log:\n%s", st["build_status"], a.fetch(t, "buildlog"))
	}
	if _, has := st["filemap"]; has {
		t.Errorf("aborted build has a filemap")
	}
	if snapContainerExists(snapE2EContainer()) {
		t.Errorf("container left after abort")
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations after abort = %q, want one", revs)
	}
	a.call(t, "clean")
}

// TestSnapE2ELocalBuild runs `buildd-agent build snap` and checks the
// artifacts and summary.json it writes.
func TestSnapE2ELocalBuild(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("5.0"))
	commit := f.repo.Commit(t, "local")
	bin := snapE2EBinary(t)
	state := t.TempDir()
	conf := writeSnapAgentConfig(t, state, snapFreePort(t, "127.0.0.1"), snapFreePort(t, "10.10.10.1"))
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(bin, "build", "snap", "--config", conf,
		"--git-repository", f.repo.URL(), "--chroot", f.chrootPath,
		"--channel", "snapcraft=8.x/stable", "--proxy-url", f.upstream, "--revocation-endpoint", f.revURL,
		"--series", snapE2ESeries, "--arch", snapE2EArch, "--target-arch", snapE2EArch, "--output", out,
		"--archive", f.archiveLine, "--trusted-key", f.trustedKeyFile(t))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Cleanup(func() {
		exec.Command("lxc", "delete", "--force", snapE2EContainer()).Run()
		exec.Command("lxc", "profile", "delete", snapE2EProfile).Run()
	})
	err := cmd.Run()
	if err != nil {
		t.Fatalf("build snap: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "==> [4/8] snapcraft pull\n") || !strings.Contains(stdout.String(), "RUN: snapcraft pull") {
		t.Errorf("terminal output lacks the phase line or the log:\n%s", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), snapE2EPass) {
		t.Errorf("the terminal shows the proxy password")
	}
	sum := readLocalSummary(t, out)
	if sum.Status != "BuildStatus.OK" || sum.Revision != commit {
		t.Errorf("summary = %s", sum.raw)
	}
	names := sum.names()
	if strings.Join(names, " ") != "hello_5.0_amd64.manifest hello_5.0_amd64.snap" {
		t.Errorf("artifacts = %q", names)
	}
	if log, _ := os.ReadFile(filepath.Join(out, "buildlog")); !strings.Contains(string(log), "RUN: snapcraft \n") {
		t.Errorf("buildlog in --output lacks the build")
	}
	if snapContainerExists(snapE2EContainer()) {
		t.Errorf("container left after a local build")
	}
	if len(f.revoked()) != 1 {
		t.Errorf("revocations = %q", f.revoked())
	}

	// The same manager on the chroot backend (the user-namespace chroot of
	// package rootfs, whose builder proxy listens on loopback): first a good
	// build of the same commit, then a package failure, which exits 1.
	chrootBuild := func() (out string, combined []byte, err error) {
		out = filepath.Join(t.TempDir(), "out")
		// The chroot's mapped root must be able to reach its build
		// directory: no 0700 test directory on the way.
		state, err := os.MkdirTemp("", "snape2e-chroot-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(state) })
		if err := os.Chmod(state, 0o755); err != nil {
			t.Fatal(err)
		}
		conf := writeSnapAgentConfig(t, state, snapFreePort(t, "127.0.0.1"), snapFreePort(t, "127.0.0.1"))
		cmd := exec.Command(bin, "build", "snap", "--config", conf, "--backend", "chroot", "--git-repository", f.repo.URL(), "--chroot", f.chrootPath,
			"--channel", "snapcraft=8.x/stable", "--proxy-url", f.upstream, "--series", snapE2ESeries, "--output", out,
			"--archive", f.archiveLine, "--trusted-key", f.trustedKeyFile(t))
		combined, err = cmd.CombinedOutput()
		return out, combined, err
	}
	outOK, outb, err := chrootBuild()
	if err != nil {
		t.Fatalf("chroot backend build: %v\n%s", err, outb)
	}
	if data, _ := os.ReadFile(filepath.Join(outOK, "summary.json")); !bytes.Contains(data, []byte(`"status": "BuildStatus.OK"`)) || !bytes.Contains(data, []byte(commit)) {
		t.Errorf("chroot backend summary: %s", data)
	}
	if snap, err := os.ReadFile(filepath.Join(outOK, "hello_5.0_amd64.snap")); err != nil || !bytes.HasPrefix(snap, []byte("hsqs")) {
		t.Errorf("chroot backend snap: %v (want a squashfs)", err)
	}
	if strings.Contains(string(outb), snapE2EPass) {
		t.Errorf("the terminal shows the proxy password (chroot backend)")
	}

	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("5.1", "standin-fail-build: 1"))
	f.repo.Commit(t, "broken")
	out2, outb, err := chrootBuild()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("package failure: err %v, want exit status 1\n%s", err, outb)
	}
	if data, _ := os.ReadFile(filepath.Join(out2, "summary.json")); !bytes.Contains(data, []byte(`"status": "BuildStatus.PACKAGEFAIL"`)) {
		t.Errorf("summary after failure: %s", data)
	}
	if !bytes.Contains(outb, []byte("fetched")) && !bytes.Contains(outb, []byte("GET "+f.origin.URL+"/payload")) {
		t.Errorf("the chroot build did not fetch through the proxy:\n%s", outb)
	}
}

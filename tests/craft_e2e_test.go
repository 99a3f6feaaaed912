package tests

// End-to-end tests of charm, rock and craft builds: the real buildd-agent
// binary driven over XML-RPC the way buildd-manager drives it, building in
// a real LXD container made from the test chroot (with the stand-ins of
// tests/standins: snap, charmcraft, rockcraft, sourcecraft), fetching
// through a real authenticated squid, from a real git server, with the
// archives and trusted_keys buildd-manager sends (the snap fixture's signed
// test archive on the LXD bridge).
//
// These tests have their own LXD label, profile and series, so their
// container (lp-crafte2e-amd64) never collides with the snap tests'. Each
// test is one container boot; none runs in parallel.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	craftE2ESeries   = "crafte2e"
	craftE2EArch     = "amd64"
	craftE2EInstance = "crafte2e"
	craftE2EProfile  = "buildd-agent-crafte2e"
	// The tokens environment_variables carries: never in the build log.
	craftE2ECargoToken = "cargo-t0ken-4f1e9a"
	craftE2EMavenToken = "maven-t0ken-77c2d0"
)

func craftE2EContainer() string { return "lp-" + craftE2ESeries + "-" + craftE2EArch }

// craftFixture is snapFixture (squid, origin, git, revocations, chroot)
// plus the test archive and a registry that records who asked with what.
type craftFixture struct {
	*snapFixture
	registry *httptest.Server
	regMu    sync.Mutex
	regAuth  []string
}

func newCraftFixture(t testing.TB) *craftFixture {
	t.Helper()
	f := &craftFixture{snapFixture: newSnapFixture(t)}
	// A Cargo registry behind squid (127.0.0.2, like the origin).
	f.registry = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.regMu.Lock()
		f.regAuth = append(f.regAuth, r.URL.Path+" "+r.Header.Get("Authorization"))
		f.regMu.Unlock()
		io.WriteString(w, `{"dl": "https://registry.test/api/v1/crates"}`)
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("cannot listen on 127.0.0.2: %v", err)
	}
	f.registry.Listener.Close()
	f.registry.Listener = ln
	f.registry.Start()
	t.Cleanup(f.registry.Close)
	return f
}

// toolYAML is <tool>.yaml for the stand-in; extra adds stand-in keys.
func (f *craftFixture) toolYAML(version string, extra ...string) string {
	y := fmt.Sprintf("name: hello\nversion: '%s'\nstandin-fetch: %s/payload\n", version, f.origin.URL)
	for _, e := range extra {
		y += e + "\n"
	}
	return y
}

// buildArgs are what buildd-manager sends for tag (§4.7, 4.9, 4.10).
func (f *craftFixture) buildArgs(tag, tool, gitPath, buildPath string) map[string]any {
	args := map[string]any{
		"series":              craftE2ESeries,
		"arch_tag":            craftE2EArch,
		"name":                "hello",
		"channels":            map[string]any{tool: "3.x/stable", "core24": "latest/stable"},
		"archives":            []any{f.archiveLine},
		"trusted_keys":        []any{f.archiveKey},
		"build_url":           "https://launchpad.test/~u/+" + tag + "/hello/+build/9",
		"proxy_url":           f.upstream,
		"revocation_endpoint": f.revURL,
		"git_repository":      f.repo.URL(),
		"private":             false,
		"fast_cleanup":        false,
	}
	if gitPath != "" {
		args["git_path"] = gitPath
	}
	if buildPath != "" {
		args["build_path"] = buildPath
	}
	switch tag {
	case "charm":
		args["craft_platform"] = "ubuntu-24.04-amd64"
	case "rock", "craft":
		args["launchpad_instance"] = "production"
		args["launchpad_server_url"] = "launchpad.net"
	}
	if tag == "craft" {
		args["environment_variables"] = map[string]any{}
	}
	return args
}

func writeCraftAgentConfig(t testing.TB, dir string, port, proxyPort int) string {
	t.Helper()
	return writeLXDAgentConfig(t, dir, craftE2EArch, port, proxyPort, craftE2EProfile, fmt.Sprintf("instance = %q\n", craftE2EInstance))
}

func craftCleanupLXD() {
	exec.Command("lxc", "delete", "--force", craftE2EContainer()).Run()
	exec.Command("lxc", "profile", "delete", craftE2EProfile).Run()
}

// startCraftAgent runs `buildd-agent run` with the craft tests' config.
func startCraftAgent(t testing.TB) *snapAgent {
	t.Helper()
	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	port := snapFreePort(t, "127.0.0.1")
	a.proxyPort = snapFreePort(t, "10.10.10.1")
	a.config = writeCraftAgentConfig(t, a.stateDir, port, a.proxyPort)
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.start(t, bin, craftCleanupLXD)
	return a
}

// startCraftBuild calls build() for tag and checks it was accepted.
func startCraftBuild(t testing.TB, a *snapAgent, f *craftFixture, id, tag string, args map[string]any) {
	t.Helper()
	res, ok := a.call(t, "build", id, tag, f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" || res[1] != id {
		t.Fatalf("build() = %#v", res)
	}
}

// finishedBuild waits for WAITING and returns status() and the log.
func finishedBuild(t testing.TB, a *snapAgent) (map[string]any, string) {
	t.Helper()
	st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
	return st, string(a.fetch(t, "buildlog"))
}

func filemapNames(st map[string]any) string {
	filemap, _ := st["filemap"].(map[string]any)
	names := make([]string, 0, len(filemap))
	for n := range filemap {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// checkCraftCommon checks what every good build shows buildd-manager:
// revision_id, no secret in log or logtail, one revocation, squid saw the
// fetch, the container gone, proxy_info() (called after every successful
// build), clean() back to IDLE.
func checkCraftCommon(t *testing.T, a *snapAgent, f *craftFixture, st map[string]any, log, commit string, secrets ...string) {
	t.Helper()
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v, want the tagged commit %s", st["revision_id"], commit)
	}
	for _, s := range append(secrets, snapE2EPass) {
		if strings.Contains(log, s) {
			t.Errorf("the build log shows the secret %q", s)
		}
		if tail, ok := st["logtail"].([]byte); ok && bytes.Contains(tail, []byte(s)) {
			t.Errorf("logtail shows the secret %q", s)
		}
	}
	if al := f.squid.AccessLog(); !strings.Contains(al, f.origin.URL+"/payload") || !strings.Contains(al, snapE2EUser) {
		t.Errorf("squid did not see the stand-in's fetch:\n%s", al)
	}
	if revs := f.revoked(); len(revs) != 1 || revs[0] != "DELETE /tokens/"+snapE2EUser+" "+snapE2EUser+":"+snapE2EPass {
		t.Errorf("revocations = %q", revs)
	}
	if snapContainerExists(craftE2EContainer()) {
		t.Errorf("container %s left after the build", craftE2EContainer())
	}
	pi, ok := a.call(t, "proxy_info").(map[string]any)
	if !ok || pi["use_fetch_service"] != false || pi["revocation_endpoint"] != f.revURL {
		t.Errorf("proxy_info() = %#v", pi)
	}
	if got := a.call(t, "clean"); got != "BuilderStatus.IDLE" {
		t.Errorf("clean() = %v", got)
	}
}

// TestCraftE2ECharmFromTag: a charm from a tag with build_path, through
// squid, with the archives and keys buildd-manager sends.
func TestCraftE2ECharmFromTag(t *testing.T) {
	f := newCraftFixture(t)
	f.repo.WriteFile(t, "charm/charmcraft.yaml", f.toolYAML("1.0"))
	f.repo.WriteFile(t, "README", "top level\n")
	commit := f.repo.Commit(t, "charm 1.0")
	f.repo.AnnotatedTag(t, "1.0", "release 1.0")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	args := f.buildArgs("charm", "charmcraft", "refs/tags/1.0", "charm")
	startCraftBuild(t, a, f, "CHARMBUILD-1", "charm", args)
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if got := filemapNames(st); got != "hello_ubuntu-24.04-amd64.charm hello_ubuntu-24.04-amd64.manifest" {
		t.Fatalf("filemap names = %q (no symlink, no other file)", got)
	}
	filemap := st["filemap"].(map[string]any)
	charm := a.fetch(t, filemap["hello_ubuntu-24.04-amd64.charm"].(string))
	if !bytes.HasPrefix(charm, []byte("PK\x03\x04")) {
		t.Errorf("the .charm is not a zip")
	}
	m := string(a.fetch(t, filemap["hello_ubuntu-24.04-amd64.manifest"].(string)))
	for _, want := range []string{
		"cwd: /home/buildd/hello/charm\n", "user: 0:0\n",
		"env CRAFT_PLATFORM=ubuntu-24.04-amd64\n", "env LAUNCHPAD_INSTANCE=<unset>\n",
		fmt.Sprintf("env http_proxy=http://10.10.10.1:%d/\n", a.proxyPort),
		"fetched: " + f.payload + "\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("manifest lacks %q:\n%s", want, m)
		}
	}
	for _, want := range []string{
		"RUN: apt-get -y install python3 socat git python3-pip python3-setuptools\n",
		"RUN: snap install --channel=latest/stable core24\n",
		"RUN: snap install --classic --channel=3.x/stable charmcraft\n",
		"RUN: charmcraft pack -v --destructive-mode\n",
		"Revoking proxy token...\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	checkCraftCommon(t, a, f, st, log, commit)
}

// TestCraftE2ERockFromTag: a rock from a lightweight tag with build_path.
func TestCraftE2ERockFromTag(t *testing.T) {
	f := newCraftFixture(t)
	f.repo.WriteFile(t, "images/web/rockcraft.yaml", f.toolYAML("2.1"))
	commit := f.repo.Commit(t, "rock 2.1")
	f.repo.Tag(t, "v2.1")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	args := f.buildArgs("rock", "rockcraft", "refs/tags/v2.1", "images/web")
	delete(args, "channels") // rockcraft from snap's default channel
	startCraftBuild(t, a, f, "ROCKBUILD-1", "rock", args)
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if got := filemapNames(st); got != "hello_2.1_amd64.rock" {
		t.Fatalf("filemap names = %q", got)
	}
	rock := a.fetch(t, st["filemap"].(map[string]any)["hello_2.1_amd64.rock"].(string))
	members := tarMembers(t, bytes.NewReader(rock))
	if !members["./oci-layout"] || !members["./index.json"] {
		t.Errorf("the rock is not an OCI layout: %v", members)
	}
	for _, want := range []string{
		"RUN: apt-get -y install python3 socat git python3-pip python3-setuptools dirmngr\n",
		"RUN: snap install --classic rockcraft\n",
		"RUN: rockcraft pack -v --destructive-mode\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	checkCraftCommon(t, a, f, st, log, commit)
}

// TestCraftE2ESourcecraftCredentials: a sourcecraft package from a tag
// with build_path; environment_variables' Cargo credentials reach the
// build as Cargo's (the stand-in fetches the registry with the token
// through squid and prints it), Maven's as .m2/settings.xml, nothing else
// of them; no token reaches the log.
func TestCraftE2ESourcecraftCredentials(t *testing.T) {
	f := newCraftFixture(t)
	f.repo.WriteFile(t, "pkg/sourcecraft.yaml", f.toolYAML("0.3", "standin-cargo: yes"))
	commit := f.repo.Commit(t, "craft 0.3")
	f.repo.AnnotatedTag(t, "0.3", "release 0.3")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	args := f.buildArgs("craft", "sourcecraft", "refs/tags/0.3", "pkg")
	args["environment_variables"] = map[string]any{
		"CARGO_ARTIFACTORY1_URL":       f.registry.URL + "/cargo",
		"CARGO_ARTIFACTORY1_READ_AUTH": "reader:" + craftE2ECargoToken,
		"MAVEN_ARTIFACTORY1_URL":       f.registry.URL + "/maven/",
		"MAVEN_ARTIFACTORY1_READ_AUTH": "reader:" + craftE2EMavenToken,
		"UNRELATED":                    "never-exported",
	}
	startCraftBuild(t, a, f, "CRAFTBUILD-1", "craft", args)
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if got := filemapNames(st); got != "hello_0.3.tar.xz" {
		t.Fatalf("filemap names = %q", got)
	}
	// The stand-in's registry fetch carried the translated token.
	f.regMu.Lock()
	auth := append([]string(nil), f.regAuth...)
	f.regMu.Unlock()
	if len(auth) != 1 || auth[0] != "/cargo/config.json Bearer "+craftE2ECargoToken {
		t.Errorf("registry requests = %q", auth)
	}
	// What the build saw, from inside the tarball (xz, through the host's tar).
	tarball := filepath.Join(t.TempDir(), "hello.tar.xz")
	os.WriteFile(tarball, a.fetch(t, st["filemap"].(map[string]any)["hello_0.3.tar.xz"].(string)), 0o644)
	seen, err := exec.Command("tar", "-xJOf", tarball, "./standin-seen").Output()
	if err != nil {
		t.Fatalf("cannot read standin-seen from the .tar.xz: %v", err)
	}
	for _, want := range []string{
		"cwd: /home/buildd/hello/pkg\n",
		"env CARGO_REGISTRIES_ARTIFACTORY1_INDEX=" + f.registry.URL + "/cargo\n",
		"env CARGO_REGISTRIES_ARTIFACTORY1_TOKEN=Bearer " + craftE2ECargoToken + "\n",
		"env CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS=cargo:token\n",
		"env LAUNCHPAD_INSTANCE=production\n", "env LAUNCHPAD_SERVER_URL=launchpad.net\n",
	} {
		if !strings.Contains(string(seen), want) {
			t.Errorf("the build did not see %q:\n%s", want, seen)
		}
	}
	if strings.Contains(string(seen), "UNRELATED") || strings.Contains(string(seen), "READ_AUTH") {
		t.Errorf("environment_variables exported as given:\n%s", seen)
	}
	settings, err := exec.Command("tar", "-xJOf", tarball, "./m2-settings.xml").Output()
	if err != nil || !strings.Contains(string(settings), "<password>"+craftE2EMavenToken+"</password>") ||
		!strings.Contains(string(settings), "<url>"+f.registry.URL+"/maven/</url>") {
		t.Errorf("settings.xml: %v\n%s", err, settings)
	}
	// The stand-in printed the token; the log shows it masked.
	if !strings.Contains(log, "registry ARTIFACTORY1 at "+f.registry.URL+"/cargo with token 'Bearer ") {
		t.Errorf("log lacks the stand-in's (masked) token line")
	}
	if !strings.Contains(log, "RUN: snap install --classic --channel=3.x/stable sourcecraft\n") {
		t.Errorf("log lacks the sourcecraft install")
	}
	checkCraftCommon(t, a, f, st, log, commit, craftE2ECargoToken, craftE2EMavenToken)
}

// TestCraftE2EPathEscape: a build_path through a symlink the repository
// planted, pointing out of the tree, fails the build (PACKAGEFAIL) with a
// clear message before the tool runs; revision_id is still reported.
func TestCraftE2EPathEscape(t *testing.T) {
	f := newCraftFixture(t)
	f.repo.WriteFile(t, "rock/rockcraft.yaml", f.toolYAML("1.0"))
	f.repo.Symlink(t, "escape", "/etc")
	commit := f.repo.Commit(t, "escape")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	startCraftBuild(t, a, f, "ROCKESCAPE-1", "rock", f.buildArgs("rock", "rockcraft", "", "escape"))
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
		t.Errorf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	want := `Build failed: invalid build file path: build_path "escape" leaves the source tree /home/buildd/hello: escape is a symlink to /etc`
	if !strings.Contains(log, want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
	if strings.Contains(log, "RUN: rockcraft pack") {
		t.Errorf("rockcraft ran")
	}
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v", st["revision_id"])
	}
	if snapContainerExists(craftE2EContainer()) {
		t.Errorf("container left")
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations = %q", revs)
	}
	a.call(t, "clean")
}

// TestCraftE2EAbortDuringPack aborts while charmcraft packs: WAITING
// ABORTED, no filemap, the token revoked, no container.
func TestCraftE2EAbortDuringPack(t *testing.T) {
	f := newCraftFixture(t)
	f.repo.WriteFile(t, "charmcraft.yaml", f.toolYAML("3.0", "standin-sleep: 600"))
	f.repo.Commit(t, "slow")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	startCraftBuild(t, a, f, "CHARMABORT-1", "charm", f.buildArgs("charm", "charmcraft", "", ""))
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(string(a.fetch(t, "buildlog")), "sleeping 600s as asked") {
		if st := a.status(t); st["builder_status"] != "BuilderStatus.BUILDING" {
			t.Fatalf("builder %v before the sleep; log:\n%s", st["builder_status"], a.fetch(t, "buildlog"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("charmcraft never started; log:\n%s", a.fetch(t, "buildlog"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := a.call(t, "abort"); got != "BuilderStatus.ABORTING" {
		t.Errorf("abort() = %v", got)
	}
	st := a.waitState(t, "BuilderStatus.WAITING", 3*time.Minute)
	if st["build_status"] != "BuildStatus.ABORTED" {
		t.Errorf("build_status = %v; log:\n%s", st["build_status"], a.fetch(t, "buildlog"))
	}
	if _, has := st["filemap"]; has {
		t.Errorf("aborted build has a filemap")
	}
	if snapContainerExists(craftE2EContainer()) {
		t.Errorf("container left after abort")
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations after abort = %q, want one", revs)
	}
	a.call(t, "clean")
}

// tarMembers lists a tar stream's member names.
func tarMembers(t *testing.T, r io.Reader) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("not a tar: %v", err)
		}
		out[h.Name] = true
	}
}

// TestCraftE2ELocalBuild runs `buildd-agent build rock|charm|craft` (the
// same managers in-process) and checks the artifacts and summary.json each
// writes.
func TestCraftE2ELocalBuild(t *testing.T) {
	f := newCraftFixture(t)
	f.repo.WriteFile(t, "rock/rockcraft.yaml", f.toolYAML("5.0"))
	f.repo.WriteFile(t, "charm/charmcraft.yaml", f.toolYAML("5.0"))
	f.repo.WriteFile(t, "pkg/sourcecraft.yaml", f.toolYAML("5.0"))
	commit := f.repo.Commit(t, "local")
	f.repo.AnnotatedTag(t, "5.0", "release 5.0")
	keyFile := f.trustedKeyFile(t)
	state := t.TempDir()
	conf := writeCraftAgentConfig(t, state, snapFreePort(t, "127.0.0.1"), snapFreePort(t, "10.10.10.1"))
	t.Cleanup(craftCleanupLXD)
	for _, tc := range []struct {
		tag, tool, buildPath string
		flags                []string
		artifacts            []string // sorted
		check                func(t *testing.T, out string)
	}{
		{"rock", "rockcraft", "rock", []string{"--launchpad-instance", "production"}, []string{"hello_5.0_amd64.rock"}, func(t *testing.T, out string) {
			rock, err := os.Open(filepath.Join(out, "hello_5.0_amd64.rock"))
			if err != nil {
				t.Fatal(err)
			}
			defer rock.Close()
			if m := tarMembers(t, rock); !m["./oci-layout"] {
				t.Errorf("the rock is not an OCI layout: %v", m)
			}
		}},
		{"charm", "charmcraft", "charm", []string{"--craft-platform", "ubuntu-24.04-amd64"},
			[]string{"hello_ubuntu-24.04-amd64.charm", "hello_ubuntu-24.04-amd64.manifest"}, func(t *testing.T, out string) {
				m, err := os.ReadFile(filepath.Join(out, "hello_ubuntu-24.04-amd64.manifest"))
				if err != nil || !strings.Contains(string(m), "env CRAFT_PLATFORM=ubuntu-24.04-amd64\n") {
					t.Errorf("manifest (what the stand-in saw) = %q, %v", m, err)
				}
			}},
		{"craft", "sourcecraft", "pkg", []string{"--launchpad-instance", "production"}, []string{"hello_5.0.tar.xz"}, func(t *testing.T, out string) {
			seen, err := exec.Command("tar", "-xJOf", filepath.Join(out, "hello_5.0.tar.xz"), "./standin-seen").Output()
			if err != nil || !strings.Contains(string(seen), "cwd: /home/buildd/hello/pkg\n") {
				t.Errorf("standin-seen = %q, %v", seen, err)
			}
		}},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			before := len(f.revoked())
			args := append([]string{"build", tc.tag, "--config", conf,
				"--git-repository", f.repo.URL(), "--git-path", "refs/tags/5.0", "--build-path", tc.buildPath, "--chroot", f.chrootPath,
				"--channel", tc.tool + "=1.x/stable", "--proxy-url", f.upstream, "--revocation-endpoint", f.revURL,
				"--archive", f.archiveLine, "--trusted-key", keyFile,
				"--series", craftE2ESeries, "--arch", craftE2EArch, "--output", out}, tc.flags...)
			cmd := exec.Command(snapE2EBinary(t), args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("build %s: %v\nstdout:\n%s\nstderr:\n%s", tc.tag, err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), "==> [4/7] "+tc.tool+" pack\n") || !strings.Contains(stdout.String(), "RUN: "+tc.tool+" pack -v --destructive-mode") {
				t.Errorf("terminal output lacks the phase line or the log:\n%s", stdout.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), snapE2EPass) {
				t.Errorf("the terminal shows the proxy password")
			}
			sum := readLocalSummary(t, out)
			if sum.Status != "BuildStatus.OK" || sum.Revision != commit || strings.Join(sum.names(), " ") != strings.Join(tc.artifacts, " ") {
				t.Errorf("summary = %s, want artifacts %v", sum.raw, tc.artifacts)
			}
			tc.check(t, out)
			if snapContainerExists(craftE2EContainer()) {
				t.Errorf("container left after a local build")
			}
			if got := f.revoked(); len(got) != before+1 {
				t.Errorf("revocations = %q", got)
			}
		})
	}
}

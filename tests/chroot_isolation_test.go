package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// startChrootAgent runs `buildd-agent run` on the chroot backend: state
// in a directory the chroot's mapped root can search, XML-RPC on a
// loopback port, the builder proxy on its own port.
func startChrootAgent(t *testing.T) *snapAgent {
	t.Helper()
	testenv.RequireRoot(t)
	bin := snapE2EBinary(t)
	state, err := os.MkdirTemp("", "chroot-isolation-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := os.Chmod(state, 0o755); err != nil {
		t.Fatal(err)
	}
	port := snapFreePort(t, "127.0.0.1")
	a := &snapAgent{stateDir: state, output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	a.proxyPort = snapFreePort(t, "127.0.0.1")
	a.config = filepath.Join(state, "buildd-agent.toml")
	conf := fmt.Sprintf(`[builder]
architectures = [%q]
bind_address = "127.0.0.1"
port = %d
state_dir = %q
backend = "chroot"

[proxy]
port = %d

[log]
level = "debug"
`, snapE2EArch, port, state, a.proxyPort)
	if err := os.WriteFile(a.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
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
		case <-time.After(30 * time.Second):
			a.cmd.Process.Kill()
			<-a.exited
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", a.output.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := a.callErr("echo", "ping"); err == nil {
			return a
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

// namespaceHelpers lists the pids of the chroot target's namespace
// helpers that are children of pid.
func namespaceHelpers(t *testing.T, pid int) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-P", fmt.Sprint(pid), "-f", "buildd-agent-rootfs-init").Output()
	return strings.Fields(string(out))
}

// TestChrootBuildIsolation drives the real daemon on the chroot backend
// as buildd-manager does, with builds that try what a hostile build
// would: reading the agent's file cache over loopback, and, as a local
// process, the agent's builder proxy. The builder proxy itself must keep
// working from inside the build, and fast_cleanup must leave neither the
// namespace helper nor the build home behind.
func TestChrootBuildIsolation(t *testing.T) {
	f := newSnapFixture(t)
	a := startChrootAgent(t)
	a.ensureChroot(t, f)

	// 1. The agent's own port, from inside a build: the file cache holds
	// the chroot tarball. The stand-in's curl goes direct for 127.0.0.1
	// (no_proxy), as a build's own tools would.
	var hostHits atomic.Int32
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostHits.Add(1)
		fmt.Fprint(w, "host loopback reached")
	}))
	t.Cleanup(canary.Close)
	for i, target := range []string{a.url + "/filecache/" + f.chrootSHA1, a.url + "/rpc", canary.URL + "/"} {
		f.repo.WriteFile(t, "snap/snapcraft.yaml", fmt.Sprintf("name: hello\nversion: '1.%d'\nsummary: test\nstandin-fetch: %s\n", i, target))
		f.repo.Commit(t, fmt.Sprintf("reach %d", i))
		id := fmt.Sprintf("ISOLATION-%d", i)
		a.startBuild(t, f, id, f.buildArgs(""))
		st := a.waitState(t, "BuilderStatus.WAITING", 5*time.Minute)
		log := string(a.fetch(t, "buildlog"))
		if st["build_status"] == "BuildStatus.OK" || !strings.Contains(log, "cannot fetch "+target) {
			t.Errorf("build fetching %s from inside the chroot: %v; log:\n%s", target, st["build_status"], tail(log, 3000))
		}
		a.call(t, "clean")
	}
	if n := hostHits.Load(); n != 0 {
		t.Errorf("a build reached a host loopback server %d times", n)
	}

	// 2. The builder proxy works from inside the build, and nothing on
	// the host's loopback can use it (its port there is free).
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("2.0"))
	f.repo.Commit(t, "through the proxy")
	a.startBuild(t, f, "ISOLATION-PROXY", f.buildArgs(""))
	deadline := time.Now().Add(5 * time.Minute)
	sawProxyFromHost := false
	for {
		st := a.status(t)
		if st["builder_status"] == "BuilderStatus.WAITING" {
			break
		}
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", a.proxyPort)); err == nil {
			resp.Body.Close()
			sawProxyFromHost = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("build did not end")
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := a.status(t)
	log := string(a.fetch(t, "buildlog"))
	if st["build_status"] != "BuildStatus.OK" || !strings.Contains(log, `"GET `+f.origin.URL+`/payload HTTP/1.1" 200 `) {
		t.Errorf("build through the builder proxy: %v; log:\n%s", st["build_status"], tail(log, 3000))
	}
	if sawProxyFromHost {
		t.Errorf("the builder proxy answered on the host's loopback during the build")
	}
	a.call(t, "clean")

	// 3. apt reaches the build's archives (only them) through the
	// archive gate inside the build's network.
	// (python3 of the install step's proxy dependencies, as a stand-in.)
	python3 := aptarchive.BinaryPackage(t, t.TempDir(), aptarchive.BinarySpec{Name: "python3", Version: "99.0+standin"})
	archive := aptarchive.Build(t, aptarchive.Options{NoBase: true, Extra: []string{python3}})
	archiveURL := archive.Serve(t, "")
	f.repo.WriteFile(t, "snap/snapcraft.yaml", fmt.Sprintf("name: hello\nversion: '3.0'\nsummary: test\nstandin-fetch: %s/filecache/%s\n", a.url, f.chrootSHA1))
	f.repo.Commit(t, "with archives")
	args := f.buildArgs("")
	args["archives"] = []any{archive.SourcesLine(archiveURL)}
	args["trusted_keys"] = []any{archive.TrustedKey()}
	a.startBuild(t, f, "ISOLATION-APT", args)
	st = a.waitState(t, "BuilderStatus.WAITING", 5*time.Minute)
	log = string(a.fetch(t, "buildlog"))
	if !strings.Contains(log, "RUN: /usr/bin/apt-get -uy update") || !strings.Contains(log, "cannot fetch "+a.url) {
		t.Errorf("build with archives: %v; log:\n%s", st["build_status"], tail(log, 3000))
	}
	if paths := archive.RequestedPaths(); !slices.Contains(paths, "/dists/"+archive.Suite+"/InRelease") {
		t.Errorf("apt did not reach the archive through the gate: %q; log:\n%s", paths, tail(log, 3000))
	}
	a.call(t, "clean")

	// 4. A planted line of 200 KiB without a blank, full of URL
	// credentials: however the agent reads it from the build's pipe, no
	// password reaches the served log.
	long := "x" + strings.Repeat("http://user:s3cr3tpw@h/", 200<<10/23)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", "name: hello\nversion: '5.0'\nsummary: test\nstandin-fetch: "+long+"\n")
	f.repo.Commit(t, "long line")
	a.startBuild(t, f, "ISOLATION-LONG", f.buildArgs(""))
	st = a.waitState(t, "BuilderStatus.WAITING", 5*time.Minute)
	log = string(a.fetch(t, "buildlog"))
	if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
		t.Errorf("build with the long URL: %v, want PACKAGEFAIL (curl cannot fetch it)", st["build_status"])
	}
	if !strings.Contains(log, "snapcraft stand-in: fetching xhttp://h/http://h/") {
		t.Errorf("the long line is not in the log: %s", tail(log, 2000))
	}
	if n := strings.Count(log, "s3cr3tpw"); n != 0 {
		t.Errorf("the password of the planted long line reached the log %d times", n)
	}
	a.call(t, "clean")

	// 5. fast_cleanup: the build ends with no namespace helper and no
	// build home left.
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("4.0"))
	f.repo.Commit(t, "good again")
	args = f.buildArgs("")
	args["fast_cleanup"] = true
	a.startBuild(t, f, "ISOLATION-FAST", args)
	st = a.waitState(t, "BuilderStatus.WAITING", 5*time.Minute)
	if st["build_status"] != "BuildStatus.OK" {
		t.Errorf("fast_cleanup build: %v; log:\n%s", st["build_status"], tail(string(a.fetch(t, "buildlog")), 3000))
	}
	if h := namespaceHelpers(t, a.cmd.Process.Pid); len(h) != 0 {
		t.Errorf("fast_cleanup left namespace helpers %v", h)
	}
	if _, err := os.Stat(filepath.Join(a.stateDir, "builds", "build-ISOLATION-FAST")); !os.IsNotExist(err) {
		t.Errorf("fast_cleanup left the build home: %v", err)
	}
	a.call(t, "clean")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

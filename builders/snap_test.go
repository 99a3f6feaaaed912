package builders

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// fakeProxy records what the manager does with the builder proxy.
type fakeProxy struct {
	mu     sync.Mutex
	cfg    ProxyConfig
	events []string
}

func (p *fakeProxy) URL() string { return "http://10.10.10.1:8222/" }
func (p *fakeProxy) Env() []string {
	return []string{"http_proxy=http://10.10.10.1:8222/", "https_proxy=http://10.10.10.1:8222/",
		"HTTP_PROXY=http://10.10.10.1:8222/", "HTTPS_PROXY=http://10.10.10.1:8222/",
		"GIT_PROXY_COMMAND=/usr/local/bin/lpbuildd-git-proxy", "SNAPPY_STORE_NO_CDN=1"}
}
func (p *fakeProxy) Secrets() []string { return []string{"s3cret"} }
func (p *fakeProxy) CutOff(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, "cutoff")
	io.WriteString(p.cfg.Log, "Revoking proxy token...\n")
	return nil
}
func (p *fakeProxy) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, "stop")
	if p.cfg.RevocationEndpoint != "" && !slices.Contains(p.events, "cutoff") {
		io.WriteString(p.cfg.Log, "Revoking proxy token...\n")
	}
	return nil
}

// fakeSeams installs a fake proxy and a fake checkout that writes files;
// it returns the proxy (set when started) and restores the seams at cleanup.
type seams struct {
	proxy       *fakeProxy
	proxyErr    error
	checkoutErr error
	checkouts   []string
	files       map[string]string
}

func installSeams(t *testing.T) *seams {
	s := &seams{files: map[string]string{"snap/snapcraft.yaml": "name: hello\n", ".git/HEAD": "ref: refs/heads/main\n"}}
	oldStart, oldCheckout, oldTar, oldScript := StartProxyFunc, CheckoutFunc, WriteTarFunc, GitProxyScript
	t.Cleanup(func() {
		StartProxyFunc, CheckoutFunc, WriteTarFunc, GitProxyScript = oldStart, oldCheckout, oldTar, oldScript
	})
	GitProxyScript = []byte("#!/bin/sh\nexec socat\n")
	StartProxyFunc = func(ctx context.Context, cfg ProxyConfig) (BuilderProxy, error) {
		if s.proxyErr != nil {
			return nil, s.proxyErr
		}
		s.proxy = &fakeProxy{cfg: cfg}
		return s.proxy, nil
	}
	CheckoutFunc = func(ctx context.Context, repo, ref, dir string, opts CheckoutOptions) (string, error) {
		s.checkouts = append(s.checkouts, repo+" "+ref+" proxy="+opts.ProxyURL)
		if s.checkoutErr != nil {
			return "", s.checkoutErr
		}
		for name, data := range s.files {
			p := filepath.Join(dir, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				return "", err
			}
		}
		return "0123456789abcdef0123456789abcdef01234567", nil
	}
	WriteTarFunc = func(w io.Writer, dir string, uid, gid int, excludeVCS bool) error {
		tw := tar.NewWriter(w)
		err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || p == dir {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			h, _ := tar.FileInfoHeader(info, "")
			h.Name, h.Uid, h.Gid = rel, uid, gid
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if info.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(tw, f)
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tw.Close()
	}
	return s
}

func baseArgs() map[string]any {
	return map[string]any{
		"series":   "bookworm",
		"arch_tag": "amd64",
		"name":     "hello",
		"channels": map[string]any{"snapcraft": "8.x/stable", "core22": "stable"},
		// build_request_id comes as an int from Launchpad.
		"build_request_id":        int64(13),
		"build_request_timestamp": "2025-04-03T15:13:01Z",
		"build_url":               "https://launchpad.example/~u/+snap/hello/+build/1",
		"proxy_url":               "http://user:s3cret@127.0.0.1:3128",
		"revocation_endpoint":     "http://127.0.0.1:9/tokens/user",
		"git_repository":          "https://git.example/hello.git",
		"git_path":                "refs/tags/1.0",
		"target_architectures":    []any{"amd64"},
	}
}

// runSnap runs a snap build against a fake target whose snapcraft writes
// results, and returns the target, env and result.
func runSnap(t *testing.T, args map[string]any, prep func(*fakeTarget, *fakeEnv), progress ...ProgressFunc) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	m, err := NewSnapManager(Request{BuildID: "SNAPBUILD-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
	if err != nil {
		t.Fatalf("NewSnapManager: %v", err)
	}
	for _, p := range progress {
		m.(ProgressReporter).SetProgress(p)
	}
	ft := newFakeTarget()
	ft.onRun = func(c recordedCommand) fakeRun {
		if len(c.Args) == 1 && c.Args[0] == "snapcraft" {
			ft.put("/build/hello/hello_1.0_amd64.snap", "SNAP", 0o644)
			ft.put("/build/hello/hello_1.0_amd64.manifest", "MANIFEST", 0o644)
			ft.put("/build/hello/hello.debug", "DEBUG", 0o644)
			ft.put("/build/hello/notes.txt", "not a result", 0o644)
			ft.symlink("/build/hello/latest.snap", "hello_1.0_amd64.snap")
		}
		if len(c.Args) > 1 && c.Args[0] == "tar" {
			ft.put("/build/hello.tar.gz", "TARBALL", 0o644)
		}
		if len(c.Args) == 3 && c.Args[0] == "apt-cache" && c.Args[2] == "udev" {
			return fakeRun{stdout: "Package: udev\nVersion: 252\n"}
		}
		if len(c.Args) == 3 && c.Args[0] == "apt-cache" {
			return fakeRun{code: 100}
		}
		return fakeRun{}
	}
	fe := newFakeEnv(ft)
	if prep != nil {
		prep(ft, fe)
	}
	res := m.Run(context.Background(), &fe.Env)
	return ft, fe, res
}

func TestSnapHappyPath(t *testing.T) {
	s := installSeams(t)
	var phases []string
	args := baseArgs()
	ft, fe, res := runSnap(t, args, nil, func(step, total int, phase string) {
		if total != len(snapPhases) || step != len(phases)+1 {
			t.Errorf("step %d of %d, want %d of %d", step, total, len(phases)+1, len(snapPhases))
		}
		phases = append(phases, phase)
	})
	if res.Status != BuildOK {
		t.Fatalf("status = %s, log:\n%s", res.Status, fe.logText())
	}
	wantCmds := []string{
		"apt-cache show snapd", "apt-cache show fuse", "apt-cache show squashfuse", "apt-cache show udev",
		"apt-get -y install python3 socat udev git sudo",
		"snap install --channel=stable core22",
		"snap refresh --channel=stable core22",
		"snap install --classic --channel=8.x/stable snapcraft",
		"mkdir -p /root/.subversion",
		"mkdir -p /build",
		"snapcraft pull",
		"snapcraft",
		"sha512sum hello_1.0_amd64.snap",
	}
	if diff := cmp.Diff(wantCmds, ft.argvs()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"create", "start", "stop", "remove"}, ft.calls); diff != "" {
		t.Errorf("lifecycle (-want +got):\n%s", diff)
	}
	if ft.backend != "lxd" || ft.spec.Series != "bookworm" || ft.spec.Arch != "amd64" || ft.spec.BuildID != "SNAPBUILD-1" {
		t.Errorf("target made with backend %q spec %+v", ft.backend, ft.spec)
	}
	if ft.image.Type != "chroot" || ft.image.SHA1 != "abc" {
		t.Errorf("image = %+v", ft.image)
	}
	// Proxy: listens on the target's host address, stopped once, never cut off.
	if s.proxy.cfg.ListenAddr != "10.10.10.1:8222" || s.proxy.cfg.Upstream != args["proxy_url"] {
		t.Errorf("proxy config = %+v", s.proxy.cfg)
	}
	if diff := cmp.Diff([]string{"stop"}, s.proxy.events); diff != "" {
		t.Errorf("proxy events (-want +got):\n%s", diff)
	}
	if !slices.Contains(fe.secrets, "s3cret") {
		t.Errorf("secrets = %q, want the proxy password", fe.secrets)
	}
	// The checkout goes through the upstream proxy, on the host.
	if diff := cmp.Diff([]string{"https://git.example/hello.git refs/tags/1.0 proxy=http://user:s3cret@127.0.0.1:3128"}, s.checkouts); diff != "" {
		t.Errorf("checkouts (-want +got):\n%s", diff)
	}
	if f := ft.files["/build/hello/snap/snapcraft.yaml"]; f == nil || f.uid != 0 || string(f.data) != "name: hello\n" {
		t.Errorf("source not copied in as root: %+v", f)
	}
	if ft.files["/build/hello/.git/HEAD"] == nil {
		t.Errorf(".git not copied in (snapcraft may need it)")
	}
	if f := ft.files[GitProxyPath]; f == nil || f.mode != 0o755 {
		t.Errorf("git proxy helper = %+v", f)
	}
	if f := ft.files["/root/.subversion/servers"]; f == nil || string(f.data) != "[global]\nhttp-proxy-host = 10.10.10.1\nhttp-proxy-port = 8222\n" || f.mode != 0o644 {
		t.Errorf("svn servers = %+v", f)
	}
	if fe.status["revision_id"] != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("revision_id = %v", fe.status["revision_id"])
	}
	// Results: sorted, no symlink, no unrelated file.
	if diff := cmp.Diff([]string{"hello.debug", "hello_1.0_amd64.manifest", "hello_1.0_amd64.snap"}, fe.waitOrder); diff != "" {
		t.Errorf("gathered (-want +got):\n%s", diff)
	}
	if string(fe.waiting["hello_1.0_amd64.snap"]) != "SNAP" {
		t.Errorf("snap content = %q", fe.waiting["hello_1.0_amd64.snap"])
	}
	wantPhases := []string{"start target", "install", "fetch source", "snapcraft pull", "snapcraft build", "stop proxy", "gather results", "clean up"}
	if diff := cmp.Diff(wantPhases, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	log := fe.logText()
	for _, want := range []string{"RUN: snapcraft pull\n", "RUN: snap install --classic --channel=8.x/stable snapcraft\n", "Running install phase...\n", "Revoking proxy token...\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestSnapEnvironment(t *testing.T) {
	installSeams(t)
	proxyURL := "http://10.10.10.1:8222/"
	image := `{"build-request-id": "lp-13", "build-request-timestamp": "2025-04-03T15:13:01Z", "build_url": "https://launchpad.example/~u/+snap/hello/+build/1"}`
	common := map[string]string{
		"LANG": "C.UTF-8", "SHELL": "/bin/sh",
		"http_proxy": proxyURL, "https_proxy": proxyURL, "HTTP_PROXY": proxyURL, "HTTPS_PROXY": proxyURL,
		"GIT_PROXY_COMMAND": "/usr/local/bin/lpbuildd-git-proxy", "SNAPPY_STORE_NO_CDN": "1",
		"SNAPCRAFT_BUILD_INFO": "1", "SNAPCRAFT_IMAGE_INFO": image, "SNAPCRAFT_BUILD_ENVIRONMENT": "host",
		"LAUNCHPAD_INSTANCE": "production", "LAUNCHPAD_SERVER_URL": "launchpad.net",
	}
	args := baseArgs()
	args["launchpad_instance"] = "production"
	args["launchpad_server_url"] = "launchpad.net"
	args["target_architectures"] = []any{"arm64", "amd64"}
	ft, fe, res := runSnap(t, args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	pull, _ := ft.command("snapcraft", "pull")
	wantPull := map[string]string{"SNAPCRAFT_LOCAL_SOURCES": "1", "SNAPCRAFT_SETUP_CORE": "1"}
	for k, v := range common {
		wantPull[k] = v
	}
	if diff := cmp.Diff(wantPull, envMap(pull.Env)); diff != "" {
		t.Errorf("pull env (-want +got):\n%s", diff)
	}
	if pull.Dir != "/build/hello" {
		t.Errorf("pull dir = %q", pull.Dir)
	}
	var build recordedCommand
	for _, c := range ft.commands {
		if len(c.Args) == 1 && c.Args[0] == "snapcraft" {
			build = c
		}
	}
	wantBuild := map[string]string{"SNAPCRAFT_BUILD_FOR": "arm64"}
	for k, v := range common {
		wantBuild[k] = v
	}
	if diff := cmp.Diff(wantBuild, envMap(build.Env)); diff != "" {
		t.Errorf("build env (-want +got):\n%s", diff)
	}
	if build.Dir != "/build/hello" {
		t.Errorf("build dir = %q", build.Dir)
	}
	if !strings.HasPrefix(build.Env[0], "LANG=") || !strings.HasPrefix(build.Env[1], "SHELL=") {
		t.Errorf("env must start with LANG and SHELL: %q", build.Env)
	}
	sum, _ := ft.command("sha512sum")
	if diff := cmp.Diff(map[string]string{"LANG": "C.UTF-8", "SHELL": "/bin/sh", "http_proxy": proxyURL, "https_proxy": proxyURL,
		"HTTP_PROXY": proxyURL, "HTTPS_PROXY": proxyURL, "GIT_PROXY_COMMAND": "/usr/local/bin/lpbuildd-git-proxy",
		"SNAPPY_STORE_NO_CDN": "1"}, envMap(sum.Env)); diff != "" || sum.Dir != "/build/hello" {
		t.Errorf("sha512sum env (-want +got):\n%s dir %q", diff, sum.Dir)
	}
	// Plain commands get no environment, as the reference's backend.run.
	apt, _ := ft.command("apt-get")
	if apt.Env != nil || apt.Dir != "" {
		t.Errorf("apt-get got env %q dir %q", apt.Env, apt.Dir)
	}
}

func TestSnapPrivateNoProxyNoInfo(t *testing.T) {
	installSeams(t)
	args := map[string]any{
		"series": "noble", "name": "hello", "private": true, "git_repository": "https://git.example/h.git",
		"channels": map[string]any{"snapcraft": "stable"},
	}
	ft, fe, res := runSnap(t, args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	pull, _ := ft.command("snapcraft", "pull")
	want := map[string]string{"LANG": "C.UTF-8", "SHELL": "/bin/sh", "SNAPCRAFT_LOCAL_SOURCES": "1", "SNAPCRAFT_SETUP_CORE": "1",
		"SNAPCRAFT_IMAGE_INFO": "{}", "SNAPCRAFT_BUILD_ENVIRONMENT": "host"}
	if diff := cmp.Diff(want, envMap(pull.Env)); diff != "" {
		t.Errorf("pull env (-want +got):\n%s", diff)
	}
	for _, c := range ft.argvs() {
		if strings.Contains(c, "subversion") {
			t.Errorf("no proxy, yet %q ran", c)
		}
	}
	if apt, _ := ft.command("apt-get"); slices.Contains(apt.Args, "socat") {
		t.Errorf("no proxy, yet socat installed: %q", apt.Args)
	}
	if ft.spec.Arch != "amd64" {
		t.Errorf("arch defaults to the builder's: %q", ft.spec.Arch)
	}
	if strings.Contains(fe.logText(), "Revoking") {
		t.Errorf("no proxy, yet a revocation was logged")
	}
}

func TestSnapNoSnapcraftChannelInstallsDeb(t *testing.T) {
	installSeams(t)
	args := baseArgs()
	args["channels"] = map[string]any{}
	ft, _, _ := runSnap(t, args, nil)
	apt, _ := ft.command("apt-get")
	if !slices.Contains(apt.Args, "snapcraft") || slices.Contains(apt.Args, "sudo") {
		t.Errorf("apt-get args = %q, want the snapcraft deb and no sudo", apt.Args)
	}
}

func TestSnapSourceTarballAndCutOff(t *testing.T) {
	s := installSeams(t)
	args := baseArgs()
	args["build_source_tarball"] = true
	args["disable_proxy_after_pull"] = true
	ft, fe, res := runSnap(t, args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	tarCmd, ok := ft.command("tar")
	if !ok {
		t.Fatalf("no tar: %q", ft.argvs())
	}
	want := []string{"tar", "-czf", "hello.tar.gz", "--format=gnu", "--sort=name", "--exclude-vcs", "--numeric-owner", "--owner=0", "--group=0", "hello"}
	if diff := cmp.Diff(want, tarCmd.Args); diff != "" || tarCmd.Dir != "/build" {
		t.Errorf("tar (-want +got):\n%s dir %q", diff, tarCmd.Dir)
	}
	if diff := cmp.Diff([]string{"cutoff", "stop"}, s.proxy.events); diff != "" {
		t.Errorf("proxy events (-want +got):\n%s", diff)
	}
	if !slices.Contains(fe.waitOrder, "hello.tar.gz") || fe.waitOrder[len(fe.waitOrder)-1] != "hello.tar.gz" {
		t.Errorf("tarball not gathered last: %q", fe.waitOrder)
	}
	// The cut-off comes after pull and the tarball, before the build.
	log := fe.logText()
	iTar, iRevoke, iBuild := strings.Index(log, "RUN: tar"), strings.Index(log, "Revoking proxy token..."), strings.Index(log, "RUN: snapcraft \n")
	if !(iTar < iRevoke && iRevoke < iBuild) {
		t.Errorf("order tar %d revoke %d build %d:\n%s", iTar, iRevoke, iBuild, log)
	}
}

func TestSnapFailures(t *testing.T) {
	exit := func(argv0 string, code int) func(*fakeTarget, *fakeEnv) {
		return func(ft *fakeTarget, fe *fakeEnv) {
			inner := ft.onRun
			ft.onRun = func(c recordedCommand) fakeRun {
				if strings.Join(c.Args, " ") == argv0 {
					return fakeRun{code: code}
				}
				return inner(c)
			}
		}
	}
	cases := []struct {
		name      string
		prep      func(*fakeTarget, *fakeEnv)
		seams     func(*seams)
		want      BuildStatus
		log       string
		teardown  bool
		noResults bool
	}{
		{name: "target cannot be made", prep: func(ft *fakeTarget, fe *fakeEnv) { fe.newErr = errFake }, want: BuildChrootFail, log: "cannot make the lxd target"},
		{name: "create fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["create"] = errFake }, want: BuildChrootFail, teardown: true},
		{name: "start fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["start"] = errFake }, want: BuildChrootFail, teardown: true},
		{name: "proxy fails", seams: func(s *seams) { s.proxyErr = errFake }, want: BuildBuilderFail, log: "cannot start the builder proxy", teardown: true},
		{name: "apt-get fails", prep: exit("apt-get -y install python3 socat udev git sudo", 100), want: BuildPackageFail, log: "Install failed: apt-get -y install python3 socat udev git sudo failed with exit status 100", teardown: true, noResults: true},
		{name: "snap install fails", prep: exit("snap install --classic --channel=8.x/stable snapcraft", 1), want: BuildPackageFail, log: "Install failed", teardown: true},
		{name: "checkout fails", seams: func(s *seams) { s.checkoutErr = errors.New("no such ref") }, want: BuildPackageFail, log: "Build failed: cannot check out https://git.example/hello.git at refs/tags/1.0: no such ref", teardown: true},
		{name: "copy in fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["copytreein"] = errFake }, want: BuildBuilderFail, log: "cannot copy the source into the target", teardown: true},
		{name: "pull fails", prep: exit("snapcraft pull", 1), want: BuildPackageFail, log: "Build failed: snapcraft pull failed with exit status 1", teardown: true, noResults: true},
		{name: "pull 200", prep: exit("snapcraft pull", 200), want: BuildPackageFail, teardown: true},
		{name: "build fails", prep: exit("snapcraft", 201), want: BuildPackageFail, teardown: true, noResults: true},
		{name: "command cannot run", prep: func(ft *fakeTarget, fe *fakeEnv) {
			inner := ft.onRun
			ft.onRun = func(c recordedCommand) fakeRun {
				if len(c.Args) == 1 && c.Args[0] == "snapcraft" {
					return fakeRun{err: errors.New("websocket closed")}
				}
				return inner(c)
			}
		}, want: BuildBuilderFail, log: "cannot run snapcraft: websocket closed", teardown: true, noResults: true},
		{name: "gather fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["copyout"] = errFake }, want: BuildPackageFail, log: "Failed to gather results: cannot store /build/hello/hello.debug: fake failure", teardown: true},
		{name: "file cache fails", prep: func(ft *fakeTarget, fe *fakeEnv) { fe.addErr = errFake }, want: BuildPackageFail, log: "Failed to gather results", teardown: true},
		{name: "stop fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["stop"] = errFake }, want: BuildBuilderFail, log: "cannot stop the target: fake failure", teardown: true},
		{name: "remove fails after a package failure", prep: func(ft *fakeTarget, fe *fakeEnv) {
			ft.errs["remove"] = errFake
			exit("snapcraft", 1)(ft, fe)
		}, want: BuildPackageFail, teardown: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := installSeams(t)
			if tc.seams != nil {
				tc.seams(s)
			}
			ft, fe, res := runSnap(t, baseArgs(), tc.prep)
			if res.Status != tc.want {
				t.Errorf("status = %s, want %s; log:\n%s", res.Status, tc.want, fe.logText())
			}
			if tc.log != "" && !strings.Contains(fe.logText(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, fe.logText())
			}
			if tc.teardown && !(slices.Contains(ft.calls, "stop") && slices.Contains(ft.calls, "remove")) {
				t.Errorf("target not torn down: %q", ft.calls)
			}
			if s.proxy != nil && !slices.Contains(s.proxy.events, "stop") {
				t.Errorf("proxy not stopped: %q", s.proxy.events)
			}
			if tc.noResults && len(fe.waiting) != 0 {
				t.Errorf("results gathered after failure: %q", fe.waitOrder)
			}
		})
	}
}

func TestSnapFastCleanup(t *testing.T) {
	installSeams(t)
	args := baseArgs()
	args["fast_cleanup"] = true
	ft, fe, res := runSnap(t, args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s", res.Status)
	}
	// The target decides what fast_cleanup skips (Spec.FastCleanup): the
	// manager still stops and removes it.
	if !slices.Contains(ft.calls, "stop") || !slices.Contains(ft.calls, "remove") {
		t.Errorf("fast_cleanup: target calls %q, want stop and remove", ft.calls)
	}
	if !strings.Contains(fe.logText(), "fast_cleanup: ") {
		t.Errorf("log:\n%s", fe.logText())
	}
	if !ft.spec.FastCleanup {
		t.Errorf("spec.FastCleanup not set")
	}
}

func TestSnapAbort(t *testing.T) {
	s := installSeams(t)
	m, err := NewSnapManager(Request{BuildID: "B", Args: baseArgs()})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.blockRun = "snapcraft"
	fe := newFakeEnv(ft)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- m.Run(ctx, &fe.Env) }()
	select {
	case <-ft.running:
	case <-time.After(10 * time.Second):
		t.Fatal("snapcraft never ran")
	}
	cancel()
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after abort")
	}
	if res.Status != BuildAborted {
		t.Errorf("status = %s", res.Status)
	}
	if !slices.Contains(ft.calls, "stop") || !slices.Contains(ft.calls, "remove") {
		t.Errorf("aborted build not torn down: %q", ft.calls)
	}
	if !slices.Contains(s.proxy.events, "stop") {
		t.Errorf("proxy not stopped")
	}
	if len(fe.waiting) != 0 {
		t.Errorf("aborted build gathered %q", fe.waitOrder)
	}
}

func TestSnapStoreProxy(t *testing.T) {
	installSeams(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/auth/store/assertions" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Assertion-Store-Id", "store-id-1")
		io.WriteString(w, "type: store\n")
	}))
	defer srv.Close()
	ft, fe, res := runSnap(t, baseArgs(), func(ft *fakeTarget, fe *fakeEnv) {
		fe.Config.SnapStoreProxyURL = srv.URL + "/some/path"
	})
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	ack, ok := ft.command("snap", "ack")
	if !ok || ack.Args[2] != snapStoreAssertionsPath {
		t.Errorf("snap ack = %+v", ack)
	}
	if f := ft.files[snapStoreAssertionsPath]; f == nil || string(f.data) != "type: store\n" || f.mode != 0o600 {
		t.Errorf("assertions file = %+v", f)
	}
	if _, ok := ft.command("rm", "-f", snapStoreAssertionsPath); !ok {
		t.Errorf("assertions file not removed: %q", ft.argvs())
	}
	if _, ok := ft.command("snap", "set", "core", "proxy.store=store-id-1"); !ok {
		t.Errorf("store id not set: %q", ft.argvs())
	}
	// Assertions come before the channel snaps.
	cmds := ft.argvs()
	if slices.Index(cmds, "snap ack "+snapStoreAssertionsPath) > slices.Index(cmds, "snap install --channel=stable core22") {
		t.Errorf("order: %q", cmds)
	}

	// A store proxy that fails is an install failure.
	_, fe, res = runSnap(t, baseArgs(), func(ft *fakeTarget, fe *fakeEnv) { fe.Config.SnapStoreProxyURL = srv.URL + "/nope/" })
	_ = fe
	srv.Close()
	_, fe, res = runSnap(t, baseArgs(), func(ft *fakeTarget, fe *fakeEnv) { fe.Config.SnapStoreProxyURL = srv.URL })
	if res.Status != BuildPackageFail || !strings.Contains(fe.logText(), "Install failed: cannot fetch snap store proxy assertions") {
		t.Errorf("status %s log:\n%s", res.Status, fe.logText())
	}
}

func TestSnapArgs(t *testing.T) {
	cases := []struct {
		name   string
		change func(map[string]any)
		arg    string // "" = valid
	}{
		{"valid", func(map[string]any) {}, ""},
		{"string build_request_id", func(a map[string]any) { a["build_request_id"] = "13" }, ""},
		{"build_path ignored", func(a map[string]any) { a["build_path"] = "sub" }, ""},
		{"nil optional", func(a map[string]any) { a["git_path"] = nil }, ""},
		{"use_fetch_service false", func(a map[string]any) { a["use_fetch_service"] = false }, ""},
		{"missing series", func(a map[string]any) { delete(a, "series") }, "series"},
		{"series wrong type", func(a map[string]any) { a["series"] = int64(1) }, "series"},
		{"bad series", func(a map[string]any) { a["series"] = "../x" }, "series"},
		{"bad arch", func(a map[string]any) { a["arch_tag"] = "x/y" }, "arch_tag"},
		{"bad image_type", func(a map[string]any) { a["image_type"] = "qcow2" }, "image_type"},
		{"missing name", func(a map[string]any) { delete(a, "name") }, "name"},
		{"name with slash", func(a map[string]any) { a["name"] = "../etc" }, "name"},
		{"name dotdot", func(a map[string]any) { a["name"] = ".." }, "name"},
		{"name option", func(a map[string]any) { a["name"] = "-rf" }, "name"},
		{"channels wrong type", func(a map[string]any) { a["channels"] = []any{"x"} }, "channels"},
		{"channel not string", func(a map[string]any) { a["channels"] = map[string]any{"core": int64(1)} }, "channels"},
		{"bad snap name", func(a map[string]any) { a["channels"] = map[string]any{"--classic": "stable"} }, "channels"},
		{"bad channel", func(a map[string]any) { a["channels"] = map[string]any{"core": "a b"} }, "channels"},
		{"build_request_id bool", func(a map[string]any) { a["build_request_id"] = true }, "build_request_id"},
		{"proxy_url not a URL", func(a map[string]any) { a["proxy_url"] = "10.0.0.1:3128" }, "proxy_url"},
		{"proxy_url ftp", func(a map[string]any) { a["proxy_url"] = "ftp://h:1/" }, "proxy_url"},
		{"revocation wrong type", func(a map[string]any) { a["revocation_endpoint"] = int64(3) }, "revocation_endpoint"},
		{"disable_proxy string", func(a map[string]any) { a["disable_proxy_after_pull"] = "yes" }, "disable_proxy_after_pull"},
		{"branch", func(a map[string]any) { a["branch"] = "lp:foo" }, "branch"},
		{"no repository", func(a map[string]any) { delete(a, "git_repository") }, "git_repository"},
		{"git_path option", func(a map[string]any) { a["git_path"] = "--upload-pack=x" }, "git_path"},
		{"tarball wrong type", func(a map[string]any) { a["build_source_tarball"] = int64(1) }, "build_source_tarball"},
		{"private wrong type", func(a map[string]any) { a["private"] = "true" }, "private"},
		{"target arches wrong type", func(a map[string]any) { a["target_architectures"] = "amd64" }, "target_architectures"},
		{"target arch element", func(a map[string]any) { a["target_architectures"] = []any{"amd64", int64(2)} }, "target_architectures"},
		{"fetch service without its certificate", func(a map[string]any) { a["use_fetch_service"] = true }, "secrets"},
		{"fetch service certificate not base64", func(a map[string]any) {
			a["use_fetch_service"] = true
			a["secrets"] = map[string]any{"fetch_service_mitm_certificate": "!!"}
		}, "secrets"},
		{"fast_cleanup wrong type", func(a map[string]any) { a["fast_cleanup"] = "no" }, "fast_cleanup"},
		{"archive_private wrong type", func(a map[string]any) { a["archive_private"] = int64(0) }, "archive_private"},
		{"empty archives", func(a map[string]any) { a["archives"] = []any{} }, "archives"},
		{"launchpad_instance wrong type", func(a map[string]any) { a["launchpad_instance"] = []any{} }, "launchpad_instance"},
		{"constraints wrong type", func(a map[string]any) { a["builder_constraints"] = "gpu" }, "builder_constraints"},
		{"secrets wrong type", func(a map[string]any) { a["secrets"] = "x" }, "secrets"},
		{"NUL in string", func(a map[string]any) { a["git_path"] = "a\x00b" }, "git_path"},
		{"bad trusted key", func(a map[string]any) { a["trusted_keys"] = []any{"!!"} }, "trusted_keys"},
		{"archives line", func(a map[string]any) { a["archives"] = []any{"deb http://x/ a\nb"} }, "archives"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := baseArgs()
			tc.change(args)
			f, ok := Lookup("snap")
			if !ok {
				t.Fatal("snap is not registered")
			}
			_, err := f(Request{BuildID: "B", Args: args})
			if tc.arg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("error = %v, want an *ArgError", err)
			}
			if ae.Arg != tc.arg {
				t.Errorf("ArgError names %q (%v), want %q", ae.Arg, err, tc.arg)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the proxy password: %v", err)
			}
		})
	}
}

func TestImageInfo(t *testing.T) {
	cases := []struct {
		args map[string]any
		want string
	}{
		{map[string]any{}, "{}"},
		{map[string]any{"build_request_id": int64(13), "build_url": "https://lp/build"}, `{"build-request-id": "lp-13", "build_url": "https://lp/build"}`},
		{map[string]any{"build_request_timestamp": "2025-01-01T00:00:00Z"}, `{"build-request-timestamp": "2025-01-01T00:00:00Z"}`},
		{map[string]any{"build_url": "https://lp/<é>&\"\U0001F600"}, `{"build_url": "https://lp/<\u00e9>&\"\ud83d\ude00"}`},
	}
	for _, tc := range cases {
		tc.args["series"], tc.args["name"], tc.args["git_repository"] = "noble", "x", "https://h/x.git"
		a, err := ParseSnapArgs(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.ImageInfo(); got != tc.want {
			t.Errorf("ImageInfo = %s, want %s", got, tc.want)
		}
	}
}

func FuzzPythonJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "<>&", "é", "\x00\x1f\x7f", "\U0001F600", "\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := PythonJSONString(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("non-ASCII byte in %q", enc)
			}
		}
		var back string
		if err := json.Unmarshal([]byte(enc), &back); err != nil {
			t.Fatalf("%q does not decode: %v", enc, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("round trip %q → %q → %q", s, enc, back)
		}
	})
}

func FuzzParseSnapArgs(f *testing.F) {
	f.Add("hello", "snapcraft", "8.x/stable", "refs/tags/1.0", "http://u:p@h:3128", "amd64")
	f.Add("..", "-x", "", "-", "::", "")
	f.Fuzz(func(t *testing.T, name, snap, channel, gitPath, proxyURL, arch string) {
		args := map[string]any{"series": "noble", "name": name, "git_repository": "https://h/x.git",
			"channels": map[string]any{snap: channel}, "git_path": gitPath, "proxy_url": proxyURL,
			"target_architectures": []any{arch}}
		a, err := ParseSnapArgs(args)
		if err != nil {
			var ae *ArgError
			if !errors.As(err, &ae) || ae.Arg == "" {
				t.Fatalf("error %v is not an ArgError naming an argument", err)
			}
			return
		}
		if strings.Contains(a.Name, "/") || a.Name == "." || a.Name == ".." || strings.HasPrefix(a.Name, "-") {
			t.Fatalf("unsafe name accepted: %q", a.Name)
		}
		for s := range a.Channels {
			if strings.HasPrefix(s, "-") {
				t.Fatalf("option-like snap name accepted: %q", s)
			}
		}
	})
}

func TestSnapArchivesAndKeys(t *testing.T) {
	installSeams(t)
	oldDelay := aptRetryDelay
	aptRetryDelay = time.Millisecond
	t.Cleanup(func() { aptRetryDelay = oldDelay })
	armored := "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ==\n-----END PGP PUBLIC KEY BLOCK-----\n"
	args := baseArgs()
	args["series"] = "noble"
	args["archives"] = []any{
		"deb [arch=amd64,armel signed-by=/k.gpg] http://archive.example/ubuntu noble main universe",
		"deb-src http://archive.example/ubuntu noble main",
		"deb [bogus=1] http://x/ noble main",
	}
	args["trusted_keys"] = []any{base64.StdEncoding.EncodeToString([]byte(armored)), base64.StdEncoding.EncodeToString([]byte{0x99, 1, 2})}
	updates := 0
	ft, fe, res := runSnap(t, args, func(ft *fakeTarget, fe *fakeEnv) {
		fe.Config.AptProxyURL = "http://apt-proxy.example:3142/"
		inner := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			if len(c.Args) == 3 && c.Args[2] == "update" {
				updates++
				if updates == 1 {
					return fakeRun{code: 100}
				}
			}
			return inner(c)
		}
	})
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	want := "Types: deb\nURIs: http://archive.example/ubuntu\nEnabled: yes\nSuites: noble\nComponents: main universe\nArchitectures: amd64,armel\nSigned-By: /k.gpg\n\n" +
		"Types: deb-src\nURIs: http://archive.example/ubuntu\nEnabled: yes\nSuites: noble\nComponents: main\n"
	if f := ft.files["/etc/apt/sources.list.d/lp-buildd.sources"]; f == nil || string(f.data) != want {
		t.Errorf("deb822 sources:\n%s", ft.files["/etc/apt/sources.list.d/lp-buildd.sources"].data)
	}
	if !strings.Contains(fe.logText(), `Skipping archive "deb [bogus=1] http://x/ noble main": unknown option "bogus"`) {
		t.Errorf("log:\n%s", fe.logText())
	}
	if f := ft.files["/etc/apt/trusted.gpg.d/launchpad-buildd-0.asc"]; f == nil || string(f.data) != armored {
		t.Errorf("armoured key not written")
	}
	if f := ft.files["/etc/apt/trusted.gpg.d/launchpad-buildd-1.gpg"]; f == nil || len(f.data) != 3 {
		t.Errorf("binary key not written")
	}
	if f := ft.files["/etc/apt/apt.conf.d/99proxy"]; f == nil || string(f.data) != "Acquire::http::Proxy \"http://apt-proxy.example:3142/\";\n" {
		t.Errorf("99proxy wrong")
	}
	if f := ft.files["/etc/apt/preferences.d/proposed.pref"]; f == nil || string(f.data) != "Package: *\nPin: release a=*-proposed\nPin-Priority: 500\n" {
		t.Errorf("proposed.pref wrong")
	}
	cmds := ft.argvs()
	wantPrefix := []string{"rm -f /etc/apt/sources.list.d/ubuntu.sources", "rm -f /etc/apt/sources.list",
		"/usr/bin/apt-get -uy update", "/usr/bin/apt-get -uy update",
		"/usr/bin/apt-get -o DPkg::Options::=--force-confold -uy --purge dist-upgrade"}
	if diff := cmp.Diff(wantPrefix, cmds[:len(wantPrefix)]); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	up, _ := ft.command("/usr/bin/apt-get")
	if diff := cmp.Diff([]string{"LANG=C", "DEBIAN_FRONTEND=noninteractive", "TTY=unknown"}, up.Env); diff != "" {
		t.Errorf("update env: %s", diff)
	}

	// Old series keep the one-line format; a failing update is CHROOTFAIL.
	args["series"] = "jammy"
	ft, fe, res = runSnap(t, args, func(ft *fakeTarget, fe *fakeEnv) {
		inner := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			if len(c.Args) == 3 && c.Args[2] == "update" {
				return fakeRun{code: 100}
			}
			return inner(c)
		}
	})
	if res.Status != BuildChrootFail {
		t.Errorf("status %s, want CHROOTFAIL", res.Status)
	}
	if f := ft.files["/etc/apt/sources.list"]; f == nil || !strings.HasPrefix(string(f.data), "deb [arch=amd64,armel signed-by=/k.gpg] http://archive.example/ubuntu noble main universe\n") {
		t.Errorf("one-line sources not written")
	}
	if _, ok := ft.command("snapcraft"); ok {
		t.Errorf("snapcraft ran after a CHROOTFAIL")
	}
	if !slices.Contains(ft.calls, "remove") {
		t.Errorf("not torn down")
	}
	_ = fe
}

func FuzzDeb822Sources(f *testing.F) {
	f.Add("deb [arch=amd64 signed-by=/k.gpg] http://archive.example/ubuntu noble main universe")
	f.Add("deb-src http://x/ noble")
	f.Add("deb [ ] x y")
	f.Add("deb [arch=amd64")
	f.Fuzz(func(t *testing.T, line string) {
		text, skipped := Deb822Sources([]string{line})
		if text == "" && len(skipped) != 1 {
			t.Fatalf("line %q neither converted nor skipped", line)
		}
		if text != "" && (!strings.HasPrefix(text, "Types: deb") || !strings.Contains(text, "\nEnabled: yes\n")) {
			t.Fatalf("odd stanza for %q:\n%s", line, text)
		}
	})
}

func TestAddURLSecrets(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want []string
	}{
		{"http://user:p%40ss@h:3128/x@y", []string{"p@ss", "p%40ss"}},
		{"http://user:plain@h:3128", []string{"plain", "plain"}},
		{"http://user@h:3128", nil},
		{"https://h/x.git", nil},
		{"::", nil},
	} {
		fe := newFakeEnv(newFakeTarget())
		b := NewContainerBuild(&fe.Env, Request{}, CommonArgs{}, nil, nil)
		b.AddURLSecrets(tc.url)
		if diff := cmp.Diff(tc.want, fe.secrets); diff != "" {
			t.Errorf("%s: secrets (-want +got):\n%s", tc.url, diff)
		}
	}
}

func TestSnapInstallRetries(t *testing.T) {
	installSeams(t)
	tries := 0
	ft, fe, res := runSnap(t, baseArgs(), func(ft *fakeTarget, fe *fakeEnv) {
		inner := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			if strings.Join(c.Args, " ") == "snap install --channel=stable core22" {
				tries++
				if tries < 3 {
					return fakeRun{code: 1}
				}
			}
			return inner(c)
		}
	})
	if res.Status != BuildOK || tries != 3 {
		t.Errorf("status %s after %d tries\n%s", res.Status, tries, fe.logText())
	}
	_ = ft
	// Three failures are an install failure.
	_, fe, res = runSnap(t, baseArgs(), func(ft *fakeTarget, fe *fakeEnv) {
		inner := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			if len(c.Args) > 2 && c.Args[0] == "snap" && c.Args[1] == "install" && c.Args[2] == "--classic" {
				return fakeRun{code: 1}
			}
			return inner(c)
		}
	})
	if res.Status != BuildPackageFail || strings.Count(fe.logText(), "RUN: snap install --classic") != 3 {
		t.Errorf("status %s\n%s", res.Status, fe.logText())
	}
}

package builders

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// craftBaseArgs are LP-shaped arguments of a charm, rock or craft build.
func craftBaseArgs(tool string) map[string]any {
	return map[string]any{
		"series":              "noble",
		"arch_tag":            "amd64",
		"name":                "hello",
		"channels":            map[string]any{tool: "3.x/stable", "core24": "latest/stable"},
		"build_url":           "https://launchpad.example/~u/+build/1",
		"proxy_url":           "http://user:s3cret@127.0.0.1:3128",
		"revocation_endpoint": "http://127.0.0.1:9/tokens/user",
		"git_repository":      "https://git.example/hello.git",
		"git_path":            "refs/tags/1.0",
		"build_path":          "sub",
		"private":             false,
		"fast_cleanup":        false,
	}
}

// runCraft runs tag's manager against a fake target whose tool writes
// results into its working directory.
func runCraft(t *testing.T, tag string, args map[string]any, prep func(*fakeTarget, *fakeEnv)) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	factory, ok := Lookup(tag)
	if !ok {
		t.Fatalf("no %s manager", tag)
	}
	m, err := factory(Request{BuildID: "CRAFT-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	ft := newFakeTarget()
	ft.onRun = func(c recordedCommand) fakeRun {
		if len(c.Args) == 4 && c.Args[1] == "pack" {
			for _, n := range []string{"hello_amd64.charm", "hello.manifest", "hello_1.0_amd64.rock", "hello-1.0.tar.xz", "notes.txt"} {
				ft.put(c.Dir+"/"+n, "DATA "+n, 0o644)
			}
			ft.symlink(c.Dir+"/latest.charm", "hello_amd64.charm")
			ft.symlink(c.Dir+"/latest.rock", "hello_1.0_amd64.rock")
		}
		if len(c.Args) == 3 && c.Args[0] == "apt-cache" && (c.Args[2] == "udev" || c.Args[2] == "bzr") {
			return fakeRun{stdout: "Package: " + c.Args[2] + "\nVersion: 252\n"}
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
	return ft, fe, m.Run(context.Background(), &fe.Env)
}

func TestCraftToolsHappyPath(t *testing.T) {
	cases := []struct {
		tag, tool string
		cmds      []string
		results   []string
	}{
		{tag: "charm", tool: "charmcraft", cmds: []string{
			"apt-get -y install python3 socat udev git python3-pip python3-setuptools",
			"snap install --channel=latest/stable core24",
			"snap install --classic --channel=3.x/stable charmcraft",
		}, results: []string{"hello.manifest", "hello_amd64.charm"}},
		{tag: "rock", tool: "rockcraft", cmds: []string{
			"apt-get -y install python3 socat udev git python3-pip python3-setuptools dirmngr",
			"snap install --channel=latest/stable core24",
			"snap install --classic --channel=3.x/stable rockcraft",
		}, results: []string{"hello_1.0_amd64.rock"}},
		{tag: "craft", tool: "sourcecraft", cmds: []string{
			"apt-get -y install python3 socat udev git",
			"snap install --channel=latest/stable core24",
			"snap install --classic --channel=3.x/stable sourcecraft",
		}, results: []string{"hello-1.0.tar.xz"}},
	}
	for _, tc := range cases {
		t.Run(tc.tag, func(t *testing.T) {
			s := installSeams(t)
			s.files = map[string]string{"sub/charmcraft.yaml": "name: hello\n", "README": "x\n"}
			factory, _ := Lookup(tc.tag)
			m, err := factory(Request{BuildID: "CRAFT-1", Args: craftBaseArgs(tc.tool)})
			if err != nil {
				t.Fatal(err)
			}
			ft, fe, res := runCraft(t, tc.tag, craftBaseArgs(tc.tool), nil)
			if res.Status != BuildOK {
				t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
			}
			want := []string{"apt-cache show snapd", "apt-cache show fuse", "apt-cache show squashfuse", "apt-cache show udev"}
			want = append(want, tc.cmds...)
			want = append(want, "mkdir -p /home/buildd", "mkdir -p /home/buildd", tc.tool+" pack -v --destructive-mode")
			if diff := cmp.Diff(want, ft.argvs()); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
			pack, _ := ft.command(tc.tool, "pack")
			if pack.Dir != "/home/buildd/hello/sub" {
				t.Errorf("pack ran in %q", pack.Dir)
			}
			env := envMap(pack.Env)
			if env["LANG"] != "C.UTF-8" || env["SHELL"] != "/bin/sh" || env["http_proxy"] != "http://10.10.10.1:8222/" || env["SNAPPY_STORE_NO_CDN"] != "1" {
				t.Errorf("pack env = %q", pack.Env)
			}
			if ft.files["/home/buildd/hello/sub/charmcraft.yaml"] == nil {
				t.Errorf("source not under /home/buildd/hello")
			}
			if diff := cmp.Diff(tc.results, fe.waitOrder); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if fe.status["revision_id"] != "0123456789abcdef0123456789abcdef01234567" {
				t.Errorf("revision_id = %v", fe.status["revision_id"])
			}
			if diff := cmp.Diff([]string{"stop"}, s.proxy.events); diff != "" {
				t.Errorf("proxy events: %s", diff)
			}
			if diff := cmp.Diff([]string{"create", "start", "stop", "remove"}, ft.calls); diff != "" {
				t.Errorf("lifecycle (-want +got):\n%s", diff)
			}
			log := fe.logText()
			for _, w := range []string{"Running install phase\n", "Running repo phase...\n", "Running build phase...\n", "RUN: " + tc.tool + " pack -v --destructive-mode\n"} {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q", w)
				}
			}
			if up, ri := m.ProxyInfo(); up || ri != "http://127.0.0.1:9/tokens/user" {
				t.Errorf("ProxyInfo = %v %q", up, ri)
			}
		})
	}
}

func TestCraftToolsPhases(t *testing.T) {
	installSeams(t).files = map[string]string{"sub/rockcraft.yaml": "x"}
	factory, _ := Lookup("rock")
	m, err := factory(Request{BuildID: "B", Args: craftBaseArgs("rockcraft")})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	m.(ProgressReporter).SetProgress(func(step, total int, phase string) {
		if total != 7 || step != len(phases)+1 {
			t.Errorf("step %d of %d", step, total)
		}
		phases = append(phases, phase)
	})
	ft := newFakeTarget()
	fe := newFakeEnv(ft)
	m.Run(context.Background(), &fe.Env)
	want := []string{"start target", "install", "fetch source", "rockcraft pack", "stop proxy", "gather results", "clean up"}
	if diff := cmp.Diff(want, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
}

func TestCraftToolsDefaultChannelsAndEnv(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"x": "x"}
	for _, tc := range []struct {
		tag, install string
		args         map[string]any
		env          map[string]string
		unset        []string
	}{
		{tag: "charm", install: "snap install --classic charmcraft", args: map[string]any{"craft_platform": "ubuntu-24.04-amd64", "launchpad_instance": "production"},
			env: map[string]string{"CRAFT_PLATFORM": "ubuntu-24.04-amd64"}, unset: []string{"LAUNCHPAD_INSTANCE"}},
		{tag: "rock", install: "snap install --classic rockcraft", args: map[string]any{"launchpad_instance": "production", "launchpad_server_url": "launchpad.net", "craft_platform": "x"},
			env: map[string]string{"LAUNCHPAD_INSTANCE": "production", "LAUNCHPAD_SERVER_URL": "launchpad.net"}, unset: []string{"CRAFT_PLATFORM"}},
		{tag: "craft", install: "snap install --classic --channel=latest/edge/craftctl sourcecraft", args: map[string]any{"launchpad_instance": "qastaging", "environment_variables": map[string]any{"FOO": "bar"}},
			env: map[string]string{"LAUNCHPAD_INSTANCE": "qastaging"}, unset: []string{"FOO", "CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS"}},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			args := craftBaseArgs("")
			args["channels"] = map[string]any{}
			delete(args, "proxy_url")
			delete(args, "build_path")
			for k, v := range tc.args {
				args[k] = v
			}
			ft, fe, res := runCraft(t, tc.tag, args, nil)
			if res.Status != BuildOK {
				t.Fatalf("status %s:\n%s", res.Status, fe.logText())
			}
			if !slices.Contains(ft.argvs(), tc.install) {
				t.Errorf("no %q in %q", tc.install, ft.argvs())
			}
			if !slices.Contains(ft.argvs(), "apt-get -y install udev git"+map[string]string{"charm": " python3-pip python3-setuptools", "rock": " python3-pip python3-setuptools dirmngr", "craft": ""}[tc.tag]) {
				t.Errorf("install without a proxy: %q", ft.argvs())
			}
			var pack recordedCommand
			for _, c := range ft.commands {
				if len(c.Args) > 1 && c.Args[1] == "pack" {
					pack = c
				}
			}
			if pack.Dir != "/home/buildd/hello" {
				t.Errorf("pack dir %q", pack.Dir)
			}
			env := envMap(pack.Env)
			for k, v := range tc.env {
				if env[k] != v {
					t.Errorf("%s = %q, want %q", k, env[k], v)
				}
			}
			for _, k := range append(tc.unset, "http_proxy") {
				if _, ok := env[k]; ok {
					t.Errorf("%s set in %q", k, pack.Env)
				}
			}
		})
	}
}

// TestCraftToolsExitMapping: charm maps 200/201 (any non-zero exit of a
// command) to PACKAGEFAIL and the rest to BUILDERFAIL; rock and craft map
// every failure of the operation to PACKAGEFAIL.
func TestCraftToolsExitMapping(t *testing.T) {
	cannotRun := func(argv0 string) func(*fakeTarget, *fakeEnv) {
		return func(ft *fakeTarget, fe *fakeEnv) {
			inner := ft.onRun
			ft.onRun = func(c recordedCommand) fakeRun {
				if c.Args[0] == argv0 {
					return fakeRun{err: errors.New("websocket closed")}
				}
				return inner(c)
			}
		}
	}
	exit := func(argv0 string, code int) func(*fakeTarget, *fakeEnv) {
		return func(ft *fakeTarget, fe *fakeEnv) {
			inner := ft.onRun
			ft.onRun = func(c recordedCommand) fakeRun {
				if c.Args[0] == argv0 {
					return fakeRun{code: code}
				}
				return inner(c)
			}
		}
	}
	cases := []struct {
		name        string
		tool        string
		prep        func(*fakeTarget, *fakeEnv)
		seams       func(*seams)
		charm, rock BuildStatus
		log         string
	}{
		{name: "pack exits 1", tool: "pack", charm: BuildPackageFail, rock: BuildPackageFail, log: "Build failed: "},
		{name: "apt-get exits 100", prep: exit("apt-get", 100), charm: BuildPackageFail, rock: BuildPackageFail, log: "Install failed: apt-get -y install"},
		{name: "pack cannot run", tool: "cannot", charm: BuildBuilderFail, rock: BuildPackageFail, log: "websocket closed"},
		{name: "apt-get cannot run", prep: cannotRun("apt-get"), charm: BuildBuilderFail, rock: BuildPackageFail, log: "Install failed: cannot run apt-get"},
		{name: "copy in fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["copytreein"] = errFake }, charm: BuildBuilderFail, rock: BuildPackageFail, log: "cannot copy the source into the target"},
		{name: "checkout fails", seams: func(s *seams) { s.checkoutErr = errors.New("no such ref") }, charm: BuildPackageFail, rock: BuildPackageFail, log: "Build failed: cannot check out"},
		// Outside the in-target operation the statuses are the flow's.
		{name: "start fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["start"] = errFake }, charm: BuildChrootFail, rock: BuildChrootFail},
		{name: "proxy fails", seams: func(s *seams) { s.proxyErr = errFake }, charm: BuildBuilderFail, rock: BuildBuilderFail, log: "cannot start the builder proxy"},
		{name: "remove fails", prep: func(ft *fakeTarget, fe *fakeEnv) { ft.errs["remove"] = errFake }, charm: BuildBuilderFail, rock: BuildBuilderFail},
	}
	for _, tc := range cases {
		for _, tag := range []string{"charm", "rock", "craft"} {
			t.Run(tc.name+"/"+tag, func(t *testing.T) {
				s := installSeams(t)
				s.files = map[string]string{"sub/x.yaml": "x"}
				if tc.seams != nil {
					tc.seams(s)
				}
				tool := map[string]string{"charm": "charmcraft", "rock": "rockcraft", "craft": "sourcecraft"}[tag]
				prep := tc.prep
				switch tc.tool {
				case "pack":
					prep = exit(tool, 1)
				case "cannot":
					prep = cannotRun(tool)
				}
				_, fe, res := runCraft(t, tag, craftBaseArgs(tool), prep)
				want := tc.rock
				if tag == "charm" {
					want = tc.charm
				}
				if res.Status != want {
					t.Errorf("status = %s, want %s; log:\n%s", res.Status, want, fe.logText())
				}
				if tc.log != "" && !strings.Contains(fe.logText(), tc.log) {
					t.Errorf("log lacks %q:\n%s", tc.log, fe.logText())
				}
				if len(fe.waiting) != 0 && want != BuildOK && tc.name != "remove fails" {
					t.Errorf("results gathered after a failure: %q", fe.waitOrder)
				}
			})
		}
	}
}

func TestCraftToolsAbort(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"x": "x"}
	factory, _ := Lookup("craft")
	args := craftBaseArgs("sourcecraft")
	delete(args, "build_path")
	m, err := factory(Request{BuildID: "B", Args: args})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.blockRun = "sourcecraft"
	fe := newFakeEnv(ft)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- m.Run(ctx, &fe.Env) }()
	<-ft.running
	cancel()
	if res := <-done; res.Status != BuildAborted {
		t.Errorf("status = %s", res.Status)
	}
	if !slices.Contains(ft.calls, "remove") || !slices.Contains(s.proxy.events, "stop") {
		t.Errorf("not torn down: %q %q", ft.calls, s.proxy.events)
	}
}

// TestCraftToolsBuildPathEscape: the path is refused after the checkout
// (revision_id is set), as the reference's check_path_escape in build().
func TestCraftToolsBuildPathEscape(t *testing.T) {
	for _, tc := range []struct{ buildPath, link, log string }{
		{buildPath: "../other", log: `Build failed: invalid build file path: build_path "../other" leaves the source tree /home/buildd/hello ("..")`},
		{buildPath: "/etc", log: `build_path "/etc" is an absolute path`},
		{buildPath: "out/x", link: "/etc", log: `leaves the source tree /home/buildd/hello: out is a symlink to /etc`},
		{buildPath: "out", link: "../../..", log: `leaves the source tree`},
		{buildPath: "missing", log: `does not exist in the source tree`},
	} {
		t.Run(tc.buildPath, func(t *testing.T) {
			s := installSeams(t)
			s.files = map[string]string{"README": "x"}
			inner := CheckoutFunc
			CheckoutFunc = func(ctx context.Context, repo, ref, dir string, opts CheckoutOptions) (string, error) {
				rev, err := inner(ctx, repo, ref, dir, opts)
				if tc.link != "" {
					os.Symlink(tc.link, filepath.Join(dir, "out"))
				}
				return rev, err
			}
			args := craftBaseArgs("charmcraft")
			args["build_path"] = tc.buildPath
			ft, fe, res := runCraft(t, "charm", args, nil)
			if res.Status != BuildPackageFail {
				t.Errorf("status = %s", res.Status)
			}
			if !strings.Contains(fe.logText(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, fe.logText())
			}
			if _, ran := ft.command("charmcraft"); ran {
				t.Errorf("charmcraft ran")
			}
			if fe.status["revision_id"] == nil {
				t.Errorf("revision_id not set before the check")
			}
		})
	}
}

func TestCraftToolsArgs(t *testing.T) {
	good := craftBaseArgs("sourcecraft")
	for _, tag := range []string{"charm", "rock", "craft"} {
		factory, _ := Lookup(tag)
		if _, err := factory(Request{Args: good}); err != nil {
			t.Errorf("%s: LP-shaped args refused: %v", tag, err)
		}
	}
	bad := []struct {
		arg string
		v   any
	}{
		{"name", nil}, {"name", "a/b"}, {"name", ".."}, {"git_repository", nil}, {"branch", "lp:~u/p/b"},
		{"build_path", 3}, {"channels", map[string]any{"Bad Snap": "stable"}}, {"channels", map[string]any{"core": "-x"}},
		{"proxy_url", "ftp://x"}, {"secrets", "x"}, {"git_path", "-x"}, {"use_fetch_service", "yes"},
		{"environment_variables", map[string]any{"A=B": "x"}}, {"environment_variables", map[string]any{"A": "x\x00"}},
		{"environment_variables", map[string]any{"A": int64(1)}}, {"environment_variables", "x"},
	}
	for _, b := range bad {
		args := craftBaseArgs("sourcecraft")
		if b.v == nil {
			delete(args, b.arg)
		} else {
			args[b.arg] = b.v
		}
		factory, _ := Lookup("craft")
		_, err := factory(Request{Args: args})
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Arg != b.arg {
			t.Errorf("%s=%v: err = %v, want an ArgError naming it", b.arg, b.v, err)
		}
	}
	// use_fetch_service nil (snaps without the flag) and false are accepted.
	args := craftBaseArgs("rockcraft")
	args["use_fetch_service"] = false
	args["secrets"] = map[string]any{}
	if _, err := rockTool.factory(Request{Args: args}); err != nil {
		t.Errorf("use_fetch_service false: %v", err)
	}
}

func FuzzParseCraftArgs(f *testing.F) {
	f.Add("hello", "sub", "https://git.example/x.git", "CARGO_A_READ_AUTH", "u:t")
	f.Add("..", "../..", "-x", "A=B", "\x00")
	f.Fuzz(func(t *testing.T, name, buildPath, repo, key, value string) {
		args := craftBaseArgs("sourcecraft")
		args["name"], args["build_path"], args["git_repository"] = name, buildPath, repo
		args["environment_variables"] = map[string]any{key: value}
		a, err := sourcecraftTool.parseArgs(args)
		if err != nil {
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("not an ArgError: %v", err)
			}
			return
		}
		if strings.ContainsAny(a.Name, "/\x00") || a.Name == ".." || a.Name == "." {
			t.Fatalf("name %q accepted", a.Name)
		}
		for k, v := range a.EnvironmentVariables {
			if strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
				t.Fatalf("variable %q=%q accepted", k, v)
			}
		}
	})
}

// testCertPEM stands for the fetch service's CA certificate.
const testCertPEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

func fetchServiceArgs(args map[string]any) map[string]any {
	args["use_fetch_service"] = true
	args["secrets"] = map[string]any{"fetch_service_mitm_certificate": base64.StdEncoding.EncodeToString([]byte(testCertPEM))}
	return args
}

func TestFetchServiceArgs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret any
		ok     bool
	}{
		{"good", base64.StdEncoding.EncodeToString([]byte(testCertPEM)), true},
		{"wrapped base64", "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\nCk1JSUJ0ZXN0Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K", true},
		{"missing", nil, false},
		{"not base64", "%%%", false},
		{"not a certificate", base64.StdEncoding.EncodeToString([]byte("hello")), false},
		{"not a string", int64(3), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := craftBaseArgs("rockcraft")
			args["use_fetch_service"] = true
			secrets := map[string]any{}
			if tc.secret != nil {
				secrets["fetch_service_mitm_certificate"] = tc.secret
			}
			args["secrets"] = secrets
			m, err := rockTool.factory(Request{Args: args})
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				var ae *ArgError
				if !errors.As(err, &ae) || ae.Arg != "secrets" || strings.Contains(err.Error(), "LS0t") {
					t.Errorf("err = %v, want an ArgError naming secrets without its value", err)
				}
				return
			}
			if up, _ := m.ProxyInfo(); !up {
				t.Errorf("ProxyInfo use_fetch_service = false")
			}
		})
	}
	// snap reads it the same way.
	a, err := ParseSnapArgs(fetchServiceArgs(baseArgs()))
	if err != nil || a.FetchService == nil || string(a.FetchService.Certificate) != testCertPEM {
		t.Errorf("snap: %+v %v", a.FetchService, err)
	}
}

// TestFetchServiceFlow: the reference's extra install steps, in order,
// after the manager's own; the certificate installed; shallow checkout
// without the mirror; the CA variables in every build command; the
// proxy told to revoke the fetch service's way.
func TestFetchServiceFlow(t *testing.T) {
	for _, tc := range []struct{ tag, tool, last string }{
		{"rock", "rockcraft", "mkdir -p /home/buildd"},
		{"craft", "sourcecraft", "mkdir -p /home/buildd"},
		{"charm", "charmcraft", "mkdir -p /home/buildd"},
		{"snap", "snapcraft", "mkdir -p /root/.subversion"},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			s := installSeams(t)
			if tc.tag != "snap" {
				s.files = map[string]string{"sub/x.yaml": "x"}
			}
			var opts CheckoutOptions
			inner := CheckoutFunc
			CheckoutFunc = func(ctx context.Context, repo, ref, dir string, o CheckoutOptions) (string, error) {
				opts = o
				return inner(ctx, repo, ref, dir, o)
			}
			var ft *fakeTarget
			var fe *fakeEnv
			var res Result
			prep := func(_ *fakeTarget, fe *fakeEnv) { fe.Config.StateDir = t.TempDir() }
			if tc.tag == "snap" {
				ft, fe, res = runSnap(t, fetchServiceArgs(baseArgs()), prep)
			} else {
				ft, fe, res = runCraft(t, tc.tag, fetchServiceArgs(craftBaseArgs(tc.tool)), prep)
			}
			if res.Status != BuildOK {
				t.Fatalf("status %s:\n%s", res.Status, fe.logText())
			}
			cmds := ft.argvs()
			i := slices.Index(cmds, tc.last)
			want := []string{
				"rm -rf /var/lib/apt/lists",
				"mkdir -p /usr/local/share/ca-certificates",
				"update-ca-certificates",
				"snap set system proxy.http=http://10.10.10.1:8222/",
				"snap set system proxy.https=http://10.10.10.1:8222/",
				"apt-get -y update",
				"systemctl restart snapd",
			}
			if i < 0 || len(cmds) < i+1+len(want) {
				t.Fatalf("commands %q", cmds)
			}
			if diff := cmp.Diff(want, cmds[i+1:i+1+len(want)]); diff != "" {
				t.Errorf("fetch-service steps (-want +got):\n%s", diff)
			}
			if f := ft.files[MITMCertificatePath]; f == nil || string(f.data) != testCertPEM || f.mode != 0o644 {
				t.Errorf("certificate = %+v", f)
			}
			if f := ft.files["/etc/apt/apt.conf.d/99proxy"]; f == nil || string(f.data) != "Acquire::http::Proxy \"http://10.10.10.1:8222/\";\nAcquire::https::Proxy \"http://10.10.10.1:8222/\";\n\n" {
				t.Errorf("99proxy = %+v", f)
			}
			if !opts.Shallow || opts.MirrorDir != "" || string(opts.CABundle) != testCertPEM {
				t.Errorf("checkout options = %+v, want shallow without a mirror", opts)
			}
			if !s.proxy.cfg.FetchService {
				t.Errorf("the proxy is not told it revokes a fetch-service token")
			}
			last := ft.commands[len(ft.commands)-1]
			if tc.tag == "snap" {
				last, _ = ft.command("snapcraft", "pull")
			}
			env := envMap(last.Env)
			if env["CARGO_HTTP_CAINFO"] != MITMCertificatePath || env["REQUESTS_CA_BUNDLE"] != MITMCertificatePath || env["GOPROXY"] != "direct" {
				t.Errorf("%q env = %q", last.Args, last.Env)
			}
		})
	}
	// Without the fetch service: none of it.
	installSeams(t).files = map[string]string{"sub/x.yaml": "x"}
	ft, fe, _ := runCraft(t, "rock", craftBaseArgs("rockcraft"), nil)
	if slices.Contains(ft.argvs(), "update-ca-certificates") || strings.Contains(fe.logText(), "GOPROXY") {
		t.Errorf("fetch-service steps without use_fetch_service: %q", ft.argvs())
	}
	pack, _ := ft.command("rockcraft")
	if _, ok := envMap(pack.Env)["GOPROXY"]; ok {
		t.Errorf("GOPROXY set without the fetch service")
	}
}

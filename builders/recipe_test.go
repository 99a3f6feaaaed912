package builders

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func recipeArgs(extra map[string]any) map[string]any {
	a := map[string]any{
		"series": "bookworm", "arch_tag": "amd64", "suite": "bookworm-updates", "ogrecomponent": "universe",
		"author_name": "Jöe Üser", "author_email": "joe@example.com", "archive_purpose": "PPA", "git": true,
		"recipe_text": "# git-build-recipe format 0.4 deb-version {debupstream}+git{revtime}\nhttps://git.example/p.git main\n",
	}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

func TestParseRecipeArgs(t *testing.T) {
	tests := []struct {
		name    string
		extra   map[string]any
		wantErr string
	}{
		{"as buildd-manager sends it", nil, ""},
		{"bzr recipe (no git) is accepted", map[string]any{"git": nil}, ""},
		{"no recipe_text", map[string]any{"recipe_text": nil}, "recipe_text"},
		{"no suite", map[string]any{"suite": nil}, "suite"},
		{"suite with a newline", map[string]any{"suite": "a\nPackage: x"}, "suite"},
		{"author_name with a newline", map[string]any{"author_name": "a\nb"}, "author_name"},
		{"git not a boolean", map[string]any{"git": "yes"}, "git"},
		{"bad distroseries_name", map[string]any{"distroseries_name": "-x"}, "distroseries_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseRecipeArgs(recipeArgs(tt.extra))
			var ae *ArgError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (!errors.As(err, &ae) || ae.Arg != tt.wantErr):
				t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
			case tt.wantErr == "" && a.DistroSeriesName != "bookworm":
				t.Fatalf("distroseries_name defaults to %q, want the series", a.DistroSeriesName)
			}
		})
	}
}

func TestRecipeMissingDependency(t *testing.T) {
	for _, tt := range []struct{ log, want string }{
		{"Reading package lists...\nSome packages could not be installed.\nThe following packages have unmet dependencies:\n" +
			" builddeps:/build/work/tree/x : Depends: libfoo-dev (>= 3.0) but it is not installable\nE: Unable", "libfoo-dev (>= 3.0)"},
		{"The following packages have unmet dependencies:\n builddeps:x : Depends: bar but it is not going to be installed\n", "bar"},
		{"E: Unable to locate package\n", ""},
	} {
		got, ok := RecipeMissingDependency([]byte(tt.log))
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("RecipeMissingDependency(%q) = %q, %v; want %q", tt.log, got, ok, tt.want)
		}
	}
}

func FuzzRecipeMissingDependency(f *testing.F) {
	f.Add([]byte("The following packages have unmet dependencies:\n b : Depends: x (>= 1) but\n"))
	f.Fuzz(func(t *testing.T, log []byte) {
		if dep, ok := RecipeMissingDependency(log); ok && strings.Contains(dep, "\n") {
			t.Errorf("dependency %q spans lines", dep)
		}
	})
}

func TestPythonListRepr(t *testing.T) {
	got := PythonListRepr([]string{"git-build-recipe", "it's", `a"b'`, "x\ny", `\`})
	want := `['git-build-recipe', "it's", 'a"b\'', 'x\ny', '\\']`
	if got != want {
		t.Errorf("PythonListRepr = %s, want %s", got, want)
	}
}

// fakeGitBuildRecipe installs a git-build-recipe that makes a tree for
// package pkg and exits rc, recording its argv in dir/argv.
func fakeGitBuildRecipe(t *testing.T, rc string) string {
	dir := t.TempDir()
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"" + dir + "/argv\"\nfor last; do :; done\n" +
		"mkdir -p \"$last/pkg/debian\"\necho 'pkg (1.0+git1~ubuntu12.1) bookworm; urgency=low' > \"$last/pkg/debian/changelog\"\n" +
		"echo 'git-commit:abc' > \"$last/manifest\"\nexit " + rc + "\n"
	p := filepath.Join(dir, "git-build-recipe")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := GitBuildRecipeCommand
	GitBuildRecipeCommand = p
	t.Cleanup(func() { GitBuildRecipeCommand = old })
	return dir
}

const fakeChanges = "Format: 1.8\nSource: pkg\nVersion: 1.0+git1~ubuntu12.1\nArchitecture: source\n" +
	"Files:\n 0123456789abcdef0123456789abcdef 10 misc optional pkg_1.0+git1~ubuntu12.1.dsc\n" +
	" 0123456789abcdef0123456789abcdef 20 misc optional pkg_1.0+git1~ubuntu12.1.tar.xz\n"

func runRecipe(t *testing.T, args map[string]any, onRun func(ft *fakeTarget, c recordedCommand) (fakeRun, bool)) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	installSeams(t)
	m, err := NewRecipeManager(Request{BuildID: "RECIPEBRANCHBUILD-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.onRun = func(c recordedCommand) fakeRun {
		if onRun != nil {
			if r, ok := onRun(ft, c); ok {
				return r
			}
		}
		switch c.Args[0] {
		case "lsb_release":
			return fakeRun{stdout: "12\n"}
		case "/usr/bin/dpkg-buildpackage":
			ft.put("/build/work/tree/pkg_1.0+git1~ubuntu12.1_source.changes", fakeChanges, 0o644)
			ft.put("/build/work/tree/pkg_1.0+git1~ubuntu12.1.dsc", "DSC", 0o644)
			ft.put("/build/work/tree/pkg_1.0+git1~ubuntu12.1.tar.xz", "TAR", 0o644)
			ft.put("/build/work/tree/unrelated.txt", "no", 0o644)
		}
		return fakeRun{}
	}
	fe := newFakeEnv(ft)
	fe.Config.StateDir = t.TempDir()
	return ft, fe, m.Run(context.Background(), &fe.Env)
}

func TestRecipeHappyPath(t *testing.T) {
	dir := fakeGitBuildRecipe(t, "0")
	ft, fe, res := runRecipe(t, recipeArgs(nil), nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s; log:\n%s", res.Status, fe.logText())
	}
	if len(fe.backends) != 1 || fe.backends[0] != "chroot" {
		t.Errorf("backends %v", fe.backends)
	}
	got := strings.Join(fe.waitOrder, " ")
	if got != "manifest pkg_1.0+git1~ubuntu12.1.dsc pkg_1.0+git1~ubuntu12.1.tar.xz pkg_1.0+git1~ubuntu12.1_source.changes" {
		t.Errorf("results %s", got)
	}
	argv, _ := os.ReadFile(filepath.Join(dir, "argv"))
	a := strings.Split(strings.TrimSpace(string(argv)), "\n")
	if len(a) != 11 || strings.Join(a[:2], " ") != "--safe --no-build" || a[2] != "--manifest" || !strings.HasSuffix(a[3], "/tree/manifest") ||
		strings.Join(a[4:9], " ") != "--distribution bookworm --allow-fallback-to-native --append-version ~ubuntu12.1" ||
		!strings.HasSuffix(a[9], "/recipe") || !strings.HasSuffix(a[10], "/tree") {
		t.Errorf("git-build-recipe argv %q", a)
	}
	cb := ft.files["/CurrentlyBuilding"]
	if cb == nil || string(cb.data) != "Package: pkg\nSuite: bookworm-updates\nComponent: universe\nPurpose: PPA\nBuild-Debug-Symbols: no\n" {
		t.Errorf("/CurrentlyBuilding %v", cb)
	}
	if c, ok := ft.command("/usr/bin/dpkg-buildpackage"); !ok || c.Dir != "/build/work/tree/pkg" {
		t.Errorf("dpkg-buildpackage in %q (%v)", c.Dir, ok)
	}
	if _, ok := ft.command("apt-get", "build-dep", "-y", "/build/work/tree/pkg"); !ok {
		t.Errorf("no build-dep: %v", ft.argvs())
	}
}

func TestRecipeStatuses(t *testing.T) {
	depwait := "The following packages have unmet dependencies:\n builddeps:/build/work/tree/pkg : Depends: libx-dev (>= 2) but it is not installable\n"
	tests := []struct {
		name    string
		rc      string
		args    map[string]any
		fail    func(c recordedCommand) (fakeRun, bool)
		want    BuildStatus
		deps    string
		wantLog string
	}{
		{name: "bzr recipe: PACKAGEFAIL, no target", args: map[string]any{"git": false}, want: BuildPackageFail,
			wantLog: "This builder cannot build bzr-builder recipes"},
		{name: "lsb-release install fails (200)", want: BuildPackageFail, wantLog: "apt-get install -y lsb-release failed",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{code: 100}, c.Args[0] == "apt-get" && c.Args[1] == "install"
			}},
		{name: "git-build-recipe fails (201)", rc: "3", want: BuildPackageFail, wantLog: "git-build-recipe failed"},
		{name: "build-dep with a missing dependency (202): DEPFAIL", want: BuildDepFail, deps: "libx-dev (>= 2)", wantLog: "Dependencies: libx-dev (>= 2)",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{code: 100, stdout: depwait}, c.Args[0] == "apt-get" && c.Args[1] == "build-dep"
			}},
		{name: "build-dep fails otherwise (202): PACKAGEFAIL", want: BuildPackageFail, wantLog: "Returning build status: Build failed",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{code: 100, stdout: "E: broken\n"}, c.Args[0] == "apt-get" && c.Args[1] == "build-dep"
			}},
		{name: "dpkg-buildpackage fails (203)", want: BuildPackageFail, wantLog: "dpkg-buildpackage -i -I.bzr -I.git -us -uc -S -sa failed",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{code: 2}, c.Args[0] == "/usr/bin/dpkg-buildpackage"
			}},
		{name: "lsb_release cannot run: BUILDERFAIL", want: BuildBuilderFail, wantLog: "lsb_release -r -s failed",
			fail: func(c recordedCommand) (fakeRun, bool) { return fakeRun{err: errFake}, c.Args[0] == "lsb_release" }},
		{name: "no changes: PACKAGEFAIL", want: BuildPackageFail, wantLog: "no _source.changes",
			fail: func(c recordedCommand) (fakeRun, bool) { return fakeRun{}, c.Args[0] == "/usr/bin/dpkg-buildpackage" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := tt.rc
			if rc == "" {
				rc = "0"
			}
			fakeGitBuildRecipe(t, rc)
			var fail func(*fakeTarget, recordedCommand) (fakeRun, bool)
			if tt.fail != nil {
				fail = func(_ *fakeTarget, c recordedCommand) (fakeRun, bool) { return tt.fail(c) }
			}
			_, fe, res := runRecipe(t, recipeArgs(tt.args), fail)
			if res.Status != tt.want || res.Dependencies != tt.deps {
				t.Fatalf("result %+v, want %s %q; log:\n%s", res, tt.want, tt.deps, fe.logText())
			}
			if !strings.Contains(fe.logText(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, fe.logText())
			}
		})
	}
}

// TestHostToolRunsAsBuildUser: host tools run as the configured build
// user in a directory of the build home it owns.
func TestHostToolRunsAsBuildUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	u, err := user.Lookup("buildd")
	if err != nil {
		t.Skip("no build user buildd (tests/setup.sh)")
	}
	fe := newFakeEnv(newFakeTarget())
	fe.Config.SbuildUser = "buildd"
	fe.Config.BuildHome = t.TempDir()
	os.Chmod(fe.Config.BuildHome, 0o755)
	// Up to, not including, the system's temporary directory: its mode
	// (1777) is not this test's to change.
	for d := filepath.Dir(fe.Config.BuildHome); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	b := NewContainerBuild(&fe.Env, Request{BuildID: "RECIPEBRANCHBUILD-9"}, CommonArgs{}, nil, nil)
	tool, err := b.NewHostTool()
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Remove()
	if !strings.HasPrefix(filepath.Base(tool.Dir), "build-RECIPEBRANCHBUILD-9.host-") {
		t.Errorf("tool dir %s", tool.Dir)
	}
	var out strings.Builder
	if err := runHost(context.Background(), &out, []string{"PATH=/usr/bin:/bin"}, tool.Dir, tool.Cred, "sh", "-c", "id -u; touch x"); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if strings.TrimSpace(out.String()) != u.Uid {
		t.Errorf("ran as uid %q, want %s", out.String(), u.Uid)
	}
}

// TestRecipeAbortKillsGitBuildRecipe: abort during git-build-recipe on
// the host kills it (and its process group) and the build ends ABORTED.
func TestRecipeAbortKillsGitBuildRecipe(t *testing.T) {
	installSeams(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "git-build-recipe")
	os.WriteFile(p, []byte("#!/bin/sh\nsleep 600 &\nwait\n"), 0o755)
	old := GitBuildRecipeCommand
	GitBuildRecipeCommand = p
	t.Cleanup(func() { GitBuildRecipeCommand = old })
	m, err := NewRecipeManager(Request{BuildID: "RECIPEBRANCHBUILD-2", Args: recipeArgs(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.onRun = func(c recordedCommand) fakeRun {
		if c.Args[0] == "lsb_release" {
			return fakeRun{stdout: "12\n"}
		}
		return fakeRun{}
	}
	fe := newFakeEnv(ft)
	fe.Config.StateDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { done <- m.Run(ctx, &fe.Env) }()
	for !strings.Contains(fe.logText(), "RUN ['"+p) {
		runtime.Gosched()
	}
	cancel()
	select {
	case res := <-done:
		if res.Status != BuildAborted {
			t.Errorf("status %s, want ABORTED", res.Status)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after abort")
	}
}

// TestRecipeMasksURLCredentials: a recipe's branch URL password never
// reaches the build log.
func TestRecipeMasksURLCredentials(t *testing.T) {
	fakeGitBuildRecipe(t, "0")
	args := recipeArgs(map[string]any{"recipe_text": "# git-build-recipe format 0.4 deb-version 1\nhttps://u:t0ken@git.example/p.git main\n"})
	_, fe, _ := runRecipe(t, args, nil)
	found := false
	for _, s := range fe.secrets {
		found = found || s == "t0ken"
	}
	if !found {
		t.Errorf("secrets %q lack the recipe URL's password", fe.secrets)
	}
}

// FuzzParseRecipeArgs: any strings give an answer; what goes into
// /CurrentlyBuilding is one line of one word when accepted.
func FuzzParseRecipeArgs(f *testing.F) {
	f.Add("bookworm-updates", "universe", "PPA", "Jöe", "joe@example.com")
	f.Add("a\nb", "", "-x", "n\r", "e")
	f.Fuzz(func(t *testing.T, suite, component, purpose, name, email string) {
		a, err := ParseRecipeArgs(recipeArgs(map[string]any{"suite": suite, "ogrecomponent": component,
			"archive_purpose": purpose, "author_name": name, "author_email": email}))
		if err != nil {
			return
		}
		for _, v := range []string{a.Suite, a.Component, a.ArchivePurpose} {
			if !recipeToken().MatchString(v) {
				t.Fatalf("accepted %q", v)
			}
		}
		if strings.ContainsAny(a.AuthorName+a.AuthorEmail, "\n\r") {
			t.Fatalf("accepted a multi-line author %q <%q>", a.AuthorName, a.AuthorEmail)
		}
	})
}

// TestRecipeNoGitBuildRecipe: a host without git-build-recipe is the
// builder's failure, not the recipe's.
func TestRecipeNoGitBuildRecipe(t *testing.T) {
	old := GitBuildRecipeCommand
	GitBuildRecipeCommand = "/nonexistent/git-build-recipe"
	t.Cleanup(func() { GitBuildRecipeCommand = old })
	_, fe, res := runRecipe(t, recipeArgs(nil), nil)
	if res.Status != BuildBuilderFail || !strings.Contains(fe.logText(), "cannot run git-build-recipe on this builder") {
		t.Errorf("status %s; log:\n%s", res.Status, fe.logText())
	}
}

package builders

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func ttArgs(extra map[string]any) map[string]any {
	a := map[string]any{"series": "bookworm", "arch_tag": "amd64", "archive_private": false}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

func TestParseTranslationTemplatesArgs(t *testing.T) {
	tests := []struct {
		name    string
		extra   map[string]any
		wantErr string // the argument named, "" = valid
		branch  string
	}{
		{"branch_url as buildd-manager sends it", map[string]any{"branch_url": "https://bzr.example/~u/p/trunk"}, "", "https://bzr.example/~u/p/trunk"},
		{"branch wins over branch_url", map[string]any{"branch": "lp:p", "branch_url": "https://x/"}, "", "lp:p"},
		{"git", map[string]any{"git_repository": "https://git.example/p.git", "git_path": "main"}, "", ""},
		{"nothing", nil, "branch", ""},
		{"both", map[string]any{"branch": "lp:p", "git_repository": "https://git.example/p.git"}, "git_repository", ""},
		{"git_path alone", map[string]any{"branch": "lp:p", "git_path": "main"}, "git_path", ""},
		{"option-like branch", map[string]any{"branch": "--help"}, "branch", ""},
		{"option-like ref", map[string]any{"git_repository": "https://g/p.git", "git_path": "-x"}, "git_path", ""},
		{"branch not a string", map[string]any{"branch": int64(3)}, "branch", ""},
		{"no series", map[string]any{"branch": "lp:p", "series": nil}, "series", ""},
		{"bzr:// branch", map[string]any{"branch_url": "bzr://127.0.0.1:4155/trunk"}, "", "bzr://127.0.0.1:4155/trunk"},
		{"file:// branch", map[string]any{"branch_url": "file:///etc"}, "branch", ""},
		{"local path branch", map[string]any{"branch": "/root/secret"}, "branch", ""},
		{"sftp branch", map[string]any{"branch": "sftp://host/x"}, "branch", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseTranslationTemplatesArgs(ttArgs(tt.extra))
			var ae *ArgError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (!errors.As(err, &ae) || ae.Arg != tt.wantErr):
				t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
			case tt.wantErr == "" && a.Branch != tt.branch:
				t.Fatalf("branch %q, want %q", a.Branch, tt.branch)
			}
		})
	}
}

// runTT runs a git translation-templates build on a fake target whose
// find reports the POTFILES.in of the seams' tree.
func runTT(t *testing.T, s *seams, args map[string]any, onRun func(ft *fakeTarget, c recordedCommand) (fakeRun, bool)) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	m, err := NewTranslationTemplatesManager(Request{BuildID: "TRANSLATIONTEMPLATESBUILD-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
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
		case "find":
			var out strings.Builder
			for name := range s.files {
				if strings.HasSuffix(name, "POTFILES.in") {
					out.WriteString(name + "\x00")
				}
			}
			return fakeRun{stdout: out.String()}
		case "tar":
			ft.put("/build/translation-templates.tar.gz", "TARBALL", 0o644)
		}
		return fakeRun{}
	}
	fe := newFakeEnv(ft)
	return ft, fe, m.Run(context.Background(), &fe.Env)
}

func TestTranslationTemplatesHappyPath(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{
		"configure.ac":   "GETTEXT_PACKAGE=hello-domain\n",
		"po/POTFILES.in": "src/hello.c\n",
		"src/hello.c":    "_(\"x\")\n",
	}
	ft, fe, res := runTT(t, s, ttArgs(map[string]any{"git_repository": "https://git.example/p.git", "git_path": "main",
		"archives": []any{"deb http://127.0.0.1/ bookworm main"}}), nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s; log:\n%s", res.Status, fe.logText())
	}
	if len(fe.backends) != 1 || fe.backends[0] != "chroot" {
		t.Errorf("backends %v, want [chroot]", fe.backends)
	}
	if string(fe.waiting["translation-templates.tar.gz"]) != "TARBALL" || len(fe.waiting) != 1 {
		t.Errorf("results %v", fe.waitOrder)
	}
	want := []string{
		"apt-get -y install intltool",
		"find /build/source-tree -mindepth 1 ! -type d -name POTFILES.in -printf %P\\0",
		"rm -f /build/source-tree/po/missing /build/source-tree/po/notexist",
		"/usr/bin/intltool-update -m",
		"/usr/bin/intltool-update -p -g hello-domain",
		"tar -C /build/source-tree -czf /build/translation-templates.tar.gz -- po/hello-domain.pot",
	}
	got := strings.Join(ft.argvs(), "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("no command %q in:\n%s", w, got)
		}
	}
	if c, _ := ft.command("/usr/bin/intltool-update", "-p"); c.Dir != "/build/source-tree/po" {
		t.Errorf("intltool-update -p ran in %q", c.Dir)
	}
	if _, ok := fe.status["revision_id"]; ok {
		t.Errorf("revision_id reported; the reference does not for translation templates")
	}
	for _, line := range []string{"Installing dependencies...", "Fetching https://git.example/p.git main...",
		"Generating templates...", "Generated 1 templates.", "Adding template /build/source-tree/po/hello-domain.pot...", "Tarball generated."} {
		if !strings.Contains(fe.logText(), line+"\n") {
			t.Errorf("log lacks %q", line)
		}
	}
}

func TestTranslationTemplatesResultName(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"README": "x"}
	m, _ := NewTranslationTemplatesManager(Request{BuildID: "1", Args: ttArgs(map[string]any{"git_repository": "https://g/p.git"})})
	fe := newFakeEnv(newFakeTarget())
	fe.Config.TranslationTemplatesResult = "other.tar.gz"
	if got := m.(*TranslationTemplatesManager).resultName(&fe.Env); got != "other.tar.gz" {
		t.Errorf("resultName = %q", got)
	}
}

func TestTranslationTemplatesStatuses(t *testing.T) {
	tests := []struct {
		name        string
		checkoutErr error
		fail        func(c recordedCommand) (fakeRun, bool)
		files       map[string]string
		want        BuildStatus
		wantLog     string
		wantResult  bool
	}{
		{name: "install fails: CHROOTFAIL (200)", want: BuildChrootFail, wantLog: "Install failed: apt-get -y install intltool failed with exit status 100",
			fail: func(c recordedCommand) (fakeRun, bool) { return fakeRun{code: 100}, c.Args[0] == "apt-get" }},
		{name: "checkout fails: PACKAGEFAIL (201)", checkoutErr: errors.New("no such ref"), want: BuildPackageFail, wantLog: "Build failed: cannot check out"},
		{name: "find fails: PACKAGEFAIL", want: BuildPackageFail, wantLog: "Build failed: find failed",
			fail: func(c recordedCommand) (fakeRun, bool) { return fakeRun{code: 1}, c.Args[0] == "find" }},
		{name: "tar fails: PACKAGEFAIL", want: BuildPackageFail, wantLog: "Build failed: tar -C",
			fail: func(c recordedCommand) (fakeRun, bool) { return fakeRun{code: 2}, c.Args[0] == "tar" }},
		{name: "intltool-update cannot run: BUILDERFAIL", want: BuildBuilderFail, wantLog: "cannot run intltool-update",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{err: errFake}, c.Args[0] == "/usr/bin/intltool-update"
			}},
		{name: "stale POTFILES.in (notexist) is skipped: OK, no tarball", want: BuildOK, wantLog: "Generated 0 templates.",
			fail: func(c recordedCommand) (fakeRun, bool) { return fakeRun{}, false }, files: map[string]string{"po/POTFILES.in": "x", "po/notexist": "x"}},
		{name: "intltool-update -m fails: skipped, OK", want: BuildOK, wantLog: "Generated 0 templates.",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{code: 1}, c.Args[0] == "/usr/bin/intltool-update" && c.Args[1] == "-m"
			}},
		{name: "intltool-update -p fails: no template, OK", want: BuildOK, wantLog: "Generated 0 templates.",
			fail: func(c recordedCommand) (fakeRun, bool) {
				return fakeRun{code: 1}, c.Args[0] == "/usr/bin/intltool-update" && c.Args[1] == "-p"
			}},
		{name: "no domain: messages.pot", want: BuildOK, wantLog: "Adding template /build/source-tree/po/messages.pot...", wantResult: true,
			files: map[string]string{"po/POTFILES.in": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := installSeams(t)
			s.files = map[string]string{"configure.ac": "GETTEXT_PACKAGE=d\n", "po/POTFILES.in": "src/a.c\n"}
			if tt.files != nil {
				s.files = tt.files
			}
			s.checkoutErr = tt.checkoutErr
			var fail func(*fakeTarget, recordedCommand) (fakeRun, bool)
			if tt.fail != nil {
				fail = func(_ *fakeTarget, c recordedCommand) (fakeRun, bool) { return tt.fail(c) }
			}
			ft, fe, res := runTT(t, s, ttArgs(map[string]any{"git_repository": "https://g/p.git"}), fail)
			if res.Status != tt.want {
				t.Fatalf("status %s, want %s; log:\n%s", res.Status, tt.want, fe.logText())
			}
			if !strings.Contains(fe.logText(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, fe.logText())
			}
			if _, ok := fe.waiting["translation-templates.tar.gz"]; ok != tt.wantResult {
				t.Errorf("result gathered: %v, want %v", ok, tt.wantResult)
			}
			if !strings.Contains(strings.Join(ft.calls, " "), "stop remove") {
				t.Errorf("target not torn down: %v", ft.calls)
			}
		})
	}
}

// FuzzParseTranslationTemplatesArgs: any strings give an answer; an
// accepted branch is a network location and nothing starts with '-'.
func FuzzParseTranslationTemplatesArgs(f *testing.F) {
	f.Add("https://bzr.example/trunk", "", "")
	f.Add("", "https://git.example/p.git", "refs/tags/1.0")
	f.Add("lp:p", "x", "-y")
	f.Fuzz(func(t *testing.T, branch, repo, ref string) {
		extra := map[string]any{}
		for k, v := range map[string]string{"branch_url": branch, "git_repository": repo, "git_path": ref} {
			if v != "" {
				extra[k] = v
			}
		}
		a, err := ParseTranslationTemplatesArgs(ttArgs(extra))
		if err != nil {
			return
		}
		if (a.Branch == "") == (a.GitRepository == "") {
			t.Fatalf("accepted %+v: not exactly one source", a)
		}
		if a.Branch != "" && !bzrBranchURL(a.Branch) || strings.HasPrefix(a.GitPath, "-") || strings.HasPrefix(a.GitRepository, "-") {
			t.Fatalf("accepted %+v", a)
		}
	})
}

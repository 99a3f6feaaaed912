package tests

// End-to-end tests of sourcepackagerecipe builds: the real buildd-agent
// binary over XML-RPC, the real git-build-recipe on the host against a
// real git server on loopback, the source package built by the real
// dpkg-buildpackage in the chroot backend, build-dependencies installed
// from a signed local apt archive (the "tools" set of tests/aptarchive).

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/gitserver"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

type recipeFixture struct {
	bp  *bpFixture
	git *gitserver.Server
}

func newRecipeFixture(t *testing.T) *recipeFixture {
	t.Helper()
	testenv.RequireRoot(t)
	for _, c := range []string{"git-build-recipe", "dpkg-source"} {
		testenv.RequireCommand(t, c)
	}
	f := &recipeFixture{bp: &bpFixture{srcDir: t.TempDir()}}
	f.bp.archive = aptarchive.Build(t, aptarchive.Options{Set: "tools"})
	f.bp.repoURL = f.bp.archive.Serve(t, "127.0.0.1:0")
	f.bp.chroot = testenv.ChrootTarball(t)
	f.bp.chSum = fileSHA1(t, f.bp.chroot)
	f.bp.files = newChrootServer(t, f.bp.chroot)
	f.bp.agent = startBPAgent(t)
	f.bp.ensure(t, f.bp.chSum, f.bp.files.URL+"/chroot.tar.gz")
	f.git = gitserver.Start(t)
	return f
}

// packaging writes a native Debian package called name into the repo.
func recipePackaging(t *testing.T, repo *gitserver.Repo, name, buildDepends string) {
	t.Helper()
	bd := "debhelper-compat (= 13)"
	if buildDepends != "" {
		bd += ", " + buildDepends
	}
	repo.WriteFile(t, "debian/changelog", name+" (1.0) unstable; urgency=medium\n\n  * Initial release.\n\n"+
		" -- Test Author <author@example.com>  Tue, 01 Dec 2026 00:00:00 +0000\n")
	repo.WriteFile(t, "debian/control", "Source: "+name+"\nSection: misc\nPriority: optional\nMaintainer: Test Author <author@example.com>\n"+
		"Build-Depends: "+bd+"\nStandards-Version: 4.6.2\n\nPackage: "+name+"\nArchitecture: all\nDescription: recipe test\n recipe test package\n")
	repo.WriteFileMode(t, "debian/rules", "#!/usr/bin/make -f\n%:\n\tdh $@\n", 0o755)
	repo.WriteFile(t, "debian/source/format", "3.0 (native)\n")
	repo.WriteFile(t, "debian/copyright", "public domain\n")
	repo.WriteFile(t, "hello.txt", "hello from the recipe\n")
}

// args are what buildd-manager sends (§4.2) for a PPA recipe build.
func (f *recipeFixture) args(recipe string, git bool) map[string]any {
	a := map[string]any{
		"arch_tag":        "amd64",
		"archive_private": false,
		"build_url":       "https://launchpad.test/~owner/+archive/ubuntu/ppa/+recipebuild/1",
		"fast_cleanup":    false,
		"series":          "bookworm",
		"image_type":      "chroot",
		"suite":           "bookworm",
		"author_name":     "Jöe Üser",
		"author_email":    "requester@example.com",
		"recipe_text":     recipe,
		"archive_purpose": "PPA",
		"ogrecomponent":   "universe",
		"archives":        []any{f.bp.archive.SourcesLine(f.bp.repoURL)},
		"trusted_keys":    []any{f.bp.archive.TrustedKey()},
	}
	if git {
		a["git"] = true
	}
	return a
}

func (f *recipeFixture) build(t *testing.T, id string, args map[string]any) (map[string]any, string) {
	t.Helper()
	a := f.bp.agent
	r := a.call(t, "build", id, "sourcepackagerecipe", f.bp.chSum, map[string]any{}, args).([]any)
	if r[0] != "BuilderStatus.BUILDING" {
		t.Fatalf("build(): %v", r)
	}
	st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
	log := string(a.fetch(t, "buildlog"))
	t.Cleanup(func() { a.callErr("clean") })
	if st["build_id"] != id {
		t.Fatalf("status %v", st)
	}
	return st, log
}

func TestRecipeE2E(t *testing.T) {
	f := newRecipeFixture(t)

	t.Run("git recipe gives a source package", func(t *testing.T) {
		repo := f.git.NewRepo(t, "recipe-hello")
		recipePackaging(t, repo, "feas-recipe", "")
		sha := repo.Commit(t, "packaging")
		recipe := "# git-build-recipe format 0.4 deb-version {debupstream}+git{revtime}\n" + repo.URL() + " main\n"
		st, log := f.build(t, "RECIPEBRANCHBUILD-1", f.args(recipe, true))
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
		fm, _ := st["filemap"].(map[string]any)
		out := t.TempDir()
		var dsc, changes string
		for name, sum := range fm {
			if err := os.WriteFile(filepath.Join(out, name), f.bp.agent.fetch(t, sum.(string)), 0o644); err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasSuffix(name, ".dsc"):
				dsc = name
			case strings.HasSuffix(name, "_source.changes"):
				changes = name
			}
		}
		if dsc == "" || changes == "" || fm["manifest"] == nil {
			t.Fatalf("filemap %v lacks the .dsc, the _source.changes or the manifest", fm)
		}
		version := regexp.MustCompile(`^feas-recipe_(1\.0\+git[0-9]{12}~ubuntu12\.1)\.dsc$`).FindStringSubmatch(dsc)
		if version == nil {
			t.Fatalf(".dsc %q does not carry the recipe's version 1.0+git<revtime>~ubuntu12.1", dsc)
		}
		cmd := exec.Command("dpkg-source", "-x", dsc, "unpacked")
		cmd.Dir = out
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg-source -x: %v\n%s", err, b)
		}
		hello, err := os.ReadFile(filepath.Join(out, "unpacked", "hello.txt"))
		if err != nil || string(hello) != "hello from the recipe\n" {
			t.Fatalf("unpacked tree: hello.txt %q, %v", hello, err)
		}
		cl, _ := os.ReadFile(filepath.Join(out, "unpacked", "debian", "changelog"))
		if !strings.HasPrefix(string(cl), "feas-recipe ("+version[1]+") bookworm;") {
			t.Errorf("changelog starts %q", strings.SplitN(string(cl), "\n", 2)[0])
		}
		manifest, _ := os.ReadFile(filepath.Join(out, "manifest"))
		if !strings.Contains(string(manifest), "git-commit:"+sha) {
			t.Errorf("manifest lacks the commit %s:\n%s", sha, manifest)
		}
		for _, want := range []string{"Building recipe:", "RUN ['git-build-recipe', '--safe', '--no-build', '--manifest'",
			"'--distribution', 'bookworm', '--allow-fallback-to-native', '--append-version', '~ubuntu12.1'",
			"RUN: apt-get build-dep -y /build/work/tree/", "RUN: /usr/bin/dpkg-buildpackage -i -I.bzr -I.git -us -uc -S -sa"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("missing build-dependency is DEPFAIL", func(t *testing.T) {
		repo := f.git.NewRepo(t, "recipe-depwait")
		recipePackaging(t, repo, "feas-recipe-depwait", "libfeas-nonexistent-dev (>= 3.0)")
		repo.Commit(t, "packaging")
		recipe := "# git-build-recipe format 0.4 deb-version {debupstream}+git{revtime}\n" + repo.URL() + " main\n"
		st, log := f.build(t, "RECIPEBRANCHBUILD-2", f.args(recipe, true))
		if st["build_status"] != "BuildStatus.DEPFAIL" || st["dependencies"] != "libfeas-nonexistent-dev (>= 3.0)" {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		repo := f.git.NewRepo(t, "recipe-bad")
		recipePackaging(t, repo, "feas-recipe-bad", "")
		repo.Commit(t, "packaging")
		empty := f.git.NewRepo(t, "recipe-empty")
		empty.WriteFile(t, "README", "no packaging\n")
		empty.Commit(t, "empty")
		for _, tt := range []struct {
			name, recipe string
			git          bool
			wantLog      string
		}{
			{"unparseable recipe", "this is not a recipe\n", true, "git-build-recipe failed"},
			{"unknown ref", "# git-build-recipe format 0.4 deb-version {debupstream}+git{revtime}\n" + repo.URL() + " no-such-branch\n", true, "git-build-recipe failed"},
			{"empty tree (no debian/)", "# git-build-recipe format 0.4 deb-version {debupstream}+git{revtime}\n" + empty.URL() + " main\n", true, "git-build-recipe failed"},
			{"bzr-builder recipe", "# bzr-builder format 0.3 deb-version {debupstream}-0~{revno}\nlp:~joe/someapp/pkg\n", false,
				"This builder cannot build bzr-builder recipes"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				st, log := f.build(t, "RECIPEBRANCHBUILD-BAD", f.args(tt.recipe, tt.git))
				if st["build_status"] != "BuildStatus.PACKAGEFAIL" || !strings.Contains(log, tt.wantLog) {
					t.Fatalf("status %v; log:\n%s", st, log)
				}
				f.bp.agent.call(t, "clean")
			})
		}
	})
}

// TestRecipeLocalBuild runs `buildd-agent build sourcepackagerecipe`: a
// git recipe, then one with a missing build-dependency (exit 1, DEPFAIL
// with the dependency in summary.json).
func TestRecipeLocalBuild(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "git-build-recipe")
	archive := aptarchive.Build(t, aptarchive.Options{Set: "tools"})
	url := archive.Serve(t, "127.0.0.1:0")
	key := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(key, archive.PublicKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	git := gitserver.Start(t)
	conf := localBuildConfig(t)
	for _, tt := range []struct {
		name, deps string
		code       int
		status     string
	}{
		{"feas-recipe-local", "", 0, "BuildStatus.OK"},
		{"feas-recipe-local-depwait", "libfeas-nonexistent-dev", 1, "BuildStatus.DEPFAIL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			repo := git.NewRepo(t, tt.name)
			recipePackaging(t, repo, tt.name, tt.deps)
			repo.Commit(t, "packaging")
			recipe := filepath.Join(t.TempDir(), "recipe")
			os.WriteFile(recipe, []byte("# git-build-recipe format 0.4 deb-version {debupstream}+git{revtime}\n"+repo.URL()+" main\n"), 0o644)
			out := filepath.Join(t.TempDir(), "out")
			code, sum, output := runLocal(t, out, "sourcepackagerecipe", "--config", conf, "--recipe", recipe,
				"--chroot", testenv.ChrootTarball(t), "--series", "bookworm",
				"--archive", archive.SourcesLine(url), "--trusted-key", key, "--output", out)
			if code != tt.code || sum["status"] != tt.status {
				t.Fatalf("exit %d, summary %v\n%s", code, sum, output)
			}
			if tt.deps != "" {
				if extra, _ := sum["extra"].(map[string]any); extra["dependencies"] != tt.deps {
					t.Errorf("summary %v, want extra.dependencies %q", sum, tt.deps)
				}
				return
			}
			dscs, _ := filepath.Glob(filepath.Join(out, tt.name+"_1.0+git*~ubuntu12.1.dsc"))
			changes, _ := filepath.Glob(filepath.Join(out, "*_source.changes"))
			if len(dscs) != 1 || len(changes) != 1 {
				t.Fatalf("results: .dsc %v, .changes %v\n%s", dscs, changes, output)
			}
			if _, err := os.Stat(filepath.Join(out, "manifest")); err != nil {
				t.Errorf("no manifest: %v", err)
			}
		})
	}
}

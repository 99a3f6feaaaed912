package tests

// End-to-end tests of translation-templates builds: the real buildd-agent
// binary over XML-RPC, the real chroot backend made from the test chroot,
// real intltool installed from a signed local apt archive (the "tools"
// set of tests/aptarchive), and trees served by a real git server and a
// real Bazaar branch (Breezy, over HTTP on loopback).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/bzrserver"
	"github.com/buildd-agent/buildd-agent/tests/gitserver"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// ttTree is an intltool tree: po/ with a POTFILES.in whose file exists
// (domain from configure.ac), and help/po/ whose POTFILES.in is stale (its
// file is missing), which the reference skips.
var ttTree = map[string]string{
	"configure.ac":        "AC_INIT([hello-tt],[1.0])\nGETTEXT_PACKAGE=hello-domain\nAC_SUBST(GETTEXT_PACKAGE)\n",
	"po/POTFILES.in":      "src/hello.c\n",
	"help/po/POTFILES.in": "help/missing.c\n",
	"src/hello.c": "#include <stdio.h>\n#include <libintl.h>\n#define _(s) gettext(s)\n" +
		"int main(void) { puts(_(\"Hello, translator\")); puts(_(\"Goodbye, translator\")); return 0; }\n",
}

type ttFixture struct {
	bp  *bpFixture
	git *gitserver.Server
	bzr *bzrserver.Server
}

func newTTFixture(t *testing.T) *ttFixture {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "brz")
	f := &ttFixture{bp: &bpFixture{srcDir: t.TempDir()}}
	f.bp.archive = aptarchive.Build(t, aptarchive.Options{Set: "tools"})
	f.bp.repoURL = f.bp.archive.Serve(t, "127.0.0.1:0")
	f.bp.chroot = testenv.ChrootTarball(t)
	f.bp.chSum = fileSHA1(t, f.bp.chroot)
	f.bp.files = newChrootServer(t, f.bp.chroot)
	f.bp.agent = startBPAgent(t)
	f.bp.ensure(t, f.bp.chSum, f.bp.files.URL+"/chroot.tar.gz")
	f.git = gitserver.Start(t)
	f.bzr = bzrserver.Start(t)
	return f
}

// args are what buildd-manager sends (§4.3: branch_url and the common
// arguments), plus the test archive: Launchpad's chroots carry their
// archive, the test chroot has none.
func (f *ttFixture) args(extra map[string]any) map[string]any {
	a := map[string]any{
		"arch_tag":        "amd64",
		"archive_private": false,
		"build_url":       "https://launchpad.test/~owner/project/+translation-templates-build/1",
		"fast_cleanup":    false,
		"series":          "bookworm",
		"image_type":      "chroot",
		"archives":        []any{f.bp.archive.SourcesLine(f.bp.repoURL)},
		"trusted_keys":    []any{f.bp.archive.TrustedKey()},
	}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

func (f *ttFixture) build(t *testing.T, id string, args map[string]any) (map[string]any, string) {
	t.Helper()
	a := f.bp.agent
	r := a.call(t, "build", id, "translation-templates", f.bp.chSum, map[string]any{}, args).([]any)
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

// tarballPots fetches the result tarball by its SHA-1 and returns its
// member names and the content of each .pot.
func (f *ttFixture) tarballPots(t *testing.T, st map[string]any) map[string]string {
	t.Helper()
	fm, _ := st["filemap"].(map[string]any)
	sum, ok := fm["translation-templates.tar.gz"].(string)
	if !ok || len(fm) != 1 {
		t.Fatalf("filemap %v, want only translation-templates.tar.gz", fm)
	}
	data := f.bp.agent.fetch(t, sum)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("result is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("result is not a tarball: %v", err)
		}
		body, _ := io.ReadAll(tr)
		out[h.Name] = string(body)
	}
	return out
}

func checkPot(t *testing.T, members map[string]string) {
	t.Helper()
	var names []string
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "po/hello-domain.pot" {
		t.Fatalf("tarball members %v, want [po/hello-domain.pot]", names)
	}
	pot := members["po/hello-domain.pot"]
	for _, want := range []string{`msgid "Hello, translator"`, `msgid "Goodbye, translator"`, "#: ../src/hello.c:4"} {
		if !strings.Contains(pot, want) {
			t.Errorf("template lacks %q:\n%s", want, pot)
		}
	}
}

func TestTranslationTemplatesE2E(t *testing.T) {
	f := newTTFixture(t)

	t.Run("git tree gives the template", func(t *testing.T) {
		repo := f.git.NewRepo(t, "tt-hello")
		for p, c := range ttTree {
			repo.WriteFile(t, p, c)
		}
		repo.Commit(t, "intltool tree")
		repo.Branch(t, "translations")
		st, log := f.build(t, "TRANSLATIONTEMPLATESBUILD-1", f.args(map[string]any{
			"git_repository": repo.URL(), "git_path": "translations"}))
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
		checkPot(t, f.tarballPots(t, st))
		for _, want := range []string{"Installing dependencies...", "RUN: apt-get -y install intltool",
			"Fetching " + repo.URL() + " translations...", "RUN: /usr/bin/intltool-update -m",
			"RUN: /usr/bin/intltool-update -p -g hello-domain", "Generated 1 templates.",
			"Adding template /build/source-tree/po/hello-domain.pot..."} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("bzr branch_url gives the template", func(t *testing.T) {
		br := f.bzr.NewBranch(t, "tt-hello")
		for p, c := range ttTree {
			br.WriteFile(t, p, c)
		}
		br.Commit(t, "one")
		revno := br.Commit(t, "two")
		before := f.bzr.Requests()
		// What buildd-manager sends today: branch_url only.
		st, log := f.build(t, "TRANSLATIONTEMPLATESBUILD-2", f.args(map[string]any{"branch_url": br.URL}))
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
		checkPot(t, f.tarballPots(t, st))
		if revno != "2" || !strings.Contains(log, "Fetched revno 2") || !strings.Contains(log, "RUN: brz branch "+br.URL) {
			t.Errorf("revno %q; log:\n%s", revno, log)
		}
		if f.bzr.Requests() == before {
			t.Errorf("the branch was not read from the bzr server")
		}
	})

	t.Run("empty tree is OK with no tarball", func(t *testing.T) {
		repo := f.git.NewRepo(t, "tt-empty")
		repo.WriteFile(t, "README", "nothing to translate\n")
		repo.Commit(t, "empty")
		st, log := f.build(t, "TRANSLATIONTEMPLATESBUILD-3", f.args(map[string]any{"git_repository": repo.URL()}))
		if st["build_status"] != "BuildStatus.OK" || !strings.Contains(log, "Generated 0 templates.") {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
		if fm, _ := st["filemap"].(map[string]any); len(fm) != 0 {
			t.Fatalf("filemap %v, want empty", fm)
		}
	})

	t.Run("unknown ref is PACKAGEFAIL", func(t *testing.T) {
		repo := f.git.NewRepo(t, "tt-noref")
		repo.WriteFile(t, "README", "x\n")
		repo.Commit(t, "x")
		st, log := f.build(t, "TRANSLATIONTEMPLATESBUILD-4", f.args(map[string]any{
			"git_repository": repo.URL(), "git_path": "no-such-branch"}))
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" || !strings.Contains(log, "Build failed: ") {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
	})
}

// newChrootServer hands out the chroot tarball, as the librarian does.
func newChrootServer(t *testing.T, chroot string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, chroot)
	}))
	t.Cleanup(s.Close)
	return s
}

// localBuildConfig is an agent configuration for `buildd-agent build …`
// on the chroot backend with its state in a temporary directory.
func localBuildConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// The chroot's mapped root must reach its build root (the testing
	// package makes its temporary directories 0700).
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	conf := filepath.Join(dir, "buildd-agent.toml")
	text := fmt.Sprintf("[builder]\narchitectures = [\"amd64\"]\nstate_dir = %q\nbackend = \"chroot\"\n", filepath.Join(dir, "state"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// runLocal runs `buildd-agent build <args>` and returns its exit code and
// the summary.json it wrote in out.
func runLocal(t *testing.T, out string, args ...string) (int, map[string]any, string) {
	t.Helper()
	cmd := exec.Command(snapE2EBinary(t), append([]string{"build"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var sum map[string]any
	data, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatalf("no summary.json (exit %d): %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatalf("summary.json: %v\n%s", err, data)
	}
	return code, sum, stdout.String() + stderr.String()
}

// TestTranslationTemplatesLocalBuild runs `buildd-agent build
// translation-templates` on a Bazaar branch.
func TestTranslationTemplatesLocalBuild(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "brz")
	archive := aptarchive.Build(t, aptarchive.Options{Set: "tools"})
	url := archive.Serve(t, "127.0.0.1:0")
	key := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(key, archive.PublicKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	br := bzrserver.Start(t).NewBranch(t, "tt-local")
	for p, c := range ttTree {
		br.WriteFile(t, p, c)
	}
	br.Commit(t, "one")
	out := filepath.Join(t.TempDir(), "out")
	code, sum, output := runLocal(t, out, "translation-templates", "--config", localBuildConfig(t),
		"--branch", br.URL, "--chroot", testenv.ChrootTarball(t), "--series", "bookworm",
		"--archive", archive.SourcesLine(url), "--trusted-key", key, "--output", out)
	if code != 0 || sum["status"] != "BuildStatus.OK" {
		t.Fatalf("exit %d, summary %v\n%s", code, sum, output)
	}
	if !strings.Contains(output, "==> [4/6] generate templates") {
		t.Errorf("no phase line in the output:\n%s", output)
	}
	data, err := os.ReadFile(filepath.Join(out, "translation-templates.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	members := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		body, _ := io.ReadAll(tr)
		members[h.Name] = string(body)
	}
	checkPot(t, members)
}

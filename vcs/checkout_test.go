package vcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/gitserver"
)

func init() {
	// Real delays make the retry tests slow; the count is what matters.
	retryDelays = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
}

// fixture is a repository with history, branches and both kinds of tags.
type fixture struct {
	srv                  *gitserver.Server
	repo                 *gitserver.Repo
	first, second, dev   string // commits
	annotatedObj         string // the annotated tag object of "2.0"
	mainTip              string
	devOnly, unreachable string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := gitserver.Start(t)
	r := srv.NewRepo(t, "app")
	f := &fixture{srv: srv, repo: r}
	r.WriteFile(t, "version", "1\n")
	r.WriteFileMode(t, "bin/run", "#!/bin/sh\necho hi\n", 0o755)
	r.Symlink(t, "link", "version")
	r.Symlink(t, "dangling", "/nonexistent/target")
	f.first = r.Commit(t, "first")
	r.Tag(t, "1.0")
	r.WriteFile(t, "version", "2\n")
	f.second = r.Commit(t, "second")
	f.annotatedObj = r.AnnotatedTag(t, "2.0", "release 2.0")
	r.Branch(t, "dev")
	r.WriteFile(t, "version", "dev\n")
	f.dev = r.Commit(t, "on dev")
	f.devOnly = f.dev
	r.Switch(t, "main")
	r.WriteFile(t, "version", "3\n")
	f.mainTip = r.Commit(t, "third")
	// A commit no branch or tag reaches.
	r.Branch(t, "tmp")
	r.WriteFile(t, "version", "lost\n")
	f.unreachable = r.Commit(t, "lost")
	r.Switch(t, "main")
	r.DeleteRef(t, "refs/heads/tmp")
	return f
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gitIn runs the git CLI in a checkout, as a build would.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return gitserver.Git(t, dir, args...)
}

func TestCheckoutRefs(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		path    string
		rev     string
		version string
		branch  string // "" = detached
		all     bool   // in every mode, not only over HTTP
	}{
		{"", f.mainTip, "3\n", "main", true},
		{"HEAD", f.mainTip, "3\n", "main", false},
		{"main", f.mainTip, "3\n", "main", false},
		{"refs/heads/dev", f.dev, "dev\n", "dev", true},
		{"dev", f.dev, "dev\n", "dev", false},
		{"1.0", f.first, "1\n", "", false},
		{"refs/tags/1.0", f.first, "1\n", "", true},
		{"refs/tags/2.0", f.second, "2\n", "", true},
		{"2.0", f.second, "2\n", "", false},
		{f.second, f.second, "2\n", "", true},
		{strings.ToUpper(f.first), f.first, "1\n", "", false},
		{f.annotatedObj, f.second, "2\n", "", false},
	}
	modes := []struct {
		name    string
		url     string
		shallow bool
		mirror  bool
	}{
		{"http", f.repo.URL(), false, false},
		{"http-shallow", f.repo.URL(), true, false},
		{"git", f.repo.GitURL(), false, false},
		{"git-shallow", f.repo.GitURL(), true, false},
		{"http-mirror", f.repo.URL(), false, true},
	}
	for _, m := range modes {
		mirrorDir := filepath.Join(t.TempDir(), "mirrors")
		for _, tc := range tests {
			if !tc.all && !strings.HasPrefix(m.name, "http") {
				continue
			}
			t.Run(m.name+"/"+tc.path, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "src")
				var log bytes.Buffer
				opts := Options{Log: &log, Shallow: m.shallow}
				if m.mirror {
					opts.MirrorDir = mirrorDir
				}
				rev, err := Checkout(context.Background(), Source{Repository: m.url, Path: tc.path}, dir, opts)
				if err != nil {
					t.Fatalf("Checkout: %v\nlog:\n%s", err, log.String())
				}
				if rev != tc.rev {
					t.Errorf("revision = %s, want %s", rev, tc.rev)
				}
				if got := readFile(t, filepath.Join(dir, "version")); got != tc.version {
					t.Errorf("version = %q, want %q", got, tc.version)
				}
				if target, err := os.Readlink(filepath.Join(dir, "link")); err != nil || target != "version" {
					t.Errorf("link -> %q, %v", target, err)
				}
				if target, err := os.Readlink(filepath.Join(dir, "dangling")); err != nil || target != "/nonexistent/target" {
					t.Errorf("dangling -> %q, %v", target, err)
				}
				if fi, err := os.Stat(filepath.Join(dir, "bin/run")); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("bin/run mode: %v %v", fi, err)
				}
				// The git CLI agrees: HEAD, branch, a clean status (so the index is right).
				if got := gitIn(t, dir, "rev-parse", "HEAD"); got != tc.rev {
					t.Errorf("git rev-parse HEAD = %s, want %s", got, tc.rev)
				}
				branch, _ := gitOutput(dir, "symbolic-ref", "-q", "--short", "HEAD")
				if branch != tc.branch {
					t.Errorf("branch = %q, want %q", branch, tc.branch)
				}
				if st := gitIn(t, dir, "status", "--porcelain"); st != "" {
					t.Errorf("git status not clean:\n%s", st)
				}
				if tc.branch != "" {
					if up := gitIn(t, dir, "rev-parse", "--abbrev-ref", tc.branch+"@{upstream}"); up != "origin/"+tc.branch {
						t.Errorf("upstream = %q", up)
					}
				}
				count := gitIn(t, dir, "rev-list", "--count", "HEAD")
				if m.shallow && count != "1" && !fullSHARE().MatchString(tc.path) {
					t.Errorf("shallow checkout has %s commits", count)
				}
				if !m.shallow && count == "1" && tc.rev != f.first {
					t.Errorf("full checkout has only one commit")
				}
				if !m.shallow {
					// A full checkout has the tags, as git clone does (git describe works).
					if got := gitIn(t, dir, "tag", "--list"); got != "1.0\n2.0" {
						t.Errorf("tags = %q", got)
					}
					gitIn(t, dir, "fsck", "--no-progress")
				}
				if !strings.Contains(log.String(), "Checked out") {
					t.Errorf("log lacks progress:\n%s", log.String())
				}
			})
		}
	}
}

func gitOutput(dir string, args ...string) (string, error) {
	return gitserver.GitOutput(dir, args...)
}

func TestCheckoutSHAShallowWhenAllowed(t *testing.T) {
	f := newFixture(t)
	f.repo.SetConfig(t, "uploadpack.allowReachableSHA1InWant", "true")
	dir := filepath.Join(t.TempDir(), "src")
	var log bytes.Buffer
	rev, err := Checkout(context.Background(), Source{Repository: f.repo.URL(), Path: f.second}, dir, Options{Shallow: true, Log: &log})
	if err != nil || rev != f.second {
		t.Fatalf("Checkout = %s, %v\n%s", rev, err, log.String())
	}
	if n := gitIn(t, dir, "rev-list", "--count", "HEAD"); n != "1" {
		t.Errorf("shallow SHA fetch has %s commits", n)
	}
	if strings.Contains(log.String(), "fetching everything") {
		t.Errorf("fell back to a full fetch:\n%s", log.String())
	}

	// Without the server's permission it falls back to a full fetch.
	f.repo.SetConfig(t, "uploadpack.allowReachableSHA1InWant", "false")
	dir2 := filepath.Join(t.TempDir(), "src")
	log.Reset()
	rev, err = Checkout(context.Background(), Source{Repository: f.repo.URL(), Path: f.second}, dir2, Options{Shallow: true, Log: &log})
	if err != nil || rev != f.second {
		t.Fatalf("Checkout = %s, %v\n%s", rev, err, log.String())
	}
	if !strings.Contains(log.String(), "fetching everything") {
		t.Errorf("no fallback logged:\n%s", log.String())
	}
}

func TestCheckoutCommitOnBranch(t *testing.T) {
	f := newFixture(t)
	for _, shallow := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "src")
		rev, err := Checkout(context.Background(), Source{Repository: f.repo.URL(), Path: "main", Commit: f.first}, dir, Options{Shallow: shallow})
		if err != nil || rev != f.first {
			t.Fatalf("Checkout = %s, %v", rev, err)
		}
		if b, _ := gitOutput(dir, "symbolic-ref", "-q", "HEAD"); b != "" {
			t.Errorf("HEAD should be detached at an older commit, is %s", b)
		}
		dir = filepath.Join(t.TempDir(), "src")
		_, err = Checkout(context.Background(), Source{Repository: f.repo.URL(), Path: "main", Commit: f.dev}, dir, Options{Shallow: shallow})
		if !errors.Is(err, ErrNotOnBranch) {
			t.Errorf("commit of dev on main: %v, want ErrNotOnBranch", err)
		}
	}
}

func TestCheckoutBadInput(t *testing.T) {
	f := newFixture(t)
	empty := f.srv.NewRepo(t, "empty")
	// A tag of a tree, not a commit.
	tree := f.repo.BareGit(t, "rev-parse", f.first+"^{tree}")
	f.repo.BareGit(t, "update-ref", "refs/tags/treetag", tree)
	tests := []struct {
		name string
		src  Source
		dir  string // "" = a fresh one
		want error
	}{
		{"no repository http", Source{Repository: f.srv.HTTPURL("nope")}, "", ErrRepositoryNotFound},
		{"no repository git", Source{Repository: f.srv.GitURL("nope")}, "", ErrRepositoryNotFound},
		{"empty repository", Source{Repository: empty.URL()}, "", ErrEmptyRepository},
		{"empty repository git", Source{Repository: empty.GitURL()}, "", ErrEmptyRepository},
		{"unknown branch", Source{Repository: f.repo.URL(), Path: "nope"}, "", ErrUnknownRef},
		{"unknown full branch", Source{Repository: f.repo.URL(), Path: "refs/heads/nope"}, "", ErrUnknownRef},
		{"unknown tag", Source{Repository: f.repo.URL(), Path: "refs/tags/9.9"}, "", ErrUnknownRef},
		{"other namespace", Source{Repository: f.repo.URL(), Path: "refs/pull/1/head"}, "", ErrUnknownRef},
		{"abbreviated sha", Source{Repository: f.repo.URL(), Path: f.first[:12]}, "", ErrUnknownRef},
		{"unknown sha", Source{Repository: f.repo.URL(), Path: strings.Repeat("ab", 20)}, "", ErrUnknownRef},
		{"unreachable sha", Source{Repository: f.repo.URL(), Path: f.unreachable}, "", ErrUnknownRef},
		{"tag of a tree", Source{Repository: f.repo.URL(), Path: "refs/tags/treetag"}, "", ErrNotCommit},
		{"sha of a tree", Source{Repository: f.repo.URL(), Path: tree}, "", ErrNotCommit},
		{"commit not on branch", Source{Repository: f.repo.URL(), Path: "main", Commit: f.dev}, "", ErrNotOnBranch},
		{"bad commit", Source{Repository: f.repo.URL(), Path: "main", Commit: "xyz"}, "", ErrUnknownRef},
		{"ssh", Source{Repository: "ssh://git@127.0.0.1/x.git"}, "", ErrUnsupportedURL},
		{"scp-like", Source{Repository: "git@127.0.0.1:x.git"}, "", ErrUnsupportedURL},
		{"file", Source{Repository: "file://" + f.repo.Bare}, "", ErrUnsupportedURL},
		{"local path", Source{Repository: f.repo.Bare}, "", ErrUnsupportedURL},
		{"ext", Source{Repository: "ext::sh -c touch% /tmp/pwned"}, "", ErrUnsupportedURL},
		{"no host", Source{Repository: "http:///x.git"}, "", ErrUnsupportedURL},
		{"garbage", Source{Repository: "http://[::1"}, "", ErrUnsupportedURL},
		{"refused", Source{Repository: "http://127.0.0.1:1/x.git"}, "", ErrNetwork},
		{"not empty dir", Source{Repository: f.repo.URL()}, "nonempty", ErrDestination},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "src")
			if tc.dir == "nonempty" {
				os.MkdirAll(dir, 0o755)
				os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
			}
			_, err := Checkout(context.Background(), tc.src, dir, Options{Timeout: time.Minute})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
			t.Logf("%v", err)
		})
	}
	// The tag is now gone: a tag of a tree has no business staying.
	f.repo.BareGit(t, "update-ref", "-d", "refs/tags/treetag")
}

func TestCheckoutCredentialsNeverShown(t *testing.T) {
	f := newFixture(t)
	const user, pass = "builder", "s3cr3t-t0ken"
	f.srv.RequireAuth(user, pass)
	// Submodule with a relative URL: it inherits the credentials.
	lib := f.srv.NewRepo(t, "lib")
	lib.WriteFile(t, "lib.txt", "lib\n")
	lib.Commit(t, "lib")
	f.srv.RequireAuth("", "")
	f.repo.AddSubmodule(t, "../lib.git", "lib")
	f.repo.AddSubmoduleAt(t, "../missing.git", "missing", f.first)
	f.repo.Commit(t, "with submodules")
	f.srv.RequireAuth(user, pass)

	good := f.srv.HTTPURLWithAuth("app", user, pass)
	var log bytes.Buffer
	dir := filepath.Join(t.TempDir(), "src")
	if _, err := Checkout(context.Background(), Source{Repository: good}, dir, Options{Log: &log}); err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "lib/lib.txt")); got != "lib\n" {
		t.Errorf("submodule through credentials: %q", got)
	}
	if !strings.Contains(log.String(), "Submodule missing (") {
		t.Errorf("broken submodule not logged:\n%s", log.String())
	}
	bad := f.srv.HTTPURLWithAuth("app", user, pass+"-wrong")
	_, err := Checkout(context.Background(), Source{Repository: bad}, filepath.Join(t.TempDir(), "src"), Options{Log: &log})
	if !errors.Is(err, ErrAuthentication) {
		t.Errorf("wrong password: %v, want ErrAuthentication", err)
	}
	for _, text := range []string{log.String(), fmt.Sprint(err)} {
		if strings.Contains(text, pass) {
			t.Errorf("credentials leaked: %s", text)
		}
	}
	t.Logf("log:\n%s\nerr: %v", log.String(), err)
}

func TestCheckoutSubmodules(t *testing.T) {
	srv := gitserver.Start(t)
	leaf := srv.NewRepo(t, "group/leaf")
	leaf.WriteFile(t, "leaf.txt", "leaf v1\n")
	leafV1 := leaf.Commit(t, "leaf v1")
	mid := srv.NewRepo(t, "group/mid")
	mid.AddSubmodule(t, "../leaf.git", "deps/leaf")
	mid.WriteFile(t, "mid.txt", "mid\n")
	mid.Commit(t, "mid")
	// Move the leaf on: the submodule stays at the recorded commit.
	leaf.WriteFile(t, "leaf.txt", "leaf v2\n")
	leaf.Commit(t, "leaf v2")
	top := srv.NewRepo(t, "group/top")
	top.AddSubmodule(t, "../mid.git", "mid")
	top.AddSubmoduleAt(t, "./../nowhere.git", "broken", leafV1)
	top.AddSubmodule(t, srv.HTTPURL("group/leaf"), "abs-leaf")
	top.Commit(t, "top")
	// An unsafe submodule: a file:// URL.
	top.SetSubmoduleURL(t, "broken", "file:///etc")
	topSHA := top.Commit(t, "break it")

	for _, mode := range []struct {
		name string
		url  string
		opts Options
	}{
		{"http", top.URL(), Options{}},
		{"git-shallow", top.GitURL(), Options{Shallow: true}},
		{"mirror", top.URL(), Options{MirrorDir: filepath.Join(t.TempDir(), "m")}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			var log bytes.Buffer
			mode.opts.Log = &log
			dir := filepath.Join(t.TempDir(), "src")
			rev, err := Checkout(context.Background(), Source{Repository: mode.url}, dir, mode.opts)
			if err != nil || rev != topSHA {
				t.Fatalf("Checkout = %s, %v\n%s", rev, err, log.String())
			}
			if got := readFile(t, filepath.Join(dir, "mid/deps/leaf/leaf.txt")); got != "leaf v1\n" {
				t.Errorf("nested submodule: %q", got)
			}
			if got := readFile(t, filepath.Join(dir, "mid/mid.txt")); got != "mid\n" {
				t.Errorf("submodule: %q", got)
			}
			if got := gitIn(t, filepath.Join(dir, "mid/deps/leaf"), "rev-parse", "HEAD"); got != leafV1 {
				t.Errorf("leaf at %s, want %s", got, leafV1)
			}
			if got := readFile(t, filepath.Join(dir, "abs-leaf/leaf.txt")); got != "leaf v2\n" {
				t.Errorf("absolute-URL submodule: %q", got)
			}
			if ents, err := os.ReadDir(filepath.Join(dir, "broken")); err != nil || len(ents) != 0 {
				t.Errorf("broken submodule dir: %v %v", ents, err)
			}
			if !strings.Contains(log.String(), "Submodule broken (file:///etc) failed") {
				t.Errorf("broken submodule not logged:\n%s", log.String())
			}
			// The superproject sees its submodules as clean.
			if st := gitIn(t, dir, "status", "--porcelain", "--ignore-submodules=none"); st != "" {
				t.Errorf("status:\n%s", st)
			}
		})
	}
}

func TestCheckoutRetriesTransientFailures(t *testing.T) {
	f := newFixture(t)
	f.srv.FailHTTP(2, http.StatusServiceUnavailable)
	var log bytes.Buffer
	rev, err := Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{Log: &log})
	if err != nil || rev != f.mainTip {
		t.Fatalf("Checkout = %s, %v\n%s", rev, err, log.String())
	}
	if n := strings.Count(log.String(), "retrying"); n != 2 {
		t.Errorf("%d retries logged:\n%s", n, log.String())
	}

	// A server that keeps failing: bounded retries, then ErrNetwork.
	f.srv.FailHTTP(100, http.StatusBadGateway)
	before := f.srv.HTTPRequests()
	_, err = Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{})
	if !errors.Is(err, ErrNetwork) {
		t.Errorf("err = %v, want ErrNetwork", err)
	}
	if n := f.srv.HTTPRequests() - before; n != int64(len(retryDelays)+1) {
		t.Errorf("%d requests, want %d", n, len(retryDelays)+1)
	}
	f.srv.SetInterceptor(nil)

	// 404 is definite: no retry.
	before = f.srv.HTTPRequests()
	_, err = Checkout(context.Background(), Source{Repository: f.srv.HTTPURL("nope")}, filepath.Join(t.TempDir(), "src"), Options{})
	if !errors.Is(err, ErrRepositoryNotFound) || f.srv.HTTPRequests()-before != 1 {
		t.Errorf("err = %v after %d requests", err, f.srv.HTTPRequests()-before)
	}
}

func TestCheckoutTimeout(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	defer close(release)
	f.srv.SetInterceptor(func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	start := time.Now()
	_, err := Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{Timeout: 500 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a stalled server held the checkout for %s", d)
	}

	// A git:// server that accepts and then says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, err = Checkout(context.Background(), Source{Repository: "git://" + ln.Addr().String() + "/x.git"}, filepath.Join(t.TempDir(), "src"), Options{Timeout: 500 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent git:// server: err = %v, want DeadlineExceeded", err)
	}

	// Cancelling the caller's context stops it too.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err = Checkout(ctx, Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}

// The tag moves between the ref listing and the fetch: the revision
// returned and the tree checked out must be the same commit.
func TestCheckoutTagMovedDuringBuild(t *testing.T) {
	f := newFixture(t)
	// The first GET of info/refs is the listing that resolves git_path;
	// the tag moves before the second (the fetch's own) is answered.
	var gets atomic.Int32
	f.srv.SetInterceptor(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") && gets.Add(1) == 2 {
			if _, err := gitserver.GitOutput(f.repo.Bare, "update-ref", "refs/tags/1.0", f.mainTip); err != nil {
				t.Error(err)
			}
		}
		return false
	})
	for _, opts := range []Options{{}, {Shallow: true}, {MirrorDir: filepath.Join(t.TempDir(), "m")}} {
		gets.Store(0)
		gitserver.Git(t, f.repo.Bare, "update-ref", "refs/tags/1.0", f.first)
		dir := filepath.Join(t.TempDir(), "src")
		rev, err := Checkout(context.Background(), Source{Repository: f.repo.URL(), Path: "refs/tags/1.0"}, dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rev != f.mainTip {
			t.Errorf("revision %s, want the moved tag's %s", rev, f.mainTip)
		}
		want := map[string]string{f.first: "1\n", f.mainTip: "3\n"}[rev]
		if got := readFile(t, filepath.Join(dir, "version")); want == "" || got != want {
			t.Errorf("revision %s but tree has version %q", rev, got)
		}
		if head := gitIn(t, dir, "rev-parse", "HEAD"); head != rev {
			t.Errorf("HEAD %s, revision %s", head, rev)
		}
	}
}

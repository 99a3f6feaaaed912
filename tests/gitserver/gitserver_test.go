package gitserver

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func clone(t *testing.T, url string, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "c")
	Git(t, "", append(append([]string{"-c", "protocol.allow=always", "clone", "-q"}, args...), url, dir)...)
	return dir
}

func TestServeBothProtocols(t *testing.T) {
	srv := Start(t)
	r := srv.NewRepo(t, "group/app")
	r.WriteFile(t, "README", "hello\n")
	r.WriteFileMode(t, "bin/run", "#!/bin/sh\n", 0o755)
	r.Symlink(t, "link", "README")
	first := r.Commit(t, "first")
	r.Tag(t, "1.0")
	tagObj := r.AnnotatedTag(t, "2.0", "release 2.0")
	if tagObj == first {
		t.Fatalf("annotated tag object %s equals its commit", tagObj)
	}
	r.Branch(t, "dev")
	r.WriteFile(t, "dev.txt", "dev\n")
	dev := r.Commit(t, "on dev")

	for _, url := range []string{r.URL(), r.GitURL()} {
		t.Run(url[:4], func(t *testing.T) {
			dir := clone(t, url, "--branch", "dev")
			if got := Git(t, dir, "rev-parse", "HEAD"); got != dev {
				t.Errorf("HEAD = %s, want %s", got, dev)
			}
			if got := Git(t, dir, "rev-parse", "1.0^{}"); got != first {
				t.Errorf("1.0 = %s, want %s", got, first)
			}
			if got := Git(t, dir, "rev-parse", "2.0"); got != tagObj {
				t.Errorf("2.0 = %s, want %s", got, tagObj)
			}
			if target, err := os.Readlink(filepath.Join(dir, "link")); err != nil || target != "README" {
				t.Errorf("link -> %q, %v", target, err)
			}
			if fi, err := os.Stat(filepath.Join(dir, "bin/run")); err != nil || fi.Mode()&0o100 == 0 {
				t.Errorf("bin/run: %v %v", fi, err)
			}
		})
	}
	if srv.HTTPRequests() == 0 || srv.GitConnections() == 0 {
		t.Errorf("requests: http %d git %d", srv.HTTPRequests(), srv.GitConnections())
	}
}

func TestSubmodulesRelative(t *testing.T) {
	srv := Start(t)
	leaf := srv.NewRepo(t, "leaf")
	leaf.WriteFile(t, "leaf.txt", "leaf\n")
	leaf.Commit(t, "leaf")
	mid := srv.NewRepo(t, "mid")
	mid.AddSubmodule(t, "../leaf.git", "leaf")
	mid.Commit(t, "mid")
	top := srv.NewRepo(t, "top")
	top.AddSubmodule(t, "../mid.git", "mid")
	top.Commit(t, "top")

	dir := clone(t, top.URL(), "--recurse-submodules")
	b, err := os.ReadFile(filepath.Join(dir, "mid/leaf/leaf.txt"))
	if err != nil || string(b) != "leaf\n" {
		t.Fatalf("nested submodule: %q %v", b, err)
	}
}

func TestCommitTreeHandMade(t *testing.T) {
	srv := Start(t)
	r := srv.NewRepo(t, "evil")
	sha := r.CommitTree(t, "main", "evil", []Entry{
		{Path: "evil", Mode: "120000", Content: "/tmp"},
		{Path: "evil/x", Mode: "100644", Content: "pwned\n"},
		{Path: "ok/file", Mode: "100755", Content: "#!/bin/sh\n"},
	})
	ls := r.BareGit(t, "ls-tree", "-r", sha)
	for _, want := range []string{"120000 blob", "\tevil/x", "100755 blob"} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls-tree lacks %q:\n%s", want, ls)
		}
	}
}

func TestFastImportAndAuth(t *testing.T) {
	srv := Start(t)
	r := srv.NewRepo(t, "big")
	var b strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, "commit refs/heads/main\ncommitter A <a@b> %d +0000\ndata 2\nc%d\n", 1700000000+i, i)
		fmt.Fprintf(&b, "M 100644 inline f%d\ndata 2\n%d\n\n", i, i)
	}
	r.FastImport(t, strings.NewReader(b.String()))
	if n := r.BareGit(t, "rev-list", "--count", "main"); n != "3" {
		t.Fatalf("commits = %s", n)
	}
	srv.RequireAuth("u", "p")
	if _, err := gitOut("", nil, "clone", "-q", r.URL(), filepath.Join(t.TempDir(), "x")); err == nil {
		t.Fatal("clone without credentials succeeded")
	}
	clone(t, srv.HTTPURLWithAuth("big", "u", "p"))

	srv.RequireAuth("", "")
	srv.FailHTTP(1, http.StatusServiceUnavailable)
	if _, err := gitOut("", nil, "ls-remote", r.URL()); err == nil {
		t.Fatal("injected failure did not fail")
	}
	if _, err := gitOut("", nil, "ls-remote", r.URL()); err != nil {
		t.Fatalf("after the injected failure: %v", err)
	}
}

package vcs

import (
	"bytes"
	"context"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/gitserver"
)

func packs(t *testing.T, gitDir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(gitDir, "objects/pack/*.pack"))
	return m
}

func TestMirrorCache(t *testing.T) {
	f := newFixture(t)
	mirrors := filepath.Join(t.TempDir(), "mirrors")
	const user, pass = "u", "first-token"
	f.srv.RequireAuth(user, pass)
	opts := func(log *bytes.Buffer) Options { return Options{MirrorDir: mirrors, Log: log} }

	var log bytes.Buffer
	dir1 := filepath.Join(t.TempDir(), "src")
	rev, err := Checkout(context.Background(), Source{Repository: f.srv.HTTPURLWithAuth("app", user, pass)}, dir1, opts(&log))
	if err != nil || rev != f.mainTip {
		t.Fatalf("cold: %s %v\n%s", rev, err, log.String())
	}
	if !strings.Contains(log.String(), "into a new mirror") {
		t.Errorf("cold log:\n%s", log.String())
	}
	mirrorDirs, _ := filepath.Glob(filepath.Join(mirrors, "*.git"))
	if len(mirrorDirs) != 1 {
		t.Fatalf("mirrors: %v", mirrorDirs)
	}
	mirror := mirrorDirs[0]
	if strings.Contains(mirror, pass) {
		t.Errorf("mirror path holds the credentials")
	}
	// The checkout's pack is the mirror's, hard-linked.
	mp, cp := packs(t, mirror), packs(t, filepath.Join(dir1, ".git"))
	if len(mp) != 1 || len(cp) != 1 {
		t.Fatalf("packs: mirror %v checkout %v", mp, cp)
	}
	a, _ := os.Stat(mp[0])
	b, _ := os.Stat(cp[0])
	if !os.SameFile(a, b) {
		t.Errorf("checkout pack is not a hard link of the mirror's")
	}

	// A new commit; a new token for the same repository: same mirror, one more (small) pack.
	f.repo.WriteFile(t, "version", "4\n")
	tip := f.repo.Commit(t, "fourth")
	f.srv.RequireAuth(user, "second-token")
	log.Reset()
	dir2 := filepath.Join(t.TempDir(), "src")
	rev, err = Checkout(context.Background(), Source{Repository: f.srv.HTTPURLWithAuth("app", user, "second-token")}, dir2, opts(&log))
	if err != nil || rev != tip {
		t.Fatalf("warm: %s %v\n%s", rev, err, log.String())
	}
	if !strings.Contains(log.String(), "Updating the mirror") {
		t.Errorf("warm log:\n%s", log.String())
	}
	if got := readFile(t, filepath.Join(dir2, "version")); got != "4\n" {
		t.Errorf("version = %q", got)
	}
	if n := len(packs(t, mirror)); n != 2 {
		t.Errorf("mirror has %d packs after an update, want 2", n)
	}
	gitIn(t, dir2, "fsck", "--no-progress")
	if got := gitIn(t, dir2, "rev-parse", "origin/dev"); got != f.dev {
		t.Errorf("origin/dev = %s", got)
	}
	// A wrong token never gets the cached objects.
	_, err = Checkout(context.Background(), Source{Repository: f.srv.HTTPURLWithAuth("app", user, "stale")}, filepath.Join(t.TempDir(), "src"), opts(&log))
	if err == nil {
		t.Error("a rejected token still checked out from the mirror")
	}
	f.srv.RequireAuth("", "")

	// A branch deleted on the server goes from the mirror too.
	f.repo.DeleteRef(t, "refs/heads/dev")
	if _, err := Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), opts(&log)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mirror, "refs/heads/dev")); err == nil {
		t.Error("deleted branch still in the mirror")
	}

	// Concurrent builds of one repository share the mirror safely.
	var wg sync.WaitGroup
	var shared testenv.SyncBuffer
	errs := make([]error, 4)
	revs := make([]string, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			revs[i], errs[i] = Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{MirrorDir: mirrors, Log: &shared})
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil || revs[i] != tip {
			t.Errorf("concurrent %d: %s %v", i, revs[i], errs[i])
		}
	}

	// Too many packs: the mirror is fetched again whole, into one pack.
	defer func(n int) { maxMirrorPacks = n }(maxMirrorPacks)
	maxMirrorPacks = 1
	log.Reset()
	if _, err := Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), opts(&log)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "refetching it whole") || len(packs(t, mirror)) != 1 {
		t.Errorf("packs not consolidated (%d):\n%s", len(packs(t, mirror)), log.String())
	}
	maxMirrorPacks = 50

	// A damaged mirror is rebuilt.
	if err := os.WriteFile(filepath.Join(mirror, "config"), []byte("[[[garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	rev, err = Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), opts(&log))
	if err != nil || rev != tip {
		t.Fatalf("after damage: %s %v\n%s", rev, err, log.String())
	}
	if !strings.Contains(log.String(), "recreating it") {
		t.Errorf("damage not logged:\n%s", log.String())
	}
}

func TestPruneMirrors(t *testing.T) {
	srv := gitserver.Start(t)
	mirrors := t.TempDir()
	var urls []string
	for _, name := range []string{"old", "mid", "new"} {
		r := srv.NewRepo(t, name)
		r.WriteFile(t, "f", strings.Repeat(name, 1000))
		r.Commit(t, name)
		if _, err := Checkout(context.Background(), Source{Repository: r.URL()}, filepath.Join(t.TempDir(), "src"), Options{MirrorDir: mirrors}); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, r.URL())
	}
	lock := func(u string) string { return filepath.Join(mirrors, mirrorKey(u)+".lock") }
	mdir := func(u string) string { return filepath.Join(mirrors, mirrorKey(u)+".git") }
	now := time.Now()
	for i, u := range urls {
		ts := now.Add(time.Duration(i-3) * time.Hour)
		os.Chtimes(lock(u), ts, ts)
	}
	// Hold "old"'s lock: it is in use and must survive.
	unlock, err := lockFile(context.Background(), lock(urls[0]), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := PruneMirrors(mirrors, dirSize(mdir(urls[0]))+dirSize(mdir(urls[2]))); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true} {
		_, err := os.Stat(mdir(urls[i]))
		if (err == nil) != want {
			t.Errorf("mirror %d exists=%v, want %v", i, err == nil, want)
		}
	}
	unlock()
	if err := PruneMirrors(mirrors, 0); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(mirrors, "*.git")); len(m) != 0 {
		t.Errorf("left after pruning to 0: %v", m)
	}
	if err := PruneMirrors(filepath.Join(mirrors, "none"), 0); err != nil {
		t.Errorf("missing dir: %v", err)
	}
}

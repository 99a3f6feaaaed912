package vcs

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/gitserver"
)

// A 10k-file repository, checked out shallow, into a mirror, and streamed
// as a tar: every file there, a clean `git status`, the tar complete.
func TestCheckoutLargeRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("10k files: not in -short")
	}
	srv := gitserver.Start(t)
	r := newBigRepo(t, srv, "big", 10000, 2, false)
	tip := r.BareGit(t, "rev-parse", "refs/heads/main")
	// Through the mirror: the path with the most moving parts (linked packs,
	// packed refs); shallow and direct fetches are covered on small trees.
	for _, opts := range []Options{{MirrorDir: filepath.Join(t.TempDir(), "m")}} {
		dir := filepath.Join(t.TempDir(), "src")
		rev, err := Checkout(context.Background(), Source{Repository: r.URL(), Path: "refs/tags/v1.0"}, dir, opts)
		if err != nil || rev != tip {
			t.Fatalf("Checkout = %s, %v", rev, err)
		}
		if st := gitIn(t, dir, "status", "--porcelain"); st != "" {
			t.Errorf("git status after checkout:\n%.500s", st)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(WriteTar(pw, dir, TarOptions{ExcludeVCS: true})) }()
		tr := tar.NewReader(pr)
		files := 0
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				files++
			}
			if strings.HasPrefix(h.Name, ".git") {
				t.Errorf("tar has %s", h.Name)
			}
		}
		if files != 10000 {
			t.Errorf("tar has %d files, want 10000", files)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "src"))
		if len(ents) != 100 {
			t.Errorf("%d directories, want 100", len(ents))
		}
	}
}

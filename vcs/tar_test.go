package vcs

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type tarEntry struct {
	Type     byte
	Mode     int64
	Link     string
	Content  string
	UID, GID int
}

func readTar(t *testing.T, r io.Reader) map[string]tarEntry {
	t.Helper()
	got := map[string]tarEntry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = tarEntry{h.Typeflag, h.Mode, h.Linkname, string(data), h.Uid, h.Gid}
	}
}

func TestWriteTar(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("host secret\n"), 0o600)
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub/deeper"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("data\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "sub/run"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sub"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sub/deeper"), 0o750))
	must(os.Symlink(secret, filepath.Join(dir, "abs-link")))
	must(os.Symlink("../../"+filepath.Base(outside)+"/secret", filepath.Join(dir, "rel-link")))
	must(os.Symlink(outside, filepath.Join(dir, "dir-link")))
	must(os.Symlink("/nonexistent", filepath.Join(dir, "dangling")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, ".git/objects"), 0o755))
	must(os.WriteFile(filepath.Join(dir, ".git/HEAD"), []byte("ref: refs/heads/main\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("*.o\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "sub/.gitmodules"), []byte(""), 0o644))

	var buf bytes.Buffer
	if err := WriteTar(&buf, dir, TarOptions{UID: 1000, GID: 1001}); err != nil {
		t.Fatal(err)
	}
	got := readTar(t, &buf)
	want := map[string]tarEntry{
		"file":            {tar.TypeReg, 0o644, "", "data\n", 1000, 1001},
		"sub/":            {tar.TypeDir, 0o755, "", "", 1000, 1001},
		"sub/run":         {tar.TypeReg, 0o755, "", "#!/bin/sh\n", 1000, 1001},
		"sub/deeper/":     {tar.TypeDir, 0o750, "", "", 1000, 1001},
		"sub/.gitmodules": {tar.TypeReg, 0o644, "", "", 1000, 1001},
		"abs-link":        {tar.TypeSymlink, 0o777, secret, "", 1000, 1001},
		"rel-link":        {tar.TypeSymlink, 0o777, "../../" + filepath.Base(outside) + "/secret", "", 1000, 1001},
		"dir-link":        {tar.TypeSymlink, 0o777, outside, "", 1000, 1001},
		"dangling":        {tar.TypeSymlink, 0o777, "/nonexistent", "", 1000, 1001},
		".git/":           {tar.TypeDir, 0o755, "", "", 1000, 1001},
		".git/objects/":   {tar.TypeDir, 0o755, "", "", 1000, 1001},
		".git/HEAD":       {tar.TypeReg, 0o644, "", "ref: refs/heads/main\n", 1000, 1001},
		".gitignore":      {tar.TypeReg, 0o644, "", "*.o\n", 1000, 1001},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tar (-want +got):\n%s", diff)
	}

	buf.Reset()
	if err := WriteTar(&buf, dir, TarOptions{ExcludeVCS: true}); err != nil {
		t.Fatal(err)
	}
	got = readTar(t, &buf)
	for name := range got {
		switch name {
		case ".git/", ".git/HEAD", ".git/objects/", ".gitignore", "sub/.gitmodules":
			t.Errorf("ExcludeVCS kept %s", name)
		}
	}
	if _, ok := got["sub/run"]; !ok {
		t.Errorf("ExcludeVCS dropped sub/run")
	}

	// dir itself a symlink: refused, never followed.
	link := filepath.Join(t.TempDir(), "link")
	must(os.Symlink(dir, link))
	if err := WriteTar(io.Discard, link, TarOptions{}); err == nil {
		t.Error("WriteTar followed a symlink given as the directory")
	}
}

// A checkout streamed through WriteTar unpacks to the same tree.
func TestWriteTarOfCheckout(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "src")
	if _, err := Checkout(t.Context(), Source{Repository: f.repo.URL()}, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTar(&buf, dir, TarOptions{ExcludeVCS: true}); err != nil {
		t.Fatal(err)
	}
	got := readTar(t, &buf)
	want := map[string]tarEntry{
		"version":  {tar.TypeReg, 0o644, "", "3\n", 0, 0},
		"bin/":     {tar.TypeDir, 0o755, "", "", 0, 0},
		"bin/run":  {tar.TypeReg, 0o755, "", "#!/bin/sh\necho hi\n", 0, 0},
		"link":     {tar.TypeSymlink, 0o777, "version", "", 0, 0},
		"dangling": {tar.TypeSymlink, 0o777, "/nonexistent/target", "", 0, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tar (-want +got):\n%s", diff)
	}
}

package builders

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// pathTree makes a checkout with directories, files and symlinks.
func pathTree(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"charm", "a/b", "deep/x/y"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	links := map[string]string{
		"up":        "..",
		"etc":       "/etc",
		"inside":    "/home/buildd/hello/charm",
		"prefix":    "/home/buildd/hello2",
		"rel":       "a/b",
		"a/b/back":  "../../charm",
		"a/b/out":   "../../../x",
		"loop1":     "loop2",
		"loop2":     "loop1",
		"tofile":    "file",
		"dangling":  "nowhere",
		"root":      "/",
		"treeroot":  "/home/buildd/hello",
		"deep/x/up": "../..",
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestResolveBuildPath(t *testing.T) {
	tree := pathTree(t)
	const base = "/home/buildd/hello"
	cases := []struct {
		rel, want, err string
	}{
		{rel: "", want: "."},
		{rel: ".", want: "."},
		{rel: "charm", want: "charm"},
		{rel: "charm/", want: "charm"},
		{rel: "./a//b/", want: "a/b"},
		{rel: "a/../charm", want: "charm"},
		{rel: "a/b/../..", want: "."},
		{rel: "rel", want: "a/b"},
		{rel: "a/b/back", want: "charm"},
		{rel: "inside", want: "charm"},
		{rel: "treeroot", want: "."},
		{rel: "deep/x/up", want: "."},
		{rel: "deep/x/up/deep/x", want: "deep/x"},
		{rel: "deep/x/up/..", err: `("..")`},
		{rel: "..", err: `leaves the source tree /home/buildd/hello ("..")`},
		{rel: "a/../..", err: `("..")`},
		{rel: "../hello/charm", err: `("..")`},
		{rel: "/home/buildd/hello/charm", err: "is an absolute path"},
		{rel: "up", err: `("..")`},
		{rel: "up/hello", err: `("..")`},
		{rel: "etc", err: "etc is a symlink to /etc"},
		{rel: "prefix", err: "prefix is a symlink to /home/buildd/hello2"},
		{rel: "root", err: "is a symlink to /"},
		{rel: "a/b/out", err: `("..")`},
		{rel: "rel/out", err: `("..")`},
		{rel: "treeroot/..", err: `("..")`},
		{rel: "loop1", err: "too many levels of symbolic links"},
		{rel: "tofile", err: "is not a directory"},
		{rel: "file", err: "is not a directory"},
		{rel: "dangling", err: "does not exist"},
		{rel: "missing/x", err: "missing is missing"},
		{rel: "a\x00", err: "NUL"},
	}
	for _, tc := range cases {
		got, err := ResolveBuildPath(tree, base, tc.rel)
		if tc.err != "" {
			if err == nil || !errors.Is(err, ErrInvalidBuildPath) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %q, %v; want an error with %q", tc.rel, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.rel, got, err, tc.want)
		}
	}
}

// FuzzResolveBuildPath: whatever the path, the answer is a clean relative
// path without "..", naming a real directory of the tree, reached without
// any symlink.
func FuzzResolveBuildPath(f *testing.F) {
	for _, s := range []string{"charm", "a/b/back", "up", "../x", "/etc", "inside/..", "treeroot/a/b/back/../rel", "loop1/x", "./deep//x/up"} {
		f.Add(s)
	}
	tree := pathTree(f)
	f.Fuzz(func(t *testing.T, rel string) {
		got, err := ResolveBuildPath(tree, "/home/buildd/hello", rel)
		if err != nil {
			if !errors.Is(err, ErrInvalidBuildPath) {
				t.Fatalf("error does not wrap ErrInvalidBuildPath: %v", err)
			}
			return
		}
		if got != path.Clean(got) || path.IsAbs(got) || got == ".." || strings.HasPrefix(got, "../") {
			t.Fatalf("%q resolved to %q", rel, got)
		}
		p := tree
		for _, c := range strings.Split(got, "/") {
			if c == "." {
				continue
			}
			p = filepath.Join(p, c)
			fi, err := os.Lstat(p)
			if err != nil || !fi.IsDir() {
				t.Fatalf("%q resolved to %q: %s is not a real directory (%v)", rel, got, p, err)
			}
		}
	})
}

package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// withWithoutOpenat2 runs fn with openat2 and with the O_NOFOLLOW walk
// (securejoin's WithWithoutOpenat2).
func withWithoutOpenat2(t *testing.T, fn func(t *testing.T)) {
	t.Run("openat2", func(t *testing.T) {
		if !hasOpenat2() {
			t.Skip("kernel without openat2")
		}
		fn(t)
	})
	t.Run("walk", func(t *testing.T) {
		old := hasOpenat2
		hasOpenat2 = func() bool { return false }
		defer func() { hasOpenat2 = old }()
		fn(t)
	})
}

// makeTree builds a fixture from one-line specs: "dir a", "file a/b",
// "symlink c TARGET".
func makeTree(t testing.TB, root string, specs ...string) {
	t.Helper()
	for _, s := range specs {
		f := strings.Fields(s)
		p := filepath.Join(root, f[1])
		var err error
		switch f[0] {
		case "dir":
			err = os.MkdirAll(p, 0o755)
		case "file":
			err = os.WriteFile(p, []byte("content of "+f[1]), 0o644)
		case "symlink":
			err = os.Symlink(f[2], p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSplitInRoot(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		bad  bool
	}{
		{"", "", false}, {"/", "", false}, {"a/b", "a b", false}, {"/a/b/", "a b", false},
		{"a//b", "", true}, {"./a", "", true}, {"a/.", "", true}, {"../a", "", true}, {"a/../b", "", true}, {"//a", "", true},
	} {
		segs, err := splitInRoot(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && strings.Join(segs, " ") != tc.want) {
			t.Errorf("splitInRoot(%q) = %q, %v", tc.in, segs, err)
		}
		if tc.bad && !errors.Is(err, ErrUnsafePath) {
			t.Errorf("splitInRoot(%q) error %v is not ErrUnsafePath", tc.in, err)
		}
	}
}

func TestResolveNoSymlinks(t *testing.T) {
	withWithoutOpenat2(t, func(t *testing.T) {
		outside := t.TempDir()
		root := t.TempDir()
		makeTree(t, outside, "file secret")
		makeTree(t, root, "dir a/b", "file a/b/f", "symlink abs "+outside, "symlink rel a/b",
			"symlink a/up ../..", "symlink dangling nowhere")
		r, err := OpenRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for _, tc := range []struct {
			path    string
			ok      bool
			symlink bool
		}{
			{"a/b/f", true, false}, {"/a/b", true, false}, {"", true, false},
			{"abs/secret", false, true}, {"abs", false, true}, {"rel/f", false, true}, {"rel", false, true},
			{"a/up/etc", false, true}, {"dangling", false, true}, {"a/../a", false, false}, {"missing", false, false},
		} {
			f, err := r.OpenPath(tc.path)
			if tc.ok != (err == nil) {
				t.Errorf("OpenPath(%q) = %v", tc.path, err)
			}
			if tc.symlink && (err == nil || !strings.Contains(err.Error(), "symbolic link")) {
				t.Errorf("OpenPath(%q) = %v, want a symlink refusal", tc.path, err)
			}
			if f != nil {
				got, _ := os.Readlink(procFdPath(int(f.Fd())))
				want := filepath.Join(root, tc.path)
				runtime.KeepAlive(f)
				if got != want {
					t.Errorf("OpenPath(%q) opened %q", tc.path, got)
				}
				f.Close()
			}
		}
		// Following resolution stays in the root too.
		for path, want := range map[string]string{"abs": root, "rel/f": "a/b/f", "a/up": root} {
			fd, err := resolveFollow(r.fd, path)
			if err != nil {
				if path == "abs" && strings.Contains(err.Error(), "no such file") {
					continue // the walk has no outside dir inside the root
				}
				t.Errorf("resolveFollow(%q) = %v", path, err)
				continue
			}
			got, _ := os.Readlink(procFdPath(fd))
			unix.Close(fd)
			if !strings.HasPrefix(got, root) {
				t.Errorf("resolveFollow(%q) left the root: %q", path, got)
			}
			_ = want
		}
		// MkdirAll refuses symlinks on the way.
		if _, err := r.MkdirAll("abs/new", 0o755, -1, -1); err == nil {
			t.Error("MkdirAll through an absolute symlink succeeded")
		}
		if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
			t.Error("MkdirAll created a directory outside the root")
		}
		d, err := r.MkdirAll("x/y/z", 0o750, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		if st, err := os.Stat(filepath.Join(root, "x/y/z")); err != nil || !st.IsDir() {
			t.Errorf("MkdirAll result: %v", err)
		}
	})
}

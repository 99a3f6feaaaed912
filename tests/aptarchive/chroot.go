package aptarchive

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// SbuildTarball returns the test chroot (testenv.ChrootTarball) repacked
// the way sbuild's unshare mode reads a chroot tarball: members relative
// to "./" instead of "chroot-autobuild/", and no device nodes (an
// unprivileged user cannot mknod them; sbuild makes /dev itself), as zstd.
// The Launchpad-format tarball itself fails in sbuild's create-session.
// It is made once (extracting needs root) and cached next to the chroot,
// keyed by the chroot's size and modification time.
func SbuildTarball(t testing.TB) string {
	t.Helper()
	src := testenv.ChrootTarball(t)
	testenv.RequireCommand(t, "zstd")
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatalf("cannot stat the test chroot: %v", err)
	}
	base := strings.TrimSuffix(filepath.Base(src), ".tar.gz")
	out := filepath.Join(filepath.Dir(src), fmt.Sprintf("%s-sbuild-%d-%d.tar.zst", base, fi.Size(), fi.ModTime().Unix()))
	if _, err := os.Stat(out); err == nil {
		return out
	}
	work, err := os.MkdirTemp(filepath.Dir(src), "sbuild-repack.")
	if err != nil {
		t.Fatalf("cannot repack the test chroot: %v", err)
	}
	defer os.RemoveAll(work)
	run(t, work, nil, "tar", "--numeric-owner", "-xzf", src)
	root := filepath.Join(work, "chroot-autobuild")
	tmp := filepath.Join(work, "out.tar.zst")
	run(t, root, nil, "tar", "--numeric-owner", "--exclude=./dev/*", "--zstd", "-cf", tmp, ".")
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	// Old repacks of an earlier chroot are dead weight.
	if old, _ := filepath.Glob(filepath.Join(filepath.Dir(src), base+"-sbuild-*.tar.zst")); len(old) > 0 {
		for _, o := range old {
			if o != out {
				_ = os.Remove(o)
			}
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatalf("cannot store the repacked chroot: %v", err)
	}
	return out
}

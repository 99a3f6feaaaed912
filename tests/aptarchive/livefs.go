package aptarchive

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

var (
	livefsOnce sync.Once
	livefsDir  string
	livefsErr  error
)

// LiveFSDebs returns the directory of cached .debs of the "livefs" set:
// the BaseDebs closure plus Debian's live-build, debootstrap and
// squashfs-tools (what a livefs build installs with the livecd-rootfs
// stand-in), downloaded once with DEBS_SET=livefs tests/apt-fixture.sh
// (root) when not cached.
func LiveFSDebs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(CacheDir(), "debs-livefs")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mmdebstrap")
	livefsOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(), "tests", "apt-fixture.sh"))
		cmd.Env = append(os.Environ(), "DEBS_SET=livefs")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		livefsDir, livefsErr = strings.TrimSpace(string(out)), err
	})
	if livefsErr != nil {
		t.Fatalf("cannot download the archive's livefs .debs (DEBS_SET=livefs tests/apt-fixture.sh): %v", livefsErr)
	}
	return livefsDir
}

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	ociChrootOnce sync.Once
	ociChrootPath string
	ociChrootErr  error
)

// OCIChrootTarball returns the cached OCI test image: the test chroot
// tarball with Debian's docker.io installed (Launchpad layout, as
// ChrootTarball), building it on first use with tests/oci-fixture.sh, so
// that no oci build or benchmark fetches docker.
func OCIChrootTarball(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	ociChrootOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "tests", "oci-fixture.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		ociChrootPath, ociChrootErr = strings.TrimSpace(string(out)), err
	})
	if ociChrootErr != nil {
		t.Fatalf("cannot build the OCI test image (tests/oci-fixture.sh): %v", ociChrootErr)
	}
	return ociChrootPath
}

// Package testenv holds what tests that need real components share: the
// root/LXD requirement rule, the cached debootstrap chroot tarball and the
// repository root.
//
// The rule: a test that needs root or LXD skips where they are absent,
// except when BUILDD_AGENT_REQUIRE_ROOT=1 (CI sets it), where it fails
// instead, so CI can never pass by skipping.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Required reports whether missing root/LXD must fail tests (CI).
func Required() bool { return os.Getenv("BUILDD_AGENT_REQUIRE_ROOT") == "1" }

// Unavailable skips t, or fails it when BUILDD_AGENT_REQUIRE_ROOT=1.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("BUILDD_AGENT_REQUIRE_ROOT=1 but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot needs uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// RequireLXD needs root and a running LXD daemon (tests/lxd-setup.sh).
func RequireLXD(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	for _, s := range []string{"/var/lib/lxd/unix.socket", "/var/snap/lxd/common/lxd/unix.socket"} {
		if _, err := os.Stat(s); err == nil {
			return
		}
	}
	if s := os.Getenv("LXD_SOCKET"); s != "" {
		if _, err := os.Stat(s); err == nil {
			return
		}
	}
	Unavailable(t, "needs a running LXD daemon (run tests/lxd-setup.sh)")
}

// RequireCommand needs a program on PATH (e.g. squid, git, setcap).
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "needs %s on PATH (run tests/setup.sh)", name)
	}
	return p
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	chrootOnce sync.Once
	chrootPath string
	chrootErr  error
)

// ChrootTarball returns the cached debootstrap chroot tarball (Launchpad
// layout: chroot-autobuild/ prefix, gzip, with security.capability xattrs),
// building it on first use with tests/chroot-fixture.sh.
func ChrootTarball(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	chrootOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "tests", "chroot-fixture.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		chrootPath, chrootErr = strings.TrimSpace(string(out)), err
	})
	if chrootErr != nil {
		t.Fatalf("cannot build the test chroot tarball: %v", chrootErr)
	}
	return chrootPath
}

// SyncBuffer is a bytes.Buffer that goroutines may share: the sink for a
// build log or a child process's output while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

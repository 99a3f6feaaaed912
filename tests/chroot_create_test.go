package tests

// `buildd-agent chroot create` against a signed apt archive on loopback
// (the cached buildd-variant closure, tests/aptarchive): a Launchpad-format
// tarball that the LXD and chroot backends take, made by mmdebstrap, and
// the second run served from the cache without touching the archive.

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func TestChrootCreate(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mmdebstrap")
	// Every .deb of a buildd bootstrap, essential ones included
	// (tests/bootstrap-fixture.sh, cached).
	fixture := exec.Command("bash", filepath.Join(testenv.RepoRoot(), "tests", "bootstrap-fixture.sh"))
	fixture.Stderr = os.Stderr
	debsDir, err := fixture.Output()
	if err != nil {
		t.Fatalf("tests/bootstrap-fixture.sh: %v", err)
	}
	debs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(debsDir)), "*.deb"))
	archive := aptarchive.Build(t, aptarchive.Options{NoBase: true, Extra: debs})
	url := archive.Serve(t, "")
	dir := t.TempDir()
	// apt reads the keyring as _apt: not from under t.TempDir's 0700.
	var keyDir string
	keyDir, err = os.MkdirTemp("", "chroot-create-key.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(keyDir) })
	if err := os.Chmod(keyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	keyring := filepath.Join(keyDir, "archive.gpg")
	if err := os.WriteFile(keyring, archive.PublicKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := agentE2EBinary(t)
	cache := filepath.Join(dir, "cache")
	arch := strings.TrimSpace(debRun(t, "dpkg", "--print-architecture"))
	create := func(out string) string {
		t.Helper()
		cmd := exec.Command(bin, "chroot", "create", "--series", archive.Suite, "--arch", arch,
			"--variant", "buildd", "--mirror", url, "--keyring", keyring, "--cache-dir", cache, out)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("chroot create: %v\n%s", err, b)
		}
		return string(b)
	}
	first := filepath.Join(dir, "a.tar.gz")
	create(first)
	members := map[string]*tar.Header{}
	f, err := os.Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h.Name, "chroot-autobuild/") {
			t.Fatalf("member %q is not under chroot-autobuild/", h.Name)
		}
		members[h.Name] = h
	}
	// The buildd variant: apt and build-essential, as Launchpad's chroots.
	for _, want := range []string{"chroot-autobuild/", "chroot-autobuild/usr/bin/apt-get", "chroot-autobuild/usr/bin/dpkg-buildpackage",
		"chroot-autobuild/usr/bin/make", "chroot-autobuild/etc/debian_version"} {
		if _, ok := members[want]; !ok {
			var near []string
			for n := range members {
				if strings.Contains(n, filepath.Base(want)) {
					near = append(near, n)
				}
			}
			t.Errorf("tarball lacks %s (%d members; similar: %v)", want, len(members), near)
		}
	}
	if h := members["chroot-autobuild/etc/debian_version"]; h != nil && (h.Uid != 0 || h.Gid != 0) {
		t.Errorf("etc/debian_version owned by %d:%d, want root (numeric owners kept)", h.Uid, h.Gid)
	}

	before := len(archive.Requests())
	second := filepath.Join(dir, "b.tar.gz")
	if out := create(second); !strings.Contains(out, "using the cached") {
		t.Errorf("second run did not use the cache:\n%s", out)
	}
	if n := len(archive.Requests()); n != before {
		t.Errorf("the cached run fetched %d files from the archive", n-before)
	}
	a, b := mustRead(t, first), mustRead(t, second)
	if string(a) != string(b) {
		t.Errorf("the cached copy differs")
	}
}

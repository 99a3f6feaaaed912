package standins

import (
	_ "embed"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// The livecd-rootfs stand-in's live-build auto scripts (see their headers).
var (
	//go:embed livecd-rootfs-config
	LiveCDRootfsConfig []byte
	//go:embed livecd-rootfs-build
	LiveCDRootfsBuild []byte
	//go:embed livecd-rootfs-clean
	LiveCDRootfsClean []byte
)

// LiveCDRootfsVersion is the stand-in package's version.
const LiveCDRootfsVersion = "0.0standin1"

// LiveCDRootfsDeb builds the livecd-rootfs stand-in package into dir with
// dpkg-deb and returns its path: Ubuntu's livecd-rootfs cannot drive
// Debian's live-build, so this one ships the three auto scripts at
// livecd-rootfs's paths and depends on what they run (Debian's
// live-build, squashfs-tools).
func LiveCDRootfsDeb(t testing.TB, dir string) string {
	t.Helper()
	testenv.RequireCommand(t, "dpkg-deb")
	tree := filepath.Join(t.TempDir(), "livecd-rootfs")
	auto := filepath.Join(tree, "usr", "share", "livecd-rootfs", "live-build", "auto")
	for _, d := range []string{filepath.Join(tree, "DEBIAN"), auto} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := "Package: livecd-rootfs\nVersion: " + LiveCDRootfsVersion + "\nArchitecture: all\n" +
		"Maintainer: buildd-agent tests <tests@buildd-agent.invalid>\nSection: misc\nPriority: optional\n" +
		"Depends: live-build, squashfs-tools, mount\n" +
		"Description: livecd-rootfs stand-in for buildd-agent's tests\n" +
		" The live-build auto scripts config, build and clean at livecd-rootfs's\n paths, for Debian's live-build.\n"
	files := map[string][]byte{filepath.Join(tree, "DEBIAN", "control"): []byte(control)}
	for name, data := range map[string][]byte{"config": LiveCDRootfsConfig, "build": LiveCDRootfsBuild, "clean": LiveCDRootfsClean} {
		files[filepath.Join(auto, name)] = data
	}
	for p, data := range files {
		mode := os.FileMode(0o755)
		if filepath.Base(p) == "control" {
			mode = 0o644
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "livecd-rootfs_"+LiveCDRootfsVersion+"_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build livecd-rootfs: %v\n%s", err, out)
	}
	return deb
}

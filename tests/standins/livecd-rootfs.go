package standins

import (
	_ "embed"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// The livecd-rootfs stand-in's live-build auto scripts, its loop-device
// probe and the ubuntu-defaults-image stand-in (see their headers).
var (
	//go:embed livecd-rootfs-config
	LiveCDRootfsConfig []byte
	//go:embed livecd-rootfs-build
	LiveCDRootfsBuild []byte
	//go:embed livecd-rootfs-clean
	LiveCDRootfsClean []byte
	//go:embed livecd-rootfs-loop-probe
	LoopProbe []byte
	//go:embed livecd-rootfs-defaults-image
	UbuntuDefaultsImage []byte
)

// LoopProbePath is where the livecd-rootfs stand-in ships the probe.
const LoopProbePath = "/usr/share/livecd-rootfs/loop-probe"

// LiveCDRootfsVersion is the stand-in package's version.
const LiveCDRootfsVersion = "0.0standin1"

// LiveCDRootfsDeb builds the livecd-rootfs stand-in package into dir with
// dpkg-deb and returns its path: Ubuntu's livecd-rootfs cannot drive
// Debian's live-build, so this one ships the three auto scripts at
// livecd-rootfs's paths (and the loop probe they run) and depends on what
// they run (Debian's live-build, squashfs-tools).
func LiveCDRootfsDeb(t testing.TB, dir string) string {
	t.Helper()
	auto := "/usr/share/livecd-rootfs/live-build/auto/"
	return buildDeb(t, dir, debSpec{
		name: "livecd-rootfs", version: LiveCDRootfsVersion, depends: "live-build, squashfs-tools, mount",
		description: "livecd-rootfs stand-in for buildd-agent's tests\n The live-build auto scripts config, build and clean at livecd-rootfs's\n paths, for Debian's live-build.",
		files: map[string][]byte{
			auto + "config": LiveCDRootfsConfig, auto + "build": LiveCDRootfsBuild, auto + "clean": LiveCDRootfsClean,
			LoopProbePath: LoopProbe,
		},
	})
}

// UbuntuDefaultsBuilderDeb builds the ubuntu-defaults-builder stand-in
// (/usr/bin/ubuntu-defaults-image) into dir and returns its path.
func UbuntuDefaultsBuilderDeb(t testing.TB, dir string) string {
	t.Helper()
	return buildDeb(t, dir, debSpec{
		name: "ubuntu-defaults-builder", version: LiveCDRootfsVersion, depends: "squashfs-tools",
		description: "ubuntu-defaults-builder stand-in for buildd-agent's tests\n ubuntu-defaults-image checking its argv and making a squashfs.",
		files:       map[string][]byte{"/usr/bin/ubuntu-defaults-image": UbuntuDefaultsImage},
	})
}

// LoopProbeDeb builds a package called name (one a manager installs, such
// as snapcraft for a snap build) whose postinst is the loop probe: its
// "loop-probe:" lines land in the build log of whatever build installs it.
// It ships nothing else, so it shadows no tool of the image.
func LoopProbeDeb(t testing.TB, dir, name string) string {
	t.Helper()
	return buildDeb(t, dir, debSpec{
		name: name, version: "99.0+loopprobe", depends: "mount",
		description: "loop-device probe for buildd-agent's tests\n Its postinst tries to attach a loop device.",
		files:       map[string][]byte{"/usr/share/doc/" + name + "/README": []byte("loop-device probe\n")},
		postinst:    LoopProbe,
	})
}

type debSpec struct {
	name, version, depends, description string
	files                               map[string][]byte // absolute paths; executables
	postinst                            []byte
}

// buildDeb makes an Architecture: all package with dpkg-deb.
func buildDeb(t testing.TB, dir string, spec debSpec) string {
	t.Helper()
	testenv.RequireCommand(t, "dpkg-deb")
	tree := filepath.Join(t.TempDir(), spec.name)
	control := "Package: " + spec.name + "\nVersion: " + spec.version + "\nArchitecture: all\n" +
		"Maintainer: buildd-agent tests <tests@buildd-agent.invalid>\nSection: misc\nPriority: optional\n" +
		"Depends: " + spec.depends + "\nDescription: " + spec.description + "\n"
	type debFile struct {
		data []byte
		mode os.FileMode
	}
	files := map[string]debFile{"DEBIAN/control": {[]byte(control), 0o644}}
	for p, data := range spec.files {
		mode := os.FileMode(0o755)
		if strings.HasPrefix(p, "/usr/share/doc/") {
			mode = 0o644
		}
		files[strings.TrimPrefix(p, "/")] = debFile{data, mode}
	}
	if spec.postinst != nil {
		files["DEBIAN/postinst"] = debFile{spec.postinst, 0o755}
	}
	for rel, f := range files {
		p := filepath.Join(tree, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode is masked by the umask.
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, spec.name+"_"+spec.version+"_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build %s: %v\n%s", spec.name, err, out)
	}
	return deb
}

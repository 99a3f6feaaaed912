package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/standins"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// TestLiveFSE2ELocalBuild runs `buildd-agent build livefs` (the manager
// in-process, in the privileged livefs container) with Debian's real lb
// and the livecd-rootfs stand-in from the tests' archive, and checks the
// results, summary.json and that lb config got the flags' environment.
func TestLiveFSE2ELocalBuild(t *testing.T) {
	testenv.RequireLXD(t)
	testenv.RequireCommand(t, "lxc")
	chrootPath, _ := snapE2EChroot(t)
	lxdTestBridge(t, livefsE2EBridge, livefsE2EHost)
	debs := t.TempDir()
	archive := aptarchive.Build(t, aptarchive.Options{Set: "livefs", Extra: []string{standins.LiveCDRootfsDeb(t, debs), standins.UbuntuDefaultsBuilderDeb(t, debs)}})
	line := archive.SourcesLine(archive.Serve(t, livefsE2EHost+":0"))
	key := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(key, archive.PublicKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	conf := writeLiveFSAgentConfig(t, state, snapFreePort(t, "127.0.0.1"), snapFreePort(t, livefsE2EHost))
	out := filepath.Join(t.TempDir(), "out")
	t.Cleanup(livefsCleanupLXD)
	cmd := exec.Command(snapE2EBinary(t), "build", "livefs", "--config", conf, "--chroot", chrootPath,
		"--archive", line, "--trusted-key", key, "--series", livefsE2ESeries, "--arch", snapE2EArch,
		"--project", "ubuntu-base", "--subarch", "generic", "--pocket", "proposed", "--datestamp", "20261202-120000",
		"--image-format", "plain", "--extra-snap", "lxd", "--image-target", "tarball", "--output", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build livefs: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "RUN: lb build") {
		t.Errorf("terminal output lacks lb build:\n%s", stdout.String())
	}
	sum := readLocalSummary(t, out)
	if sum.Status != "BuildStatus.OK" || strings.Join(sum.names(), " ") != "livecd.ubuntu-base.build-info livecd.ubuntu-base.manifest livecd.ubuntu-base.squashfs" {
		t.Fatalf("summary = %s", sum.raw)
	}
	if sq, err := os.ReadFile(filepath.Join(out, "livecd.ubuntu-base.squashfs")); err != nil || !bytes.HasPrefix(sq, []byte("hsqs")) {
		t.Errorf("the squashfs result is not a squashfs: %v", err)
	}
	info, err := os.ReadFile(filepath.Join(out, "livecd.ubuntu-base.build-info"))
	if err != nil {
		t.Fatal(err)
	}
	config := section(string(info), "lb config")
	for _, l := range []string{"PROJECT=ubuntu-base", "SUBARCH=generic", "SUITE=" + livefsE2ESeries, "NOW=20261202-120000",
		"IMAGEFORMAT=plain", "PROPOSED=1", "EXTRA_SNAPS=lxd", "IMAGE_TARGETS=tarball"} {
		if !config[l] {
			t.Errorf("lb config's environment lacks %q:\n%s", l, info)
		}
	}
	if snapContainerExists(livefsE2EContainer()) {
		t.Errorf("container left after a local build")
	}
}

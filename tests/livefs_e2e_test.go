package tests

// End-to-end tests of livefs builds: the real buildd-agent binary driven
// over XML-RPC as buildd-manager drives it, in a real privileged LXD
// container made from the test chroot, installing Debian's real
// live-build and the livecd-rootfs stand-in (tests/standins) from a signed
// local apt archive served on the bridge (the container has no route out).
// The stand-in's auto scripts record the environments lb config and lb
// build gave them in livecd.<project>.build-info, so the test sees what
// reached live-build. The same agent also runs a snap build whose install
// phase runs the stand-ins' loop-device probe: it works in the livefs
// container only.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/standins"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	// livefsE2ESeries names the container lp-livefse2e-amd64, apart from
	// the other e2e tests' (the series is only a name to live-build's
	// config and to the container).
	livefsE2ESeries   = "livefse2e"
	livefsE2EInstance = "livefse2e"
	livefsE2EProfile  = "buildd-agent-livefse2e"
	// livefsE2EBridge and livefsE2EHost: the tests' own bridge. On the
	// shared lpbuilddbr0 every e2e agent's container is 10.10.10.2, and
	// two tests running at once make their apt downloads time out.
	livefsE2EBridge = "lfse2ebr0"
	livefsE2EHost   = "10.10.31.1"
)

func livefsE2EContainer() string { return "lp-" + livefsE2ESeries + "-" + snapE2EArch }

func livefsCleanupLXD() {
	exec.Command("lxc", "delete", "--force", livefsE2EContainer()).Run()
	exec.Command("lxc", "profile", "delete", livefsE2EProfile).Run()
}

func writeLiveFSAgentConfig(t testing.TB, dir string, port, proxyPort int) string {
	t.Helper()
	p := writeLXDAgentConfig(t, dir, snapE2EArch, port, proxyPort, livefsE2EProfile, fmt.Sprintf("instance = %q\n", livefsE2EInstance))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	shared := "bridge = \"lpbuilddbr0\"\nsubnet = \"10.10.10.1/24\"\n"
	if !bytes.Contains(b, []byte(shared)) {
		t.Fatalf("%s does not set the bridge as expected:\n%s", p, b)
	}
	own := fmt.Sprintf("bridge = %q\nsubnet = %q\n", livefsE2EBridge, livefsE2EHost+"/24")
	if err := os.WriteFile(p, bytes.Replace(b, []byte(shared), []byte(own), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// livefsFixture: the agent, the chroot it is given, and the archive.
type livefsFixture struct {
	agent      *snapAgent
	chrootSHA1 string
	archives   []any
	keys       []any
	// probeArchives and probeKeys hold only a "snapcraft" package whose
	// postinst is the loop probe, for the snap build.
	probeArchives []any
	probeKeys     []any
}

func newLiveFSFixture(t *testing.T) *livefsFixture {
	t.Helper()
	testenv.RequireLXD(t)
	testenv.RequireCommand(t, "lxc")
	f := &livefsFixture{}
	chrootPath, sum := snapE2EChroot(t)
	f.chrootSHA1 = sum
	chroot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, chrootPath)
	}))
	t.Cleanup(chroot.Close)
	lxdTestBridge(t, livefsE2EBridge, livefsE2EHost)

	debs := t.TempDir()
	extra := []string{standins.LiveCDRootfsDeb(t, debs), standins.UbuntuDefaultsBuilderDeb(t, debs)}
	archive := aptarchive.Build(t, aptarchive.Options{Set: "livefs", Extra: extra})
	url := archive.Serve(t, livefsE2EHost+":0")
	f.archives = []any{archive.SourcesLine(url)}
	f.keys = []any{archive.TrustedKey()}
	probe := aptarchive.Build(t, aptarchive.Options{NoBase: true, Extra: []string{standins.LoopProbeDeb(t, debs, "snapcraft")}})
	f.probeArchives = []any{probe.SourcesLine(probe.Serve(t, livefsE2EHost+":0"))}
	f.probeKeys = []any{probe.TrustedKey()}

	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	port := snapFreePort(t, "127.0.0.1")
	a.proxyPort = snapFreePort(t, livefsE2EHost)
	a.config = writeLiveFSAgentConfig(t, a.stateDir, port, a.proxyPort)
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.start(t, bin, livefsCleanupLXD)
	f.agent = a
	res, ok := a.call(t, "ensurepresent", sum, chroot.URL+"/chroot.tar.gz", "", "").([]any)
	if !ok || len(res) != 2 || res[0] != true {
		t.Fatalf("ensurepresent = %#v", res)
	}
	return f
}

// args are buildd-manager's livefs arguments (metadata, pocket,
// datestamp, archives) for project.
func (f *livefsFixture) args(project string) map[string]any {
	return map[string]any{
		"series": livefsE2ESeries, "arch_tag": snapE2EArch, "archive_private": false,
		"archives": f.archives, "trusted_keys": f.keys,
		"project": project, "subproject": "minimized", "subarch": "generic", "pocket": "proposed",
		"datestamp": "20140425-103800", "image_format": "ext4",
		"extra_ppas": []any{"owner/ppa1", "owner/ppa2"}, "extra_snaps": []any{"lxd", "core22"},
		"channel": "stable", "image_targets": []any{"disk1", "squashfs"},
		"repo_snapshot_stamp": "20240101T000000Z", "snapshot_service_timestamp": "20240102T030405Z",
		"cohort-key": "MSBcohort", "debug": false, "lb_args": []any{"--option=value"},
	}
}

func (f *livefsFixture) startBuild(t *testing.T, id string, args map[string]any) {
	t.Helper()
	res, ok := f.agent.call(t, "build", id, "livefs", f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" || res[1] != id {
		t.Fatalf("build() = %#v", res)
	}
}

// section returns the lines of one [name] section of the build-info.
func section(info, name string) map[string]bool {
	lines := map[string]bool{}
	in := false
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			in = l == "["+name+"]"
			continue
		}
		if in && l != "" {
			lines[l] = true
		}
	}
	return lines
}

func TestLiveFSE2E(t *testing.T) {
	f := newLiveFSFixture(t)
	a := f.agent

	t.Run("build", func(t *testing.T) {
		args := f.args("ubuntu-cpc")
		args["debug"] = true
		f.startBuild(t, "LIVEFSBUILD-1", args)
		st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
		log := string(a.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		if got := filemapNames(st); got != "livecd.ubuntu-cpc.build-info livecd.ubuntu-cpc.manifest livecd.ubuntu-cpc.squashfs" {
			t.Fatalf("filemap %q; status %v; log:\n%s", got, st, log)
		}
		files := f.results(t, st)
		if sq := files["livecd.ubuntu-cpc.squashfs"]; !bytes.HasPrefix(sq, []byte("hsqs")) {
			t.Errorf("the squashfs result is not a squashfs (%d bytes)", len(sq))
		}
		info := string(files["livecd.ubuntu-cpc.build-info"])
		base := []string{"LANG=C.UTF-8", "SHELL=/bin/sh", "PROJECT=ubuntu-cpc", "ARCH=amd64", "SUBPROJECT=minimized",
			"SUBARCH=generic", "CHANNEL=stable", "IMAGE_TARGETS=disk1 squashfs", "REPO_SNAPSHOT_STAMP=20240101T000000Z",
			"SNAPSHOT_SERVICE_TIMESTAMP=20240102T030405Z", "COHORT_KEY=MSBcohort"}
		configOnly := []string{"SUITE=livefse2e", "NOW=20140425-103800", "IMAGEFORMAT=ext4", "PROPOSED=1",
			"EXTRA_PPAS=owner/ppa1 owner/ppa2", "EXTRA_SNAPS=lxd core22"}
		config, build := section(info, "lb config"), section(info, "lb build")
		for _, l := range append(append([]string(nil), base...), configOnly...) {
			if !config[l] {
				t.Errorf("lb config's environment lacks %q", l)
			}
		}
		for _, l := range base {
			if !build[l] {
				t.Errorf("lb build's environment lacks %q", l)
			}
		}
		for _, l := range configOnly {
			k, _, _ := strings.Cut(l, "=")
			for got := range build {
				if strings.HasPrefix(got, k+"=") {
					t.Errorf("lb build's environment has %q (only lb config's should)", got)
				}
			}
		}
		if !section(info, "loop")["usable"] {
			t.Errorf("no usable loop device in the livefs container:\n%s", info)
		}
		checkLoopProbe(t, "the livefs container", section(info, "loop-probe"), true)
		checkDeviceNodes(t, section(info, "devices"), log)
		// debug: buildlivefs's `set -x` in local/functions/debug.sh, which
		// the stand-in sources as Ubuntu's live-build does.
		for _, want := range []string{"RUN: mkdir -p local/functions", ">local/functions/debug.sh", "+ exec lb config noauto --distribution livefse2e --architectures amd64", "+ mksquashfs standin-root livecd.ubuntu-cpc.squashfs"} {
			if !strings.Contains(log, want) {
				t.Errorf("debug build's log lacks %q", want)
			}
		}
		if t.Failed() {
			t.Logf("build-info:\n%s\nlog:\n%s", info, log)
		}
		for _, want := range []string{"RUN: apt-get -y install livecd-rootfs", "RUN: lb clean --purge", "RUN: lb config", "RUN: lb build"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q", want)
			}
		}
		if snapContainerExists(livefsE2EContainer()) {
			t.Errorf("container %s left after the build", livefsE2EContainer())
		}
		if got := a.call(t, "clean"); got != "BuilderStatus.IDLE" {
			t.Errorf("clean() = %v", got)
		}
	})

	t.Run("lb build fails", func(t *testing.T) {
		f.startBuild(t, "LIVEFSBUILD-2", f.args("standin-fail"))
		st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
		log := string(a.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
			t.Errorf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		if !strings.Contains(log, "Build failed: lb build failed with exit status 1") {
			t.Errorf("log lacks the failure:\n%s", log)
		}
		if strings.Contains(log, "local/functions") || strings.Contains(log, "+ exec lb config") {
			t.Errorf("a build without debug traces its shell:\n%s", log)
		}
		a.call(t, "clean")
	})

	t.Run("locale", func(t *testing.T) { f.testLocale(t) })

	t.Run("snap build has no loop device", func(t *testing.T) { f.testSnapNoLoop(t) })

	t.Run("abort during lb build", func(t *testing.T) {
		f.startBuild(t, "LIVEFSBUILD-3", f.args("standin-hang"))
		deadline := time.Now().Add(8 * time.Minute)
		for !strings.Contains(string(a.fetch(t, "buildlog")), "waiting for abort") {
			if st := a.status(t); st["builder_status"] != "BuilderStatus.BUILDING" {
				t.Fatalf("builder %v before lb build; log:\n%s", st["builder_status"], a.fetch(t, "buildlog"))
			}
			if time.Now().After(deadline) {
				t.Fatalf("lb build never started; log:\n%s", a.fetch(t, "buildlog"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got := a.call(t, "abort"); got != "BuilderStatus.ABORTING" {
			t.Errorf("abort() = %v", got)
		}
		st := a.waitState(t, "BuilderStatus.WAITING", 3*time.Minute)
		if st["build_status"] != "BuildStatus.ABORTED" {
			t.Errorf("build_status = %v; log:\n%s", st["build_status"], a.fetch(t, "buildlog"))
		}
		if snapContainerExists(livefsE2EContainer()) {
			t.Errorf("container left after abort")
		}
		a.call(t, "clean")
	})
}

package tests

// The livefs e2e test's checks of the build root (loop devices and
// device-mapper nodes in the privileged livefs container, none of it in a
// snap build's unprivileged one) and its locale build.

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// results fetches a finished build's files by their SHA-1s.
func (f *livefsFixture) results(t *testing.T, st map[string]any) map[string][]byte {
	t.Helper()
	filemap, _ := st["filemap"].(map[string]any)
	files := map[string][]byte{}
	for name, sum := range filemap {
		data := f.agent.fetch(t, sum.(string))
		h := sha1.Sum(data)
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: content does not match its SHA-1 %s", name, sum)
		}
		files[name] = data
	}
	return files
}

// sortedLines is a section's lines in order.
func sortedLines(set map[string]bool) []string {
	var out []string
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// checkLoopProbe checks what the stand-ins' loop probe printed (its
// "loop-probe:" lines): as root, a loop device attached, the data read
// back through it and detached (usable), or attaching and making a node
// both refused (not usable).
func checkLoopProbe(t *testing.T, where string, lines map[string]bool, usable bool) {
	t.Helper()
	t.Logf("loop probe in %s:\n%s", where, strings.Join(sortedLines(lines), "\n"))
	has := func(prefix string) bool {
		for l := range lines {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	}
	if !lines["loop-probe: uid 0"] {
		t.Errorf("%s: the probe did not run as root", where)
	}
	if usable {
		for _, want := range []string{"loop-probe: attached /dev/loop", "loop-probe: read back through /dev/loop", "loop-probe: detached /dev/loop"} {
			if !has(want) {
				t.Errorf("%s: no %q: a loop device is not usable", where, want)
			}
		}
		return
	}
	if has("loop-probe: attached") || has("loop-probe: made a loop node") {
		t.Errorf("%s: a loop device is usable (it must not be)", where)
	}
	for _, want := range []string{"loop-probe: cannot attach: ", "loop-probe: cannot make a loop node: "} {
		if !has(want) {
			t.Errorf("%s: no %q", where, want)
		}
	}
}

// hostHasDeviceMapper says whether this machine's kernel (LXD's: the
// tests use the local LXD) has device-mapper.
func hostHasDeviceMapper(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		t.Fatal(err)
	}
	block := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(l, ":") {
			block = l == "Block devices:"
			continue
		}
		if f := strings.Fields(l); block && len(f) == 2 && f[1] == "device-mapper" {
			return true
		}
	}
	return false
}

// checkDeviceNodes checks the stand-in's [devices] section: loop-control
// always; dm-0..7 and mapper/control exactly when the kernel has
// device-mapper, and when it has not the build log says so.
func checkDeviceNodes(t *testing.T, devices map[string]bool, log string) {
	t.Helper()
	t.Logf("device nodes in the livefs container:\n%s", strings.Join(sortedLines(devices), "\n"))
	if !devices["/dev/loop-control character special file a:ed"] {
		t.Errorf("no /dev/loop-control (10:237) in the livefs container")
	}
	dm := hostHasDeviceMapper(t)
	names := []string{"/dev/mapper/control"}
	for i := range 8 {
		names = append(names, "/dev/dm-"+string(rune('0'+i)))
	}
	for _, n := range names {
		present := false
		for l := range devices {
			if strings.HasPrefix(l, n+" ") && !strings.HasSuffix(l, " missing") {
				present = true
				if strings.HasPrefix(n, "/dev/dm-") != strings.Contains(l, "block special file") {
					t.Errorf("%s is of the wrong type: %q", n, l)
				}
			}
		}
		if present != dm {
			t.Errorf("%s present=%v but the kernel's device-mapper=%v", n, present, dm)
		}
	}
	if !dm && !strings.Contains(log, "The kernel has no device-mapper") {
		t.Errorf("the kernel has no device-mapper and the build log does not say so")
	}
	if !dm {
		t.Logf("this kernel has no device-mapper (not in /proc/devices): checked that the container has no dm nodes and the log says so")
	}
}

// testLocale: with locale, ubuntu-defaults-builder is installed and
// ubuntu-defaults-image runs in /build with the base environment instead
// of live-build.
func (f *livefsFixture) testLocale(t *testing.T) {
	a := f.agent
	args := f.args("ubuntu-cpc")
	args["locale"] = "zh_CN"
	f.startBuild(t, "LIVEFSBUILD-4", args)
	st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
	log := string(a.fetch(t, "buildlog"))
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if got := filemapNames(st); got != "livecd.ubuntu-defaults.build-info livecd.ubuntu-defaults.squashfs" {
		t.Fatalf("filemap %q; log:\n%s", got, log)
	}
	files := f.results(t, st)
	if sq := files["livecd.ubuntu-defaults.squashfs"]; !bytes.HasPrefix(sq, []byte("hsqs")) {
		t.Errorf("the squashfs result is not a squashfs (%d bytes)", len(sq))
	}
	info := string(files["livecd.ubuntu-defaults.build-info"])
	if got := strings.Join(sectionLines(info, "argv"), " "); got != "--locale zh_CN --arch amd64 --release livefse2e" {
		t.Errorf("ubuntu-defaults-image argv %q", got)
	}
	if got := strings.Join(sectionLines(info, "cwd"), " "); got != "/build" {
		t.Errorf("ubuntu-defaults-image ran in %q, want /build", got)
	}
	env := section(info, "env")
	for _, want := range []string{"LANG=C.UTF-8", "SHELL=/bin/sh"} {
		if !env[want] {
			t.Errorf("ubuntu-defaults-image's environment lacks %q", want)
		}
	}
	for l := range env {
		if strings.HasPrefix(l, "PROJECT=") || strings.HasPrefix(l, "SUITE=") {
			t.Errorf("ubuntu-defaults-image's environment has %q (live-build's only)", l)
		}
	}
	for _, want := range []string{"RUN: apt-get -y --install-recommends install ubuntu-defaults-builder",
		"ubuntu-defaults-image --locale zh_CN --arch amd64 --release livefse2e",
		"ubuntu-defaults-image stand-in: built the zh_CN image for amd64 livefse2e"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, not := range []string{"RUN: lb ", "lb clean", "auto/"} {
		if strings.Contains(log, not) {
			t.Errorf("a locale build ran live-build (%q in the log)", not)
		}
	}
	if t.Failed() {
		t.Logf("build-info:\n%s\nlog:\n%s", info, log)
	}
	a.call(t, "clean")
}

// sectionLines is a section's lines in file order.
func sectionLines(info, name string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			in = l == "["+name+"]"
			continue
		}
		if in && l != "" {
			out = append(out, l)
		}
	}
	return out
}

// testSnapNoLoop: a snap build on the same agent installs the probe
// package (as its snapcraft .deb) in its unprivileged container, where
// the probe can neither attach a loop device nor make a node. The source
// is unreachable: the build fails after its install phase, which is all
// this needs.
func (f *livefsFixture) testSnapNoLoop(t *testing.T) {
	a := f.agent
	args := map[string]any{
		"series": livefsE2ESeries, "arch_tag": snapE2EArch, "name": "loopprobe",
		"git_repository": "http://" + livefsE2EHost + ":9/none.git",
		"archives":       f.probeArchives, "trusted_keys": f.probeKeys,
	}
	res, ok := a.call(t, "build", "SNAPPROBE-1", "snap", f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" {
		t.Fatalf("build() = %#v", res)
	}
	st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
	log := string(a.fetch(t, "buildlog"))
	if !strings.Contains(log, "Setting up snapcraft (99.0+loopprobe)") {
		t.Fatalf("the probe package was not installed (status %v); log:\n%s", st["build_status"], log)
	}
	probe := map[string]bool{}
	for _, l := range strings.Split(log, "\n") {
		// dpkg runs maintainer scripts on a terminal apt opens: \r\n.
		l = strings.TrimSuffix(l, "\r")
		if strings.HasPrefix(l, "loop-probe: ") {
			probe[l] = true
		}
	}
	checkLoopProbe(t, "the snap build's container", probe, false)
	if st["build_status"] == "BuildStatus.OK" {
		t.Errorf("the snap build succeeded from an unreachable repository")
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
	if snapContainerExists(livefsE2EContainer()) {
		t.Errorf("container %s left after the snap build", livefsE2EContainer())
	}
	a.call(t, "clean")
}

package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkSnapBuild measures a whole snap build through the real agent
// (build() over XML-RPC until WAITING, image already cached) against the
// floor of the same work done by hand in the same run: git clone on the
// host, then with `lxc` create+start a container from the same cached
// image, wait for systemd, stream the tree in, exec the same commands with
// the same environment, pull the results, force-delete. It reports the
// ratio (target ≤ 1.15) and the time from build() to the first byte of
// /filecache/buildlog with a cached image (target < 200 ms).
func BenchmarkSnapBuild(b *testing.B) {
	f := newSnapFixture(b)
	f.repo.WriteFile(b, "snap/snapcraft.yaml", "name: hello\nversion: '1.0'\nsummary: bench\n")
	f.repo.WriteFile(b, "src/main.c", strings.Repeat("/* source */\n", 1000))
	f.repo.Commit(b, "bench")
	a := startSnapAgent(b)
	a.ensureChroot(b, f)
	args := func() map[string]any {
		return map[string]any{
			"series": snapE2ESeries, "arch_tag": snapE2EArch, "name": "hello",
			"channels":       map[string]any{"snapcraft": "8.x/stable", "core22": "latest/stable"},
			"git_repository": f.repo.URL(),
		}
	}
	build := func(id string) (total, firstLog time.Duration) {
		start := time.Now()
		res, ok := a.call(b, "build", id, "snap", f.chrootSHA1, map[string]any{}, args()).([]any)
		if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" {
			b.Fatalf("build() = %#v", res)
		}
		for firstLog == 0 {
			if len(a.fetch(b, "buildlog")) > 0 {
				firstLog = time.Since(start)
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatal("no log line within a minute")
			}
			time.Sleep(2 * time.Millisecond)
		}
		for {
			st, _ := a.call(b, "status").(map[string]any)
			if st["builder_status"] == "BuilderStatus.WAITING" {
				total = time.Since(start)
				if st["build_status"] != "BuildStatus.OK" {
					b.Fatalf("bench build %s: %v\n%s", id, st["build_status"], a.fetch(b, "buildlog"))
				}
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatal("bench build did not finish in 10 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		a.call(b, "clean")
		return total, firstLog
	}
	// Warm-up, only if the image is not cached yet: imports it (not measured).
	fp := snapBenchImage(b, f.chrootSHA1)
	if fp == "" {
		build("SNAPBENCH-WARM")
		if fp = snapBenchImage(b, f.chrootSHA1); fp == "" {
			b.Fatalf("no LXD image made from chroot %s", f.chrootSHA1)
		}
	}

	// Two alternating rounds (a build is 15-45 s): less noise from the
	// other work on the machine, still well within a couple of minutes.
	const rounds = 2
	var agentTotal, floorTotal, firstLogMax time.Duration
	var firstLogs []time.Duration
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		total, first := build(fmt.Sprintf("SNAPBENCH-%d", i))
		agentTotal += total
		firstLogs = append(firstLogs, first)
		if first > firstLogMax {
			firstLogMax = first
		}
		floorTotal += snapBenchFloor(b, fp, f.repo.URL())
	}
	b.StopTimer()
	ratio := float64(agentTotal) / float64(floorTotal)
	b.ReportMetric(ratio, "x-floor")
	b.ReportMetric(float64(agentTotal.Milliseconds())/rounds, "agent-ms/build")
	b.ReportMetric(float64(floorTotal.Milliseconds())/rounds, "floor-ms/build")
	b.ReportMetric(float64(firstLogMax.Microseconds())/1000, "first-log-ms")
	b.Logf("agent %s, floor %s per build (ratio %.3f); first log line after %v", agentTotal/rounds, floorTotal/rounds, ratio, firstLogs)
}

// snapBenchImage finds the LXD image the tests' agent made from the chroot
// ("" if none yet).
func snapBenchImage(b *testing.B, sha1 string) string {
	out, err := exec.Command("lxc", "image", "list", "--format", "json").Output()
	if err != nil {
		b.Fatal(err)
	}
	var imgs []struct {
		Fingerprint string            `json:"fingerprint"`
		Properties  map[string]string `json:"properties"`
	}
	if err := json.Unmarshal(out, &imgs); err != nil {
		b.Fatal(err)
	}
	for _, img := range imgs {
		if img.Properties["user.buildd-agent.sha1"] == sha1 && img.Properties["user.buildd-agent.instance"] == snapE2EInstance {
			return img.Fingerprint
		}
	}
	return ""
}

// snapBenchFloor does the snap build's work by hand with git and lxc and
// returns how long it took.
func snapBenchFloor(b *testing.B, fingerprint, repo string) time.Duration {
	name := fmt.Sprintf("snapbench-floor-%d", os.Getpid())
	work := b.TempDir()
	start := time.Now()
	run := func(stdin io.Reader, args ...string) string {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = stdin
		out, err := cmd.CombinedOutput()
		if err != nil {
			exec.Command("lxc", "delete", "--force", name).Run()
			b.Fatalf("%q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	lxcExec := func(dir string, env []string, args ...string) {
		argv := []string{"lxc", "exec", name}
		for _, e := range env {
			argv = append(argv, "--env", e)
		}
		if dir != "" {
			argv = append(argv, "--cwd", dir)
		}
		run(nil, append(append(argv, "--"), args...)...)
	}
	src := filepath.Join(work, "hello")
	run(nil, "git", "clone", "-q", repo, src)
	run(nil, "lxc", "init", fingerprint, name)
	run(nil, "lxc", "start", name)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		out, _ := exec.Command("lxc", "exec", name, "--", "systemctl", "is-system-running").Output()
		if s := strings.TrimSpace(string(out)); s == "running" || s == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			exec.Command("lxc", "delete", "--force", name).Run()
			b.Fatal("floor container never became ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range []string{"snapd", "fuse", "squashfuse", "udev"} {
		exec.Command("lxc", "exec", name, "--", "apt-cache", "show", p).Run()
	}
	lxcExec("", nil, "apt-get", "-y", "install", "git", "sudo")
	lxcExec("", nil, "snap", "install", "--channel=latest/stable", "core22")
	lxcExec("", nil, "snap", "refresh", "--channel=latest/stable", "core22")
	lxcExec("", nil, "snap", "install", "--classic", "--channel=8.x/stable", "snapcraft")
	lxcExec("", nil, "mkdir", "-p", "/build/hello")
	var tarball bytes.Buffer
	tarCmd := exec.Command("tar", "-C", src, "--owner=0", "--group=0", "--numeric-owner", "-cf", "-", ".")
	tarCmd.Stdout = &tarball
	if err := tarCmd.Run(); err != nil {
		b.Fatal(err)
	}
	run(&tarball, "lxc", "exec", name, "--", "tar", "-x", "-C", "/build/hello", "-f", "-")
	base := []string{"LANG=C.UTF-8", "SHELL=/bin/sh", "SNAPCRAFT_BUILD_INFO=1", "SNAPCRAFT_IMAGE_INFO={}", "SNAPCRAFT_BUILD_ENVIRONMENT=host"}
	lxcExec("/build/hello", append(append([]string{}, base...), "SNAPCRAFT_LOCAL_SOURCES=1", "SNAPCRAFT_SETUP_CORE=1"), "snapcraft", "pull")
	lxcExec("/build/hello", base, "snapcraft")
	lxcExec("/build/hello", []string{"LANG=C.UTF-8", "SHELL=/bin/sh"}, "sha512sum", "hello_1.0_amd64.snap")
	for _, r := range []string{"hello_1.0_amd64.manifest", "hello_1.0_amd64.snap"} {
		run(nil, "lxc", "file", "pull", name+"/build/hello/"+r, filepath.Join(work, r))
	}
	// The fastest teardown by hand: the container is thrown away.
	run(nil, "lxc", "delete", "--force", name)
	return time.Since(start)
}

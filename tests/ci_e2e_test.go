package tests

// End-to-end tests of ci builds (lpci jobs in stages): the real
// buildd-agent binary driven over XML-RPC the way buildd-manager drives
// it, in a real LXD container made from the test chroot with the
// stand-ins of tests/standins (snap, lxd, lpci; the image has Launchpad's
// buildd account), through a real authenticated squid, from a real git
// server, with the archives and trusted_keys buildd-manager sends.
//
// These tests have their own LXD label, profile and series, so their
// container (lp-cie2e-amd64) never collides with the other tests'. Each
// test is one container boot; none runs in parallel.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	ciE2ESeries   = "cie2e"
	ciE2EArch     = "amd64"
	ciE2EInstance = "cie2e"
	ciE2EProfile  = "buildd-agent-cie2e"
	// What secrets and environment_variables carry: never in the build
	// log, nor in a job's log.
	ciE2ESecret  = "ci-secret-t0ken-5b2e71"
	ciE2EPIPPass = "pip-r3ad-pass-91c4"
)

func ciE2EContainer() string { return "lp-" + ciE2ESeries + "-" + ciE2EArch }

func ciCleanupLXD() {
	exec.Command("lxc", "delete", "--force", ciE2EContainer()).Run()
	exec.Command("lxc", "profile", "delete", ciE2EProfile).Run()
}

// startCIAgent runs `buildd-agent run` with the ci tests' config.
func startCIAgent(t testing.TB) *snapAgent {
	t.Helper()
	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	port := snapFreePort(t, "127.0.0.1")
	a.proxyPort = snapFreePort(t, "10.10.10.1")
	a.config = writeLXDAgentConfig(t, a.stateDir, ciE2EArch, port, a.proxyPort, ciE2EProfile, fmt.Sprintf("instance = %q\n", ciE2EInstance))
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.start(t, bin, ciCleanupLXD)
	return a
}

// ciLaunchpadYAML is a .launchpad.yaml naming the jobs (the lpci stand-in
// checks that its job is under jobs:).
func ciLaunchpadYAML(jobs ...string) string {
	y := "pipeline:\n"
	for _, j := range jobs {
		y += "  - " + j + "\n"
	}
	y += "jobs:\n"
	for _, j := range jobs {
		y += "  " + j + ":\n    series: jammy\n    architectures: amd64\n    run: echo " + j + "\n"
	}
	return y
}

// ciBuildArgs are what buildd-manager sends for a ci build (§4.8), with
// the DistributionSourcePackage extras.
func ciBuildArgs(f *snapFixture, commit string, jobs []any) map[string]any {
	return map[string]any{
		"series":              ciE2ESeries,
		"arch_tag":            ciE2EArch,
		"archives":            []any{f.archiveLine},
		"trusted_keys":        []any{f.archiveKey},
		"build_url":           "https://launchpad.test/~u/+git/hello/+build/5",
		"proxy_url":           f.upstream,
		"revocation_endpoint": f.revURL,
		"use_fetch_service":   false,
		"git_repository":      f.repo.URL(),
		"git_path":            commit,
		"private":             false,
		"jobs":                jobs,
		"channels":            map[string]any{"lpci": "latest/edge"},
		"environment_variables": map[string]any{
			"PIP_INDEX_URL": "https://reader:" + ciE2EPIPPass + "@pypi.test/simple/",
			"CI_FLAVOUR":    "e2e",
		},
		"package_repositories": []any{"deb http://ppa.test/ubuntu jammy main"},
		"plugin_settings":      map[string]any{"miniconda_conda_channel": "https://conda.test/"},
		"secrets":              map[string]any{"auth": ciE2ESecret},
		"scan_malware":         false,
	}
}

func ciStage(jobs ...[2]any) []any {
	out := make([]any, len(jobs))
	for i, j := range jobs {
		out[i] = []any{j[0], int64(j[1].(int))}
	}
	return out
}

func startCIBuild(t testing.TB, a *snapAgent, f *snapFixture, id string, args map[string]any) {
	t.Helper()
	res, ok := a.call(t, "build", id, "ci", f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" || res[1] != id {
		t.Fatalf("build() = %#v", res)
	}
}

// ciJobs is status()["jobs"].
func ciJobs(t testing.TB, st map[string]any) map[string]map[string]any {
	t.Helper()
	raw, ok := st["jobs"].(map[string]any)
	if !ok {
		t.Fatalf("status() has no jobs struct: %#v", st["jobs"])
	}
	out := map[string]map[string]any{}
	for id, e := range raw {
		m, ok := e.(map[string]any)
		if !ok {
			t.Fatalf("jobs[%s] is %#v", id, e)
		}
		out[id] = m
	}
	return out
}

func sortedIDs(jobs map[string]map[string]any) string {
	ids := make([]string, 0, len(jobs))
	for id := range jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return strings.Join(ids, " ")
}

// checkCIJob checks one job's status entry against the filemap and the
// files behind it (fetched by SHA-1), as buildd-manager reads them, and
// returns the job's log and its seen file.
func checkCIJob(t *testing.T, a *snapAgent, st map[string]any, id, name string, index int, result string) (log, seen string) {
	t.Helper()
	e := ciJobs(t, st)[id]
	filemap, _ := st["filemap"].(map[string]any)
	if e["result"] != result {
		t.Errorf("%s result = %v, want %s", id, e["result"], result)
	}
	for _, item := range []string{"log", "properties"} {
		sum, _ := e[item].(string)
		if sum == "" || filemap[id+"."+item] != sum {
			t.Errorf("%s %s = %q, filemap %v", id, item, sum, filemap[id+"."+item])
		}
	}
	out, _ := e["output"].(map[string]any)
	base := fmt.Sprintf("%s-%d", name, index)
	want := []string{base + ".bin", "seen-" + base + ".txt"}
	sort.Strings(want)
	var got []string
	for n, sum := range out {
		got = append(got, n)
		if filemap[id+"/"+n] != sum {
			t.Errorf("%s output %s = %v, filemap %v", id, n, sum, filemap[id+"/"+n])
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s output = %q, want %q (no symlink, no FIFO)", id, got, want)
	}
	for _, n := range []string{id + "/link", id + "/pipe"} {
		if _, ok := filemap[n]; ok {
			t.Errorf("filemap has %s", n)
		}
	}
	props := string(a.fetch(t, e["properties"].(string)))
	if want := fmt.Sprintf(`{"job": "%s", "index": %d, "user": "buildd"}`, name, index); strings.TrimSpace(props) != want {
		t.Errorf("%s properties = %q, want %q", id, props, want)
	}
	if s, ok := out[base+".bin"].(string); ok {
		if bin := string(a.fetch(t, s)); bin != fmt.Sprintf("output of %s:%d\n", name, index) {
			t.Errorf("%s .bin = %q", id, bin)
		}
		if snapSHA1Hex(a.fetch(t, s)) != s {
			t.Errorf("%s: the file cache's %s is not that content's SHA-1", id, s)
		}
	}
	log = string(a.fetch(t, e["log"].(string)))
	if s, ok := out["seen-"+base+".txt"].(string); ok {
		seen = string(a.fetch(t, s))
	}
	return log, seen
}

// TestCIE2EStages: two stages, the second of three jobs (two of one
// matrix), every argument buildd-manager sends: OK; every job's log,
// properties and outputs are in status()["jobs"] and the filemap and
// fetched by SHA-1; status()["jobs"] grows while the build runs; lpci saw
// what run-ci gives it; no secret in the build log or a job's log.
func TestCIE2EStages(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, ".launchpad.yaml", ciLaunchpadYAML("build", "test", "lint"))
	// test:1 takes a while, so that the live status is seen mid-stage.
	f.repo.WriteFile(t, ".standin-sleep-test-1", "8")
	commit := f.repo.Commit(t, "ci")
	a := startCIAgent(t)
	a.ensureChroot(t, f)
	jobs := []any{ciStage([2]any{"build", 0}), ciStage([2]any{"test", 0}, [2]any{"test", 1}, [2]any{"lint", 0})}
	startCIBuild(t, a, f, "CIBUILD-1", ciBuildArgs(f, commit, jobs))

	// Live: while test:1 sleeps, build:0 and test:0 are there, complete.
	deadline := time.Now().Add(8 * time.Minute)
	for !strings.Contains(string(a.fetch(t, "buildlog")), "sleeping 8s as asked") {
		if st := a.status(t); st["builder_status"] != "BuilderStatus.BUILDING" {
			t.Fatalf("builder %v before test:1; log:\n%s", st["builder_status"], a.fetch(t, "buildlog"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("test:1 never started; log:\n%s", a.fetch(t, "buildlog"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	live := a.status(t)
	if got := sortedIDs(ciJobs(t, live)); got != "build:0 test:0" {
		t.Errorf("live jobs = %q, want build:0 test:0", got)
	}
	if e := ciJobs(t, live)["build:0"]; e["result"] != "SUCCEEDED" || e["log"] == nil {
		t.Errorf("live build:0 = %v", e)
	}

	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if got := sortedIDs(ciJobs(t, st)); got != "build:0 lint:0 test:0 test:1" {
		t.Errorf("jobs = %q", got)
	}
	wantFiles := []string{}
	for _, j := range []struct {
		id, name string
		index    int
	}{{"build:0", "build", 0}, {"test:0", "test", 0}, {"test:1", "test", 1}, {"lint:0", "lint", 0}} {
		wantFiles = append(wantFiles, j.id+".log", j.id+".properties", fmt.Sprintf("%s/%s-%d.bin", j.id, j.name, j.index), fmt.Sprintf("%s/seen-%s-%d.txt", j.id, j.name, j.index))
		jlog, seen := checkCIJob(t, a, st, j.id, j.name, j.index, "SUCCEEDED")
		if !strings.Contains(jlog, "lpci stand-in: running "+j.id+"\n") || !strings.Contains(jlog, "lpci stand-in: "+j.id+" done\n") {
			t.Errorf("%s log = %q", j.id, jlog)
		}
		for _, s := range []string{ciE2ESecret, ciE2EPIPPass, snapE2EPass} {
			if strings.Contains(jlog, s) {
				t.Errorf("%s's log shows the secret %q", j.id, s)
			}
		}
		for _, want := range []string{
			fmt.Sprintf("job %s\nindex %d\ncwd /build/tree\n", j.name, j.index),
			"user buildd:buildd groups buildd lxd\n", "gpu-nvidia no\n",
			"secrets-path /build/.launchpad-secrets.yaml\n",
			"repository deb http://ppa.test/ubuntu jammy main\n",
			"set-env CI_FLAVOUR=e2e\n", "set-env PIP_INDEX_URL=https://reader:" + ciE2EPIPPass + "@pypi.test/simple/\n",
			"plugin-setting miniconda_conda_channel=https://conda.test/\n",
			"secret auth sha256 " + sha256Hex(ciE2ESecret) + "\n",
			"env LANG=C.UTF-8\n", "env SHELL=/bin/sh\n", fmt.Sprintf("env http_proxy=http://10.10.10.1:%d/\n", a.proxyPort),
		} {
			if !strings.Contains(seen, want) {
				t.Errorf("%s: lpci did not see %q:\n%s", j.id, want, seen)
			}
		}
	}
	sort.Strings(wantFiles)
	if got := filemapNames(st); got != strings.Join(wantFiles, " ") {
		t.Errorf("filemap names = %q\nwant %q", got, strings.Join(wantFiles, " "))
	}
	for _, want := range []string{
		"RUN: apt-get -y install python3 socat git\n",
		"RUN: snap install lxd\n", "RUN: snap install --classic --channel=latest/edge lpci\n",
		"RUN: lxd init --auto\n", "RUN: chown -R buildd:buildd /build/tree\n",
		"Running test:1\n",
		"RUN: runuser -u buildd -g buildd -G lxd -- /bin/bash -o pipefail -c 'lpci -v run-one --output-directory /build/output lint 0 --package-repository",
		"Not gathering /build/output/build/0/files/pipe: not a regular file",
		"Revoking proxy token...\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, s := range []string{ciE2ESecret, ciE2EPIPPass, snapE2EPass} {
		if strings.Contains(log, s) {
			t.Errorf("the build log shows the secret %q", s)
		}
	}
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v, want %s", st["revision_id"], commit)
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations = %q", revs)
	}
	if snapContainerExists(ciE2EContainer()) {
		t.Errorf("container %s left after the build", ciE2EContainer())
	}
	if got := a.call(t, "clean"); got != "BuilderStatus.IDLE" {
		t.Errorf("clean() = %v", got)
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestCIE2EFailingJob: a job of a two-job stage fails: the stage's other
// job still runs, the build stops with the reference's message as
// PACKAGEFAIL, the later stage never runs, the failed job's log and
// outputs are still there.
func TestCIE2EFailingJob(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, ".launchpad.yaml", ciLaunchpadYAML("fail-unit", "docs", "never"))
	commit := f.repo.Commit(t, "ci fails")
	a := startCIAgent(t)
	a.ensureChroot(t, f)
	jobs := []any{ciStage([2]any{"fail-unit", 0}, [2]any{"docs", 0}), ciStage([2]any{"never", 0})}
	startCIBuild(t, a, f, "CIBUILD-2", ciBuildArgs(f, commit, jobs))
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if got := sortedIDs(ciJobs(t, st)); got != "docs:0 fail-unit:0" {
		t.Errorf("jobs = %q (never:0 must not run)", got)
	}
	jlog, _ := checkCIJob(t, a, st, "fail-unit:0", "fail-unit", 0, "FAILED")
	if !strings.Contains(jlog, "job fail-unit fails as asked") {
		t.Errorf("fail-unit:0 log = %q", jlog)
	}
	checkCIJob(t, a, st, "docs:0", "docs", 0, "SUCCEEDED")
	for _, want := range []string{"Job fail-unit:0 failed.\n", "Running docs:0\n", "Some jobs in ['fail-unit:0', 'docs:0'] failed; stopping.\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "Running never:0") {
		t.Errorf("the later stage ran")
	}
	if snapContainerExists(ciE2EContainer()) {
		t.Errorf("container left")
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations = %q", revs)
	}
	a.call(t, "clean")
}

// TestCIE2EAbortDuringJob aborts while a job runs: WAITING ABORTED, no
// later job, the token revoked, no container.
func TestCIE2EAbortDuringJob(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, ".launchpad.yaml", ciLaunchpadYAML("sleep-long", "after"))
	commit := f.repo.Commit(t, "slow ci")
	a := startCIAgent(t)
	a.ensureChroot(t, f)
	jobs := []any{ciStage([2]any{"sleep-long", 0}), ciStage([2]any{"after", 0})}
	startCIBuild(t, a, f, "CIBUILD-3", ciBuildArgs(f, commit, jobs))
	deadline := time.Now().Add(8 * time.Minute)
	for !strings.Contains(string(a.fetch(t, "buildlog")), "sleeping 600s as asked") {
		if st := a.status(t); st["builder_status"] != "BuilderStatus.BUILDING" {
			t.Fatalf("builder %v before the sleep; log:\n%s", st["builder_status"], a.fetch(t, "buildlog"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never started; log:\n%s", a.fetch(t, "buildlog"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := a.call(t, "abort"); got != "BuilderStatus.ABORTING" {
		t.Errorf("abort() = %v", got)
	}
	st := a.waitState(t, "BuilderStatus.WAITING", 3*time.Minute)
	log := string(a.fetch(t, "buildlog"))
	if st["build_status"] != "BuildStatus.ABORTED" {
		t.Errorf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if strings.Contains(log, "Running after:0") {
		t.Errorf("a job ran after the abort")
	}
	if snapContainerExists(ciE2EContainer()) {
		t.Errorf("container left after abort")
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations after abort = %q, want one", revs)
	}
	a.call(t, "clean")
}

// TestCIE2ELocalBuild runs `buildd-agent build ci` on a local checkout
// (the same manager in-process; the stages read from .launchpad.yaml's
// pipeline) and checks every job's files and summary.json in --output.
func TestCIE2ELocalBuild(t *testing.T) {
	f := newSnapFixture(t)
	f.repo.WriteFile(t, ".launchpad.yaml", "pipeline:\n  - build\n  - [test, lint]\n"+strings.TrimPrefix(ciLaunchpadYAML("build", "test", "lint"), "pipeline:\n  - build\n  - test\n  - lint\n"))
	commit := f.repo.Commit(t, "local ci")
	keyFile := f.trustedKeyFile(t)
	secrets := filepath.Join(t.TempDir(), "secrets.yaml")
	os.WriteFile(secrets, []byte("auth: "+ciE2ESecret+"\n"), 0o600)
	state := t.TempDir()
	conf := writeLXDAgentConfig(t, state, ciE2EArch, snapFreePort(t, "127.0.0.1"), snapFreePort(t, "10.10.10.1"), ciE2EProfile, fmt.Sprintf("instance = %q\n", ciE2EInstance))
	out := filepath.Join(t.TempDir(), "out")
	t.Cleanup(ciCleanupLXD)
	cmd := exec.Command(snapE2EBinary(t), "build", "ci", "--config", conf,
		"--git-repository", f.repo.Work, "--chroot", f.chrootPath,
		"--channel", "lpci=latest/edge", "--env", "PIP_INDEX_URL=https://reader:"+ciE2EPIPPass+"@pypi.test/simple/",
		"--secrets-file", secrets, "--archive", f.archiveLine, "--trusted-key", keyFile,
		"--series", ciE2ESeries, "--arch", ciE2EArch, "--output", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build ci: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "stages from .launchpad.yaml: --stage build:0 --stage test:0,lint:0") {
		t.Errorf("stderr lacks the stages read:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "==> [4/8] job build:0\n") || !strings.Contains(stdout.String(), "lpci stand-in: lint:0 done") {
		t.Errorf("terminal output lacks the phase line or the job's output:\n%s", stdout.String())
	}
	for _, s := range []string{ciE2ESecret, ciE2EPIPPass} {
		if strings.Contains(stdout.String()+stderr.String(), s) {
			t.Errorf("the terminal shows the secret %q", s)
		}
	}
	sum := readLocalSummary(t, out)
	if sum.Status != "BuildStatus.OK" || sum.Revision != commit {
		t.Errorf("summary = %s", sum.raw)
	}
	names := sum.names()
	var want []string
	for _, j := range []string{"build", "test", "lint"} {
		id := j + ":0"
		want = append(want, id+".log", id+".properties", id+"_"+j+"-0.bin", id+"_seen-"+j+"-0.txt")
		e := sum.Extra.Jobs[id]
		if e["result"] != "SUCCEEDED" || e["log"] == nil || e["properties"] == nil || len(e["output"].(map[string]any)) != 2 {
			t.Errorf("jobs[%s] = %v", id, e)
		}
	}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("artifacts = %q\nwant %q", names, want)
	}
	seen, _ := os.ReadFile(filepath.Join(out, "lint:0_seen-lint-0.txt"))
	if !strings.Contains(string(seen), "secret auth sha256 "+sha256Hex(ciE2ESecret)+"\n") || !strings.Contains(string(seen), "user buildd:buildd groups buildd lxd\n") {
		t.Errorf("lint saw:\n%s", seen)
	}
	if snapContainerExists(ciE2EContainer()) {
		t.Errorf("container left after a local build")
	}
}

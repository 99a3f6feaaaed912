package builders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// ciBaseArgs are ci arguments shaped as buildd-manager sends them
// (cibuildbehaviour.py): two stages, the DistributionSourcePackage extras.
func ciBaseArgs() map[string]any {
	return map[string]any{
		"series":              "jammy",
		"arch_tag":            "amd64",
		"archives":            []any{"deb http://archive.example/ubuntu jammy main"},
		"trusted_keys":        []any{},
		"build_url":           "https://launchpad.example/~u/+git/hello/+build/1",
		"proxy_url":           "http://user:s3cret@127.0.0.1:3128",
		"revocation_endpoint": "http://127.0.0.1:9/tokens/user",
		"use_fetch_service":   false,
		"git_repository":      "https://git.example/hello.git",
		"git_path":            "0123456789abcdef0123456789abcdef01234567",
		"private":             false,
		"jobs":                []any{[]any{[]any{"build", int64(0)}}, []any{[]any{"test", int64(0)}, []any{"test", int64(1)}}},
		"channels":            map[string]any{"lpci": "latest/edge", "core22": "latest/stable"},
		"package_repositories": []any{
			"deb https://canonical:rep0pass@private-ppa.example/ubuntu jammy main",
			"deb http://archive.example/extra jammy main",
		},
		"environment_variables": map[string]any{"PIP_INDEX_URL": "https://user:pip-pass@pypi.example/simple/", "A": "1 2"},
		"plugin_settings":       map[string]any{"miniconda_conda_channel": "https://conda.example/", "b": "x=y"},
		"secrets":               map[string]any{"auth": "user:t0ken-value", "other": "it's \"quoted\""},
		"scan_malware":          false,
		"builder_constraints":   []any{"gpu-nvidia"},
	}
}

// ciJobBehaviour is what a job's lpci does in the fake target.
type ciJobBehaviour struct {
	code  int
	err   error
	files map[string]string // under files/, relative
	// plant is called with the job's output directory instead of files.
	plant func(ft *fakeTarget, dir string)
}

// ciFake scripts a fake target for ci builds: lpci (found by the job
// directory its tee writes to) writes the job's log, properties and files.
type ciFake struct {
	jobs map[string]ciJobBehaviour
	// seen records status()["jobs"] as each lpci run started.
	seen map[string]map[string]any
	// fail makes the first command whose argv joined starts with a key
	// exit with that code (or not run, with code -1).
	fail map[string]int
}

func runCI(t *testing.T, args map[string]any, cf *ciFake, prep func(*fakeTarget, *fakeEnv)) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	m, err := NewCIManager(Request{BuildID: "CIBUILD-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
	if err != nil {
		t.Fatalf("NewCIManager: %v", err)
	}
	ft := newFakeTarget()
	fe := newFakeEnv(ft)
	if cf.seen == nil {
		cf.seen = map[string]map[string]any{}
	}
	ft.onRun = func(c recordedCommand) fakeRun {
		joined := strings.Join(c.Args, " ")
		for prefix, code := range cf.fail {
			if strings.HasPrefix(joined, prefix) {
				if code < 0 {
					return fakeRun{err: errFake}
				}
				return fakeRun{code: code}
			}
		}
		if len(c.Args) == 3 && c.Args[0] == "apt-cache" {
			if c.Args[2] == "snapd" {
				return fakeRun{stdout: "Package: snapd\nVersion: 2.60\n"}
			}
			return fakeRun{code: 100}
		}
		if c.Args[0] != "runuser" || !strings.Contains(joined, "lpci -v run-one") {
			return fakeRun{}
		}
		for _, stage := range m.(*CIManager).Args().Jobs {
			for _, job := range stage {
				dir := ciJobDir(job)
				if !strings.HasSuffix(c.Args[len(c.Args)-1], "| tee "+ShellQuote(dir+"/log")) {
					continue
				}
				if jobs, ok := fe.status["jobs"].(map[string]any); ok {
					cf.seen[job.ID()] = jobs
				}
				jb := cf.jobs[job.ID()]
				if jb.err != nil {
					return fakeRun{err: jb.err}
				}
				ft.put(dir+"/log", "log of "+job.ID()+"\n", 0o644)
				ft.put(dir+"/properties", `{"job": "`+job.ID()+`"}`, 0o644)
				for rel, data := range jb.files {
					ft.put(dir+"/files/"+rel, data, 0o644)
				}
				if jb.plant != nil {
					jb.plant(ft, dir)
				}
				return fakeRun{code: jb.code, stdout: "lpci output of " + job.ID() + "\n"}
			}
		}
		t.Errorf("lpci run for no job: %q", c.Args)
		return fakeRun{code: 1}
	}
	if prep != nil {
		prep(ft, fe)
	}
	return ft, fe, m.Run(context.Background(), &fe.Env)
}

// ciSum is the fake file cache's "SHA-1" of data (newFakeEnv's).
func ciSum(data string) string { return fmt.Sprintf("%040x", len(data)) }

func TestCIHappyPath(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{".launchpad.yaml": "pipeline: [build]\n"}
	cf := &ciFake{jobs: map[string]ciJobBehaviour{
		"build:0": {files: map[string]string{"hello.whl": "WHEEL", "sub/dir/hello.tar.gz": "TARBALL"}},
		"test:1":  {files: map[string]string{"report.xml": "REPORT"}},
	}}
	ft, fe, res := runCI(t, ciBaseArgs(), cf, nil)
	if res.Status != BuildOK {
		t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
	}
	wantPrefix := []string{
		"apt-cache show snapd", "apt-cache show fuse", "apt-cache show squashfuse",
		"apt-get -y install python3 socat snapd git",
		"snap install --channel=latest/stable core22",
		"snap install lxd",
		"snap install --classic --channel=latest/edge lpci",
		"lxd init --auto",
		"mkdir -p /build",
		"chown -R buildd:buildd /build/tree",
		"mkdir -p /build/output/build/0", "chown -R buildd:buildd /build/output",
	}
	got := ft.argvs()
	for len(got) > 0 && strings.HasPrefix(got[0], "/usr/bin/apt-get") {
		got = got[1:] // ConfigureArchives' update and upgrade
	}
	if diff := cmp.Diff(wantPrefix, got[:min(len(got), len(wantPrefix))]); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	lpci := []string{"lpci", "-v", "run-one", "--output-directory", "/build/output", "build", "0",
		"--package-repository", "deb https://canonical:rep0pass@private-ppa.example/ubuntu jammy main",
		"--package-repository", "deb http://archive.example/extra jammy main",
		"--set-env", "A=1 2", "--set-env", "PIP_INDEX_URL=https://user:pip-pass@pypi.example/simple/",
		"--plugin-setting", "b=x=y", "--plugin-setting", "miniconda_conda_channel=https://conda.example/",
		"--secrets", "/build/.launchpad-secrets.yaml", "--gpu-nvidia"}
	quoted := make([]string, len(lpci))
	for i, a := range lpci {
		quoted[i] = ShellQuote(a)
	}
	wantRun := append(append([]string(nil), ciBuilddPrefix...), "/bin/bash", "-o", "pipefail", "-c",
		strings.Join(quoted, " ")+" 2>&1 | tee /build/output/build/0/log")
	run, ok := ft.command("runuser")
	if !ok {
		t.Fatal("no runuser command")
	}
	if diff := cmp.Diff(wantRun, run.Args); diff != "" {
		t.Errorf("lpci command (-want +got):\n%s", diff)
	}
	if run.Dir != "/build/tree" {
		t.Errorf("lpci ran in %q", run.Dir)
	}
	env := envMap(run.Env)
	if env["LANG"] != "C.UTF-8" || env["SHELL"] != "/bin/sh" || env["http_proxy"] != "http://10.10.10.1:8222/" {
		t.Errorf("lpci env = %q", run.Env)
	}
	var jobsRun []string
	for _, a := range got {
		if strings.HasPrefix(a, "mkdir -p /build/output/") {
			jobsRun = append(jobsRun, strings.TrimPrefix(a, "mkdir -p /build/output/"))
		}
	}
	if diff := cmp.Diff([]string{"build/0", "test/0", "test/1"}, jobsRun); diff != "" {
		t.Errorf("jobs run (-want +got):\n%s", diff)
	}

	secrets := ft.files[ciSecretsPath]
	if secrets == nil || string(secrets.data) != "\"auth\": \"user:t0ken-value\"\n\"other\": \"it's \\\"quoted\\\"\"\n" || secrets.uid != 0 {
		t.Errorf("secrets file = %+v", secrets)
	}
	for _, w := range []string{"user:t0ken-value", "it's \"quoted\"", "rep0pass", "pip-pass", "s3cret"} {
		found := false
		for _, s := range fe.secrets {
			found = found || s == w
		}
		if !found {
			t.Errorf("%q is not masked (secrets %q)", w, fe.secrets)
		}
	}
	if !contains(ft.spec.Constraints, "gpu-nvidia") {
		t.Errorf("target constraints = %q", ft.spec.Constraints)
	}

	wantFiles := []string{"build:0.log", "build:0.properties", "build:0/hello.whl", "build:0/hello.tar.gz",
		"test:0.log", "test:0.properties", "test:1.log", "test:1.properties", "test:1/report.xml"}
	if diff := cmp.Diff(wantFiles, fe.waitOrder); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	entry := func(id string, output map[string]any) map[string]any {
		e := map[string]any{"log": ciSum("log of " + id + "\n"), "properties": ciSum(`{"job": "` + id + `"}`), "result": "SUCCEEDED"}
		if output != nil {
			e["output"] = output
		}
		return e
	}
	wantJobs := map[string]any{
		"build:0": entry("build:0", map[string]any{"hello.whl": ciSum("WHEEL"), "hello.tar.gz": ciSum("TARBALL")}),
		"test:0":  entry("test:0", nil),
		"test:1":  entry("test:1", map[string]any{"report.xml": ciSum("REPORT")}),
	}
	if diff := cmp.Diff(wantJobs, fe.status["jobs"]); diff != "" {
		t.Errorf("status jobs (-want +got):\n%s", diff)
	}
	// Live: each job saw the entries of the jobs before it, and nothing
	// else; "jobs" is there ({}) before the first job ends.
	wantSeen := map[string]map[string]any{
		"build:0": {},
		"test:0":  {"build:0": wantJobs["build:0"]},
		"test:1":  {"build:0": wantJobs["build:0"], "test:0": wantJobs["test:0"]},
	}
	if diff := cmp.Diff(wantSeen, cf.seen); diff != "" {
		t.Errorf("live status jobs (-want +got):\n%s", diff)
	}
	if fe.status["revision_id"] != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("revision_id = %v", fe.status["revision_id"])
	}
	log := fe.logText()
	for _, w := range []string{"Running install phase...\n", "Running repo phase...\n", "Running job phase...\n", "Running build:0\n", "Running test:1\n", "lpci output of test:0\n"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q", w)
		}
	}
	if diff := cmp.Diff([]string{"create", "start", "stop", "remove"}, ft.calls); diff != "" {
		t.Errorf("lifecycle (-want +got):\n%s", diff)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestCIMinimalArgs(t *testing.T) {
	installSeams(t)
	args := map[string]any{
		"series": "jammy", "arch_tag": "amd64",
		"git_repository": "https://git.example/hello.git", "git_path": "main",
		"jobs": []any{[]any{[]any{"build", int64(0)}}},
	}
	ft, fe, res := runCI(t, args, &ciFake{}, nil)
	if res.Status != BuildOK {
		t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
	}
	run, _ := ft.command("runuser")
	want := "lpci -v run-one --output-directory /build/output build 0 2>&1 | tee /build/output/build/0/log"
	if got := run.Args[len(run.Args)-1]; got != want {
		t.Errorf("lpci command = %q, want %q", got, want)
	}
	if _, ok := ft.files[ciSecretsPath]; ok {
		t.Errorf("secrets file written without secrets")
	}
	if _, ok := ft.command("apt-get", "-y", "install", "snapd", "git"); !ok {
		t.Errorf("no proxy deps expected without a proxy: %q", ft.argvs())
	}
	// Empty secrets still go to lpci, as ci.py's "is not None".
	args["secrets"] = map[string]any{}
	ft, _, _ = runCI(t, args, &ciFake{}, nil)
	if f := ft.files[ciSecretsPath]; f == nil || string(f.data) != "{}\n" {
		t.Errorf("empty secrets file = %+v", f)
	}
}

func TestCIStageFailures(t *testing.T) {
	two := []any{[]any{[]any{"a", int64(0)}, []any{"b", int64(0)}}, []any{[]any{"c", int64(0)}}}
	one := []any{[]any{[]any{"a", int64(0)}}, []any{[]any{"c", int64(0)}}}
	cases := []struct {
		name    string
		jobs    []any
		behave  map[string]ciJobBehaviour
		fail    map[string]int
		status  BuildStatus
		ran     []string
		results map[string]string
		logs    []string
		notLogs []string
	}{
		{name: "single-job stage fails at once", jobs: one, behave: map[string]ciJobBehaviour{"a:0": {code: 1}},
			status: BuildPackageFail, ran: []string{"a/0"}, results: map[string]string{"a:0": "FAILED"},
			logs: []string{"Job failed: lpci exited with status 1\n", "Job a:0 failed.\n"}, notLogs: []string{"Some jobs"}},
		{name: "a stage with a failure runs its other jobs then stops", jobs: two, behave: map[string]ciJobBehaviour{"a:0": {code: 1}},
			status: BuildPackageFail, ran: []string{"a/0", "b/0"}, results: map[string]string{"a:0": "FAILED", "b:0": "SUCCEEDED"},
			logs: []string{"Job a:0 failed.\n", "Some jobs in ['a:0', 'b:0'] failed; stopping.\n"}},
		{name: "the last job of a stage fails", jobs: two, behave: map[string]ciJobBehaviour{"b:0": {code: 2}},
			status: BuildPackageFail, ran: []string{"a/0", "b/0"}, results: map[string]string{"a:0": "SUCCEEDED", "b:0": "FAILED"},
			logs: []string{"Job b:0 failed.\n", "Some jobs in ['a:0', 'b:0'] failed; stopping.\n"}},
		{name: "lpci cannot be run", jobs: two, behave: map[string]ciJobBehaviour{"a:0": {err: errFake}},
			status: BuildBuilderFail, ran: []string{"a/0"}, results: map[string]string{"a:0": "FAILED"},
			logs: []string{"cannot run lpci"}, notLogs: []string{"Some jobs"}},
		{name: "the output directory cannot be made", jobs: one, fail: map[string]int{"mkdir -p /build/output/a/0": 1},
			status: BuildPackageFail, ran: []string{"a/0"}, results: map[string]string{"a:0": "FAILED"},
			logs: []string{"Job a:0 failed.\n"}},
		{name: "all succeed", jobs: two, status: BuildOK, ran: []string{"a/0", "b/0", "c/0"},
			results: map[string]string{"a:0": "SUCCEEDED", "b:0": "SUCCEEDED", "c:0": "SUCCEEDED"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			installSeams(t)
			args := ciBaseArgs()
			args["jobs"] = tc.jobs
			ft, fe, res := runCI(t, args, &ciFake{jobs: tc.behave, fail: tc.fail}, nil)
			if res.Status != tc.status {
				t.Fatalf("status = %s, want %s; log:\n%s", res.Status, tc.status, fe.logText())
			}
			var ran []string
			for _, a := range ft.argvs() {
				if strings.HasPrefix(a, "mkdir -p /build/output/") {
					ran = append(ran, strings.TrimPrefix(a, "mkdir -p /build/output/"))
				}
			}
			if diff := cmp.Diff(tc.ran, ran); diff != "" {
				t.Errorf("jobs run (-want +got):\n%s", diff)
			}
			jobs, _ := fe.status["jobs"].(map[string]any)
			got := map[string]string{}
			for id, e := range jobs {
				got[id], _ = e.(map[string]any)["result"].(string)
			}
			if diff := cmp.Diff(tc.results, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			// A failed job's log is gathered too.
			for id := range tc.results {
				if e := jobs[id].(map[string]any); tc.behave[id].err == nil && tc.fail == nil && e["log"] == nil {
					t.Errorf("job %s has no log: %v", id, e)
				}
			}
			log := fe.logText()
			for _, w := range tc.logs {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			for _, w := range tc.notLogs {
				if strings.Contains(log, w) {
					t.Errorf("log has %q:\n%s", w, log)
				}
			}
			if !contains(ft.calls, "remove") {
				t.Errorf("not torn down: %q", ft.calls)
			}
		})
	}
}

func TestCIPrepareFailures(t *testing.T) {
	cases := []struct {
		name        string
		fail        map[string]int
		checkoutErr error
		newErr      error
		status      BuildStatus
		logs        []string
	}{
		{name: "apt-get", fail: map[string]int{"apt-get -y install": 100}, status: BuildPackageFail,
			logs: []string{"Install failed: apt-get -y install python3 socat snapd git failed with exit status 100\nPreparation failed.\n"}},
		{name: "snap install lpci", fail: map[string]int{"snap install --classic": 1}, status: BuildPackageFail,
			logs: []string{"Install failed: ", "Preparation failed.\n"}},
		{name: "lxd init", fail: map[string]int{"lxd init --auto": 1}, status: BuildPackageFail,
			logs: []string{"Install failed: lxd init --auto failed with exit status 1\nPreparation failed.\n"}},
		{name: "checkout", checkoutErr: errors.New("no such commit"), status: BuildPackageFail,
			logs: []string{"VCS setup failed: ", "no such commit", "Preparation failed.\n"}},
		{name: "chown", fail: map[string]int{"chown -R buildd:buildd /build/tree": 1}, status: BuildPackageFail,
			logs: []string{"VCS setup failed: chown -R buildd:buildd /build/tree failed with exit status 1\nPreparation failed.\n"}},
		{name: "apt-cache cannot be run", fail: map[string]int{"apt-cache": -1}, status: BuildBuilderFail,
			logs: []string{"cannot run apt-cache"}},
		{name: "lxd init cannot be run", fail: map[string]int{"lxd init": -1}, status: BuildBuilderFail,
			logs: []string{"cannot run lxd"}},
		{name: "the target cannot be made", newErr: errors.New("no LXD"), status: BuildChrootFail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := installSeams(t)
			s.checkoutErr = tc.checkoutErr
			ft, fe, res := runCI(t, ciBaseArgs(), &ciFake{fail: tc.fail}, func(ft *fakeTarget, fe *fakeEnv) { fe.newErr = tc.newErr })
			if res.Status != tc.status {
				t.Fatalf("status = %s, want %s; log:\n%s", res.Status, tc.status, fe.logText())
			}
			log := fe.logText()
			for _, w := range tc.logs {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			if tc.status != BuildPackageFail && strings.Contains(log, "Preparation failed.") {
				t.Errorf("%s says Preparation failed.", tc.status)
			}
			for _, a := range ft.argvs() {
				if strings.HasPrefix(a, "runuser") {
					t.Errorf("a job ran after a failed preparation: %q", a)
				}
			}
			if jobs, ok := fe.status["jobs"].(map[string]any); !ok || len(jobs) != 0 {
				t.Errorf("status jobs = %#v, want {}", fe.status["jobs"])
			}
		})
	}
}

func TestCIHostileOutputs(t *testing.T) {
	cases := []struct {
		name   string
		plant  func(ft *fakeTarget, dir string)
		output any
		logs   []string
	}{
		{name: "symlinks, a FIFO and a device beside regular files", plant: func(ft *fakeTarget, dir string) {
			ft.put(dir+"/files/ok.txt", "OK", 0o644)
			ft.put(dir+"/files/a/b/deep.txt", "DEEP", 0o644)
			ft.symlink(dir+"/files/passwd", "/etc/passwd")
			ft.symlink(dir+"/files/etc", "/etc")
			ft.put("/etc/shadow", "SECRET", 0o600)
			ft.put(dir+"/files/fifo", "", fs.ModeNamedPipe|0o644)
			ft.put(dir+"/files/null", "", fs.ModeDevice|fs.ModeCharDevice|0o666)
		}, output: map[string]any{"ok.txt": ciSum("OK"), "deep.txt": ciSum("DEEP")},
			logs: []string{"Not gathering /build/output/j/0/files/fifo: not a regular file", "Not gathering /build/output/j/0/files/null: not a regular file"}},
		{name: "files is a symlink", plant: func(ft *fakeTarget, dir string) {
			ft.symlink(dir+"/files", "/etc")
			ft.put("/etc/shadow", "SECRET", 0o600)
		}, logs: []string{"Not gathering under /build/output/j/0/files: not a directory"}},
		{name: "the job directory is a symlink", plant: func(ft *fakeTarget, dir string) {
			ft.mu.Lock()
			for p := range ft.files {
				if strings.HasPrefix(p, "/build/output/j/") {
					delete(ft.files, p)
				}
			}
			ft.mu.Unlock()
			ft.symlink("/build/output/j", "/etc")
			ft.put("/etc/0/log", "not the job's", 0o644)
		}, logs: []string{"Not gathering under /build/output/j: not a directory"}},
		{name: "log and properties are not regular files", plant: func(ft *fakeTarget, dir string) {
			ft.symlink(dir+"/log", "/etc/shadow")
			ft.put(dir+"/properties", "", fs.ModeNamedPipe|0o644)
			ft.put("/etc/shadow", "SECRET", 0o600)
		}, logs: []string{"Not gathering /build/output/j/0/log: not a regular file", "Not gathering /build/output/j/0/properties: not a regular file"}},
		{name: "too deep", plant: func(ft *fakeTarget, dir string) {
			ft.put(dir+"/files/"+strings.Repeat("d/", ciMaxDepth+1)+"x", "X", 0o644)
			ft.put(dir+"/files/"+strings.Repeat("d/", ciMaxDepth-1)+"y", "Y", 0o644)
		}, output: map[string]any{"y": ciSum("Y")}, logs: []string{"more than 32 directories deep"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			installSeams(t)
			args := ciBaseArgs()
			args["jobs"] = []any{[]any{[]any{"j", int64(0)}}}
			cf := &ciFake{jobs: map[string]ciJobBehaviour{"j:0": {plant: tc.plant}}}
			_, fe, res := runCI(t, args, cf, nil)
			if res.Status != BuildOK {
				t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
			}
			for name, data := range fe.waiting {
				if strings.Contains(string(data), "SECRET") || strings.Contains(string(data), "not the job's") {
					t.Errorf("gathered %s from outside the job: %q", name, data)
				}
				if name != "j:0.log" && name != "j:0.properties" && !strings.HasPrefix(name, "j:0/") || strings.Count(name, "/") > 1 {
					t.Errorf("file cache name %q", name)
				}
			}
			e := fe.status["jobs"].(map[string]any)["j:0"].(map[string]any)
			if diff := cmp.Diff(tc.output, e["output"]); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			log := fe.logText()
			for _, w := range tc.logs {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
		})
	}
}

func TestCIGatherFailure(t *testing.T) {
	installSeams(t)
	_, fe, res := runCI(t, ciBaseArgs(), &ciFake{}, func(ft *fakeTarget, fe *fakeEnv) { fe.addErr = errors.New("disk full") })
	if res.Status != BuildPackageFail || !strings.Contains(fe.logText(), "Failed to gather results: ") {
		t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
	}
}

func TestCIScanWiring(t *testing.T) {
	installSeams(t)
	oldPrep, oldScan := ciPrepareScannerFunc, ciScanOutputFunc
	t.Cleanup(func() { ciPrepareScannerFunc, ciScanOutputFunc = oldPrep, oldScan })
	var prepared, scanned []string
	ciPrepareScannerFunc = func(ctx context.Context, run ciRunner, appendFile func(context.Context, string, []byte) error, url string) error {
		prepared = append(prepared, url)
		return nil
	}
	ciScanOutputFunc = func(ctx context.Context, run ciRunner, dir string, env []string) (bool, error) {
		scanned = append(scanned, dir)
		return dir != "/build/output/test/1", nil
	}
	args := ciBaseArgs()
	args["scan_malware"] = true
	ft, fe, res := runCI(t, args, &ciFake{}, func(ft *fakeTarget, fe *fakeEnv) {
		fe.Config.ClamAVDatabaseURL = "http://clamav.example/"
	})
	if res.Status != BuildPackageFail {
		t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
	}
	if _, ok := ft.command("apt-get", "-y", "install", "python3", "socat", "snapd", "git", "clamav"); !ok {
		t.Errorf("clamav not installed: %q", ft.argvs())
	}
	if diff := cmp.Diff([]string{"http://clamav.example/"}, prepared); diff != "" {
		t.Errorf("prepare (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/build/output/build/0", "/build/output/test/0", "/build/output/test/1"}, scanned); diff != "" {
		t.Errorf("scans (-want +got):\n%s", diff)
	}
	jobs := fe.status["jobs"].(map[string]any)
	if r := jobs["test:1"].(map[string]any)["result"]; r != "FAILED" {
		t.Errorf("test:1 result = %v", r)
	}
	if !strings.Contains(fe.logText(), "Some jobs in ['test:0', 'test:1'] failed; stopping.") {
		t.Errorf("log:\n%s", fe.logText())
	}
}

func TestCIAbort(t *testing.T) {
	installSeams(t)
	m, err := NewCIManager(Request{BuildID: "CIBUILD-1", Args: ciBaseArgs()})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.blockRun = "runuser"
	fe := newFakeEnv(ft)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { done <- m.Run(ctx, &fe.Env) }()
	<-ft.running
	cancel()
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after abort")
	}
	if res.Status != BuildAborted {
		t.Errorf("status = %s", res.Status)
	}
	if !contains(ft.calls, "remove") {
		t.Errorf("aborted build not torn down: %q", ft.calls)
	}
	for _, a := range ft.argvs() {
		if strings.HasPrefix(a, "mkdir -p /build/output/test") {
			t.Errorf("a job ran after abort: %q", a)
		}
	}
}

func TestCIPhases(t *testing.T) {
	installSeams(t)
	m, err := NewCIManager(Request{BuildID: "CIBUILD-1", Args: ciBaseArgs()})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start target", "install", "fetch source", "job build:0", "job test:0", "job test:1", "stop proxy", "clean up"}
	if diff := cmp.Diff(want, m.(*CIManager).phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if up, ri := m.ProxyInfo(); up || ri != "http://127.0.0.1:9/tokens/user" {
		t.Errorf("ProxyInfo = %v %q", up, ri)
	}
}

func TestCIArgs(t *testing.T) {
	a, err := ParseCIArgs(ciBaseArgs())
	if err != nil {
		t.Fatal(err)
	}
	wantJobs := [][]CIJob{{{"build", 0}}, {{"test", 0}, {"test", 1}}}
	if diff := cmp.Diff(wantJobs, a.Jobs); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if !a.GPUNvidia() || a.GitPath != "0123456789abcdef0123456789abcdef01234567" || a.Secrets["auth"] != "user:t0ken-value" || len(a.PackageRepositories) != 2 {
		t.Errorf("args = %+v", a)
	}
	// XML-RPC <nil/> for the optional ones is as if absent.
	nilArgs := ciBaseArgs()
	for _, k := range []string{"secrets", "environment_variables", "plugin_settings", "package_repositories", "channels", "scan_malware", "builder_constraints"} {
		nilArgs[k] = nil
	}
	if a, err := ParseCIArgs(nilArgs); err != nil || a.Secrets != nil || a.GPUNvidia() {
		t.Errorf("nil args: %+v, %v", a, err)
	}

	job := func(name any, index any) []any { return []any{name, index} }
	stages := func(s ...[]any) []any {
		out := make([]any, len(s))
		for i, v := range s {
			out[i] = v
		}
		return out
	}
	bad := []struct {
		name string
		set  map[string]any
		del  string
		want string
	}{
		{name: "no jobs", del: "jobs", want: "\"jobs\": is required"},
		{name: "nil jobs", set: map[string]any{"jobs": nil}, want: "\"jobs\": is required"},
		{name: "jobs a string", set: map[string]any{"jobs": "build:0"}, want: "\"jobs\": must be an array of stages, each an array of [job_name, job_index] pairs, not string"},
		{name: "no stages", set: map[string]any{"jobs": []any{}}, want: "must request at least one job"},
		{name: "a stage not an array", set: map[string]any{"jobs": []any{"build"}}, want: "stage 0 must be an array of [job_name, job_index] pairs, not string"},
		{name: "an empty stage", set: map[string]any{"jobs": stages([]any{job("a", int64(0))}, []any{})}, want: "stage 1 is empty"},
		{name: "stages of pairs, not of jobs", set: map[string]any{"jobs": []any{job("a", int64(0))}}, want: "stage 0, job 0: must be a [job_name, job_index] pair, not string"},
		{name: "a job of three", set: map[string]any{"jobs": stages([]any{[]any{"a", int64(0), int64(1)}})}, want: "stage 0, job 0: must be a [job_name, job_index] pair, not an array of 3"},
		{name: "a job a struct", set: map[string]any{"jobs": stages([]any{map[string]any{"a": int64(0)}})}, want: "stage 0, job 0: must be a [job_name, job_index] pair"},
		{name: "name not a string", set: map[string]any{"jobs": stages([]any{job(int64(1), int64(0))})}, want: "job_name must be a string, not integer"},
		{name: "index a string", set: map[string]any{"jobs": stages([]any{job("a", "0")})}, want: "job_index must be an integer, not string"},
		{name: "index a boolean", set: map[string]any{"jobs": stages([]any{job("a", true)})}, want: "job_index must be an integer, not boolean"},
		{name: "negative index", set: map[string]any{"jobs": stages([]any{job("a", int64(-1))})}, want: "job_index -1 is out of range"},
		{name: "huge index", set: map[string]any{"jobs": stages([]any{job("a", int64(1)<<40)})}, want: "is out of range"},
		{name: "empty name", set: map[string]any{"jobs": stages([]any{job("", int64(0))})}, want: "job_name must not be empty"},
		{name: "name with a slash", set: map[string]any{"jobs": stages([]any{job("../x", int64(0))})}, want: "must not contain '/'"},
		{name: "name ..", set: map[string]any{"jobs": stages([]any{job("..", int64(0))})}, want: "is not a job name"},
		{name: "name an option", set: map[string]any{"jobs": stages([]any{job("--help", int64(0))})}, want: "must not start with '-'"},
		{name: "name with a newline", set: map[string]any{"jobs": stages([]any{job("a\nb", int64(0))})}, want: "control characters"},
		{name: "name not UTF-8", set: map[string]any{"jobs": stages([]any{job("a\xff", int64(0))})}, want: "not valid UTF-8"},
		{name: "a job twice", set: map[string]any{"jobs": stages([]any{job("a", int64(0))}, []any{job("a", int64(0))})}, want: "stage 1, job 0: job a:0 is requested twice"},
		{name: "no source", del: "git_repository", want: "\"git_repository\": is required"},
		{name: "branch and git", set: map[string]any{"branch": "lp:hello"}, want: "give branch or git_repository, not both"},
		{name: "bad channel", set: map[string]any{"channels": map[string]any{"lpci": "-x"}}, want: "is not a channel"},
		{name: "bad snap", set: map[string]any{"channels": map[string]any{"LPCI": "edge"}}, want: "is not a snap name"},
		{name: "secrets a list", set: map[string]any{"secrets": []any{"a"}}, want: "\"secrets\": must be a struct of strings"},
		{name: "secret not a string", set: map[string]any{"secrets": map[string]any{"a": int64(1)}}, want: "secrets"},
		{name: "secret key with =", set: map[string]any{"plugin_settings": map[string]any{"a=b": "c"}}, want: "\"plugin_settings\": \"a=b\" is not a valid key"},
		{name: "env key with =", set: map[string]any{"environment_variables": map[string]any{"A=B": "c"}}, want: "is not a variable name"},
		{name: "env value with NUL", set: map[string]any{"environment_variables": map[string]any{"A": "x\x00"}}, want: "contains a NUL byte"},
		{name: "repository with a newline", set: map[string]any{"package_repositories": []any{"deb http://x y main\ndeb http://evil z main"}}, want: "element 0 must be one non-empty sources.list line"},
		{name: "repositories a string", set: map[string]any{"package_repositories": "deb http://x y main"}, want: "\"package_repositories\": must be an array of strings"},
		{name: "fetch service", set: map[string]any{"use_fetch_service": true}, want: "use_fetch_service"},
		{name: "scan_malware a string", set: map[string]any{"scan_malware": "yes"}, want: "scan_malware"},
		{name: "bad proxy URL", set: map[string]any{"proxy_url": "ftp://x"}, want: "proxy_url"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			args := ciBaseArgs()
			for k, v := range tc.set {
				args[k] = v
			}
			if tc.del != "" {
				delete(args, tc.del)
			}
			_, err := NewCIManager(Request{BuildID: "CIBUILD-1", Args: args})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCIHostCheck(t *testing.T) {
	for backend, ok := range map[string]bool{"": true, "lxd": true, "chroot": false} {
		err := Check("ci", ManagerConfig{Backend: backend})
		if (err == nil) != ok || err != nil && !strings.Contains(err.Error(), "need the lxd backend") {
			t.Errorf("backend %q: %v", backend, err)
		}
	}
}

func TestCISecretsYAML(t *testing.T) {
	cases := []struct {
		in   map[string]string
		want string
	}{
		{in: map[string]string{}, want: "{}\n"},
		{in: map[string]string{"b": "2", "a": "x: y # z"}, want: "\"a\": \"x: y # z\"\n\"b\": \"2\"\n"},
		{in: map[string]string{"k": "line\nbreak\u2028\"\\ é 😀"}, want: "\"k\": \"line\\u000abreak\\u2028\\\"\\\\ \\u00e9 \\U0001f600\"\n"},
	}
	for _, tc := range cases {
		if got := ciSecretsYAML(tc.in); got != tc.want {
			t.Errorf("ciSecretsYAML(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseCIArgs feeds jobs of any JSON shape (numbers as XML-RPC's
// integers where whole): never a panic, and a job accepted is one lpci
// and the file cache can take.
func FuzzParseCIArgs(f *testing.F) {
	for _, s := range []string{`[[["build",0]],[["test",0],["test",1]]]`, `[]`, `[[]]`, `[["a"]]`, `[[["a",0,1]]]`, `[[[1,"a"]]]`, `{"a":1}`, `[[["../x",0]]]`, `[[["a",-1]]]`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v any
		if json.Unmarshal([]byte(s), &v) != nil {
			return
		}
		args := ciBaseArgs()
		args["jobs"] = ciFuzzInts(v)
		a, err := ParseCIArgs(args)
		if err != nil {
			return
		}
		if len(a.Jobs) == 0 {
			t.Fatalf("accepted no stages from %s", s)
		}
		for _, stage := range a.Jobs {
			if len(stage) == 0 {
				t.Fatalf("accepted an empty stage from %s", s)
			}
			for _, j := range stage {
				if checkCIJobName(j.Name) != nil || j.Index < 0 || strings.Contains(j.ID(), "/") {
					t.Fatalf("accepted job %q from %s", j.ID(), s)
				}
			}
		}
	})
}

func ciFuzzInts(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	case []any:
		for i := range x {
			x[i] = ciFuzzInts(x[i])
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = ciFuzzInts(x[k])
		}
		return x
	}
	return v
}

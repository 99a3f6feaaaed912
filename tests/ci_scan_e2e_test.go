package tests

// End-to-end tests of a ci build's malware scanning (scan_malware): the
// real buildd-agent binary driven over XML-RPC as buildd-manager drives it,
// with [proxy] clamavdatabase pointing at a local ClamAV mirror
// (tests/clamavdb), in a real LXD container made from the stand-ins' test
// chroot, which installs Debian's real clamav from a signed local apt
// archive on the tests' own bridge (the container has no route out).
// freshclam reaches the mirror through the build's proxy (the builder
// proxy, then squid: the mirror listens on 127.0.0.2, which only squid
// reaches), as run-ci-prepare passes it the proxy environment.
//
// The mirror serves signed databases (Talos's freshclam test database,
// which detects the EICAR test file; see tests/clamavdb for why a
// test-made database cannot be served through PrivateMirror). A job's
// output gets the EICAR file the way a job writes output: while its lpci
// (the stand-in, asked to sleep by .standin-sleep-<job>-<index> in the tree) runs,
// the test writes the file into the job's output directory in the
// container, then ends the sleep; lpci finishes well and clamscan finds it.

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
	"github.com/buildd-agent/buildd-agent/tests/clamavdb"
	"github.com/buildd-agent/buildd-agent/tests/gitserver"
	"github.com/buildd-agent/buildd-agent/tests/squidtest"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	// ciScanE2ESeries names the container lp-ciscane2e-amd64, apart from
	// the other e2e tests'.
	ciScanE2ESeries   = "ciscane2e"
	ciScanE2EInstance = "ciscane2e"
	ciScanE2EProfile  = "buildd-agent-ciscane2e"
	// The tests' own bridge (on the shared one every e2e container is
	// 10.10.10.2).
	ciScanE2EBridge = "cscanbr0"
	ciScanE2EHost   = "10.10.47.1"
	ciScanE2EUser   = "ciscanner"
	ciScanE2EPass   = "sc4n-pr0xy-t0ken"
)

func ciScanE2EContainer() string { return "lp-" + ciScanE2ESeries + "-" + snapE2EArch }

func ciScanCleanupLXD() {
	exec.Command("lxc", "delete", "--force", ciScanE2EContainer()).Run()
	exec.Command("lxc", "profile", "delete", ciScanE2EProfile).Run()
}

// ciScanFixture: the agent, its mirror, and what the builds get.
type ciScanFixture struct {
	agent      *snapAgent
	mirror     *clamavdb.Mirror
	chrootSHA1 string
	archives   []any
	keys       []any
	upstream   string
	repo       *gitserver.Repo
	commit     string // what git_path names: Launchpad sends a commit
}

func newCIScanFixture(t *testing.T) *ciScanFixture {
	t.Helper()
	testenv.RequireLXD(t)
	testenv.RequireCommand(t, "lxc")
	f := &ciScanFixture{}
	chrootPath, sum := snapE2EChroot(t)
	f.chrootSHA1 = sum
	chroot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, chrootPath)
	}))
	t.Cleanup(chroot.Close)

	lxdTestBridge(t, ciScanE2EBridge, ciScanE2EHost)

	// python3 is a stand-in: the proxy dependencies' (socat is in the
	// chroot); the stand-ins need no Python.
	stub := aptarchive.BinaryPackage(t, t.TempDir(), aptarchive.BinarySpec{Name: "python3", Version: "99.0+standin"})
	archive := aptarchive.Build(t, aptarchive.Options{Set: "clamav", Extra: []string{stub}})
	f.archives = []any{archive.SourcesLine(archive.Serve(t, ciScanE2EHost+":0"))}
	f.keys = []any{archive.TrustedKey()}
	squid := squidtest.Start(t, squidtest.Options{Users: map[string]string{ciScanE2EUser: ciScanE2EPass}})
	f.upstream = squid.URL(ciScanE2EUser)
	f.mirror = clamavdb.Serve(t, "127.0.0.2:0", clamavdb.Signed())

	git := gitserver.Start(t)
	f.repo = git.NewRepo(t, "scanned")
	f.repo.WriteFile(t, ".launchpad.yaml", "pipeline:\n  - [clean, planted]\n  - after\njobs:\n  clean:\n    series: bookworm\n  planted:\n    series: bookworm\n  after:\n    series: bookworm\n")
	f.repo.WriteFile(t, ".standin-sleep-planted-0", "600")
	f.commit = f.repo.Commit(t, "jobs")

	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	port := snapFreePort(t, "127.0.0.1")
	a.proxyPort = snapFreePort(t, ciScanE2EHost)
	a.config = writeLXDAgentConfig(t, a.stateDir, snapE2EArch, port, a.proxyPort, ciScanE2EProfile,
		fmt.Sprintf("instance = %q\n", ciScanE2EInstance), fmt.Sprintf("clamavdatabase = %q", f.mirror.URL))
	b, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	shared := "bridge = \"lpbuilddbr0\"\nsubnet = \"10.10.10.1/24\"\n"
	own := fmt.Sprintf("bridge = %q\nsubnet = %q\n", ciScanE2EBridge, ciScanE2EHost+"/24")
	if !bytes.Contains(b, []byte(shared)) {
		t.Fatalf("%s does not set the bridge as expected:\n%s", a.config, b)
	}
	if err := os.WriteFile(a.config, bytes.Replace(b, []byte(shared), []byte(own), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.start(t, bin, ciScanCleanupLXD)
	f.agent = a
	res, ok := a.call(t, "ensurepresent", sum, chroot.URL+"/chroot.tar.gz", "", "").([]any)
	if !ok || len(res) != 2 || res[0] != true {
		t.Fatalf("ensurepresent = %#v", res)
	}
	return f
}

// args are buildd-manager's ci arguments for jobs, with scan_malware.
func (f *ciScanFixture) args(jobs ...[]string) map[string]any {
	stages := []any{}
	for _, stage := range jobs {
		s := []any{}
		for _, j := range stage {
			s = append(s, []any{j, int64(0)})
		}
		stages = append(stages, s)
	}
	return map[string]any{
		"series": ciScanE2ESeries, "arch_tag": snapE2EArch,
		"archives": f.archives, "trusted_keys": f.keys,
		"proxy_url":      f.upstream,
		"git_repository": f.repo.URL(), "git_path": f.commit,
		"jobs":         stages,
		"scan_malware": true,
	}
}

func (f *ciScanFixture) startBuild(t *testing.T, id string, args map[string]any) {
	t.Helper()
	res, ok := f.agent.call(t, "build", id, "ci", f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" || res[1] != id {
		t.Fatalf("build() = %#v", res)
	}
}

// containerSh runs script as root in the build's container.
func ciScanContainerSh(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("lxc", "exec", ciScanE2EContainer(), "--", "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// plantWhileRunning waits for job's lpci to sleep, writes name (data)
// into the job's output files as buildd, and ends the sleep.
func (f *ciScanFixture) plantWhileRunning(t *testing.T, job, name string, data []byte) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Minute)
	for !strings.Contains(string(f.agent.fetch(t, "buildlog")), "lpci stand-in: sleeping 600s as asked") {
		if st := f.agent.status(t); time.Now().After(deadline) || st["builder_status"] != "BuilderStatus.BUILDING" {
			t.Fatalf("%s never slept (status %v); log:\n%s", job, st, f.agent.fetch(t, "buildlog"))
		}
		time.Sleep(time.Second)
	}
	dir := "/build/output/" + job + "/0/files"
	cmd := exec.Command("lxc", "exec", ciScanE2EContainer(), "--", "sh", "-ec",
		`mkdir -p "$1"; cat > "$1/$2"; chown -R buildd:buildd "$1"`, "sh", dir, name)
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("planting %s/%s: %v\n%s", dir, name, err, out)
	}
	// The stand-in's sleep, and only it (lpci carries on when it ends).
	if out, err := ciScanContainerSh(t, `pid=$(pgrep -x -u buildd sleep) && kill $pid`); err != nil {
		t.Fatalf("ending the stand-in's sleep: %v\n%s", err, out)
	}
}

func ciScanJobs(st map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	jobs, _ := st["jobs"].(map[string]any)
	for id, v := range jobs {
		e, _ := v.(map[string]any)
		out[id] = e
	}
	return out
}

func TestCIScanE2E(t *testing.T) {
	f := newCIScanFixture(t)
	a := f.agent

	// Two jobs in a stage, one of which outputs the EICAR test file: the
	// scan fails that job, the other succeeds, the build stops before the
	// next stage (PACKAGEFAIL). freshclam took the databases from the
	// mirror through the proxy.
	t.Run("planted file fails its job", func(t *testing.T) {
		f.startBuild(t, "CISCAN-1", f.args([]string{"clean", "planted"}, []string{"after"}))
		f.plantWhileRunning(t, "planted", "eicar.com", clamavdb.EICAR())
		st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
		log := string(a.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		for _, want := range []string{
			"/build/output/planted/0/files/eicar.com: " + clamavdb.EICARSignature + " FOUND",
			"Some jobs in ['clean:0', 'planted:0'] failed; stopping.",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		if strings.Contains(log, "running after:0") {
			t.Errorf("the next stage ran:\n%s", log)
		}
		jobs := ciScanJobs(st)
		if jobs["clean:0"]["result"] != "SUCCEEDED" || jobs["planted:0"]["result"] != "FAILED" {
			t.Errorf("jobs status: %v", jobs)
		}
		if _, ok := jobs["after:0"]; ok {
			t.Errorf("after:0 in the jobs status: %v", jobs)
		}
		// The scanned file is still the job's output (the master decides
		// what to do with a FAILED job's files), by its SHA-1.
		output, _ := jobs["planted:0"]["output"].(map[string]any)
		if sum, _ := output["eicar.com"].(string); sum != snapSHA1Hex(clamavdb.EICAR()) {
			t.Errorf("planted:0 output %v", output)
		}
		got := strings.Join(f.mirror.Downloaded(), "\n")
		for _, db := range clamavdb.Databases {
			if !strings.Contains(got, "GET /"+db+".cvd 200") {
				t.Errorf("%s.cvd not downloaded from the mirror:\n%s", db, got)
			}
		}
		for _, r := range f.mirror.Requests() {
			if !strings.HasPrefix(r.RemoteAddr, "127.0.0.") {
				t.Errorf("the mirror was reached from %s, not through squid", r.RemoteAddr)
			}
		}
		a.call(t, "clean")
	})

	// Clean outputs: the scan passes every job and the build is OK.
	t.Run("clean outputs", func(t *testing.T) {
		f.startBuild(t, "CISCAN-2", f.args([]string{"clean"}, []string{"after"}))
		st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
		log := string(a.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		jobs := ciScanJobs(st)
		if jobs["clean:0"]["result"] != "SUCCEEDED" || jobs["after:0"]["result"] != "SUCCEEDED" {
			t.Errorf("jobs status: %v", jobs)
		}
		if n := strings.Count(log, "Infected files: 0"); n != 2 {
			t.Errorf("%d clean scans in the log, want 2:\n%s", n, log)
		}
		a.call(t, "clean")
	})

	// A mirror serving a database nobody signed: freshclam refuses it and
	// preparation fails (PACKAGEFAIL) before any job runs.
	t.Run("unsigned database", func(t *testing.T) {
		files := map[string][]byte{}
		for _, db := range clamavdb.Databases {
			files[db+".cvd"] = clamavdb.UnsignedCVD(db, 7, map[string][]byte{db + ".hdb": []byte(clamavdb.HashSignature("Test.Any", []byte("x")))})
		}
		f.mirror.SetFiles(files)
		f.startBuild(t, "CISCAN-3", f.args([]string{"clean"}))
		st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
		log := string(a.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		for _, want := range []string{"Verification: Can't verify database integrity", "Preparation failed."} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		if strings.Contains(log, "running clean:0") || len(ciScanJobs(st)) != 0 {
			t.Errorf("a job ran: %v\n%s", st["jobs"], log)
		}
		a.call(t, "clean")
	})
}

package tests

// End-to-end tests of issue 16's hardening with the real binary (built with
// -tags e2etest): kill -9 at each phase of a build and the restart that
// follows, the journal, graceful stop and reload, result and download
// limits, redirect credentials, planted symlinks, clean() and inputs.
//
// BUILDD_AGENT_E2E_BIN runs them against a binary built elsewhere (an older
// commit, to see them fail).

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func hardeningBinary(t *testing.T) string {
	if bin := os.Getenv("BUILDD_AGENT_E2E_BIN"); bin != "" {
		return bin
	}
	return agentE2EBinary(t)
}

// hardAgent is one agent whose state directory outlives its process, so
// that it can be killed and started again on the same state.
type hardAgent struct {
	t       *testing.T
	bin     string
	dir     string
	cfgPath string
	cfg     agent.Config

	cmd    *exec.Cmd
	exited chan error
	*agentDaemon
}

func newHardAgent(t *testing.T, bin string, mutate func(*agent.Config)) *hardAgent {
	t.Helper()
	h := &hardAgent{t: t, bin: bin, dir: t.TempDir()}
	if _, err := toml.Decode(string(agent.DefaultConfigTOML), &h.cfg); err != nil {
		t.Fatal(err)
	}
	h.cfg.Builder.BindAddress = "127.0.0.1"
	h.cfg.Builder.StateDir = filepath.Join(h.dir, "state")
	h.cfg.Builder.AbortTimeout.Duration = 3 * time.Second
	h.cfg.Builder.Backend = "chroot" // no LXD set-up: the e2etest manager needs none
	h.cfg.Limits.MinFreeBytes = 0
	h.cfg.Log.Level = "debug"
	if mutate != nil {
		mutate(&h.cfg)
	}
	h.cfgPath = filepath.Join(h.dir, "buildd-agent.toml")
	t.Cleanup(func() {
		if h.cmd != nil {
			h.cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() && h.agentDaemon != nil {
			t.Logf("buildd-agent output:\n%s", h.output.String())
		}
	})
	return h
}

func (h *hardAgent) writeConfig() {
	h.t.Helper()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(h.cfg); err != nil {
		h.t.Fatal(err)
	}
	data := buf.Bytes()
	if os.Getenv("BUILDD_AGENT_E2E_BIN") != "" {
		// A binary from before issue 16 refuses the keys added since.
		var tree map[string]map[string]any
		if _, err := toml.Decode(string(data), &tree); err != nil {
			h.t.Fatal(err)
		}
		delete(tree, "sbuild")
		for _, k := range []string{"shutdown_grace", "result_file_bytes", "result_total_bytes", "download_bytes", "min_free_bytes"} {
			delete(tree["builder"], k)
			delete(tree["limits"], k)
		}
		buf.Reset()
		if err := toml.NewEncoder(&buf).Encode(tree); err != nil {
			h.t.Fatal(err)
		}
		data = buf.Bytes()
	}
	if err := os.WriteFile(h.cfgPath, data, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// start runs the agent (again) on the same state and waits until it answers.
func (h *hardAgent) start() {
	t := h.t
	t.Helper()
	if h.cmd != nil {
		t.Fatal("agent already running")
	}
	if h.cfg.Builder.Port == 0 {
		h.cfg.Builder.Port = agentE2EFreePort(t)
	}
	h.writeConfig()
	d := &agentDaemon{url: fmt.Sprintf("http://127.0.0.1:%d", h.cfg.Builder.Port), stateDir: h.cfg.Builder.StateDir, output: &testenv.SyncBuffer{}}
	if h.agentDaemon != nil {
		d.output = h.output // one log across restarts
		d.output.Write([]byte("---- restart ----\n"))
	}
	h.agentDaemon = d
	h.cmd = exec.Command(h.bin, "run", "--config", h.cfgPath)
	h.cmd.Stdout, h.cmd.Stderr = d.output, d.output
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(h.cmd, h.exited)
	deadline := time.Now().Add(60 * time.Second) // a bound against hangs
	for {
		if _, err := d.call("echo"); err == nil {
			return
		}
		select {
		case err := <-h.exited:
			h.cmd = nil
			t.Fatalf("buildd-agent exited before answering: %v\n%s", err, d.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("buildd-agent does not answer\n%s", d.output.String())
		}
	}
}

// kill is kill -9.
func (h *hardAgent) kill() {
	h.t.Helper()
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	h.cmd = nil
}

// signal sends sig and waits for the exit (bounded against a hang).
func (h *hardAgent) stopWith(sig syscall.Signal) error {
	h.t.Helper()
	h.cmd.Process.Signal(sig)
	select {
	case err := <-h.exited:
		h.cmd = nil
		return err
	case <-time.After(60 * time.Second):
		h.t.Fatalf("buildd-agent did not exit on %v", sig)
		return nil
	}
}

func (h *hardAgent) ensure(t *testing.T, data []byte) string {
	t.Helper()
	sum := agentE2ESum(data)
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/" + sum: data})
	if v := h.mustCall(t, "ensurepresent", sum, lib.URL+"/"+sum, lib.user, lib.pass); !cmp.Equal(v, []any{true, agent.InfoDownload}) && !cmp.Equal(v, []any{true, agent.InfoCache}) {
		t.Fatalf("ensurepresent = %v", v)
	}
	return sum
}

func (h *hardAgent) build(t *testing.T, id, chroot string, files map[string]any, args map[string]any) {
	t.Helper()
	v := h.mustCall(t, "build", id, "e2etest", chroot, files, args)
	if !cmp.Equal(v, []any{agent.BuilderBuilding, id}) {
		t.Fatalf("build(%s) = %v", id, v)
	}
}

func (h *hardAgent) waitBuilding(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := h.status(t)
		if st["builder_status"] == agent.BuilderBuilding {
			if _, log := h.get(t, "/filecache/buildlog"); strings.Contains(string(log), substr) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("build never reached %q: %v", substr, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHardeningE2E(t *testing.T) {
	testenv.RequireCommand(t, "go")
	bin := hardeningBinary(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, string)
	}{
		{"KillWhileBuilding", hardKillWhileBuilding},
		{"KillWhileAborting", hardKillWhileAborting},
		{"KillWhileWaiting", hardKillWhileWaiting},
		{"DamagedJournal", hardDamagedJournal},
		{"SparseResult", hardSparseResult},
		{"FIFOResult", hardFIFOResult},
		{"DownloadLimit", hardDownloadLimit},
		{"RedirectAuth", hardRedirectAuth},
		{"PlantedSymlink", hardPlantedSymlink},
		{"CleanKeepsInput", hardCleanKeepsInput},
		{"GracefulStopAndReload", hardGracefulStopAndReload},
		{"GraceExpires", hardGraceExpires},
		{"FreeDisk", hardFreeDisk},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, bin) })
	}
}

var sweepLine = regexp.MustCompile(`start-up sweep done.*duration=(\S+)`)

// hardKillWhileBuilding: kill -9 while BUILDING with a 280 MB build home
// left behind; the restarted agent is IDLE and the master's re-dispatch of
// the same build id builds (launchpad-buildd and the agent before the fix:
// CHROOTFAIL "mkdir …/build-<id>: file exists").
func hardKillWhileBuilding(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	h.start()
	chroot := h.ensure(t, []byte("chroot tarball"))
	// 7000 files of 40 000 bytes: 280 MB, the chroot build home of the report.
	h.build(t, "KILL-1", chroot, map[string]any{}, map[string]any{
		"make_home": true, "home_files": int64(7000), "home_file_bytes": int64(40000), "sleep": int64(600)})
	h.waitBuilding(t, "sleeping")
	home := filepath.Join(h.cfg.Builder.StateDir, "builds", "build-KILL-1")
	if _, err := os.Stat(home); err != nil {
		t.Fatalf("no build home: %v", err)
	}
	h.kill()
	h.start()
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Fatalf("after kill -9 while BUILDING: %v", st)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("build home not swept: %v", err)
	}
	if m := sweepLine.FindStringSubmatch(h.output.String()); m != nil {
		t.Logf("sweep of the 280 MB build home (7000 files): %s", m[1])
	}
	h.build(t, "KILL-1", chroot, map[string]any{}, map[string]any{"make_home": true})
	st, _ := h.waitFor(t, agent.BuilderWaiting)
	if st["build_status"] != "BuildStatus.OK" {
		_, log := h.get(t, "/filecache/buildlog")
		t.Fatalf("re-dispatched build: %v\n%s", st["build_status"], log)
	}
}

// hardKillWhileAborting: kill -9 while ABORTING (a build that ignores the
// cancellation); the restart is IDLE and the same id builds again.
func hardKillWhileAborting(t *testing.T, bin string) {
	h := newHardAgent(t, bin, func(c *agent.Config) { c.Builder.AbortTimeout.Duration = time.Hour })
	h.start()
	chroot := h.ensure(t, []byte("chroot tarball"))
	h.build(t, "ABRT-1", chroot, map[string]any{}, map[string]any{"make_home": true, "sleep": int64(600), "ignore_cancel": true})
	h.waitBuilding(t, "sleeping")
	if v := h.mustCall(t, "abort"); v != agent.BuilderAborting {
		t.Fatalf("abort = %v", v)
	}
	h.kill()
	h.start()
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Fatalf("after kill -9 while ABORTING: %v", st)
	}
	h.build(t, "ABRT-1", chroot, map[string]any{}, map[string]any{"make_home": true})
	if st, _ := h.waitFor(t, agent.BuilderWaiting); st["build_status"] != "BuildStatus.OK" {
		_, log := h.get(t, "/filecache/buildlog")
		t.Fatalf("re-dispatched build: %v\n%s", st["build_status"], log)
	}
}

// hardKillWhileWaiting: kill -9 in WAITING; after the restart the build is
// still WAITING with the same status, results and log until clean().
func hardKillWhileWaiting(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	h.start()
	chroot := h.ensure(t, []byte("chroot tarball"))
	h.build(t, "WAIT-1", chroot, map[string]any{}, map[string]any{"result": "packagefail", "output": "waiting output\n"})
	before, _ := h.waitFor(t, agent.BuilderWaiting)
	_, logBefore := h.get(t, "/filecache/buildlog")
	h.kill()
	h.start()
	after := h.status(t)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("status after kill -9 in WAITING (-before +after):\n%s", diff)
	}
	if code, log := h.get(t, "/filecache/buildlog"); code != 200 || !bytes.Equal(log, logBefore) {
		t.Errorf("buildlog after restart: %d %q, want %q", code, log, logBefore)
	}
	fm, _ := after["filemap"].(map[string]any)
	if code, body := h.get(t, "/filecache/"+fmt.Sprint(fm["output.txt"])); code != 200 || string(body) != "waiting output\n" {
		t.Errorf("output.txt after restart: %d %q", code, body)
	}
	if v := h.mustCall(t, "clean"); v != agent.BuilderIdle {
		t.Fatalf("clean = %v", v)
	}
	// A second restart after clean() is IDLE.
	h.kill()
	h.start()
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Errorf("after clean and restart: %v", st)
	}
}

// hardDamagedJournal: a damaged journal is ignored with a clear log line.
func hardDamagedJournal(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	os.MkdirAll(h.cfg.Builder.StateDir, 0o755)
	os.WriteFile(filepath.Join(h.cfg.Builder.StateDir, agent.JournalName), []byte(`{"version":1,"state":"BuilderStatus.WAIT`), 0o644)
	h.start()
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Errorf("status: %v", st)
	}
	if !strings.Contains(h.output.String(), "ignoring a damaged builder journal") {
		t.Errorf("no log line about the damaged journal")
	}
	chroot := h.ensure(t, []byte("chroot tarball"))
	h.build(t, "DMG-1", chroot, map[string]any{}, map[string]any{})
	if st, _ := h.waitFor(t, agent.BuilderWaiting); st["build_status"] != "BuildStatus.OK" {
		t.Errorf("build after a damaged journal: %v", st)
	}
}

// hardSparseResult: a sparse 1 GiB result over result_file_bytes is
// PACKAGEFAIL with a build-log line, and nothing of it is in the cache.
func hardSparseResult(t *testing.T, bin string) {
	h := newHardAgent(t, bin, func(c *agent.Config) { c.Limits.ResultFileBytes = 64 << 20 })
	h.start()
	chroot := h.ensure(t, []byte("chroot tarball"))
	h.build(t, "SPARSE-1", chroot, map[string]any{}, map[string]any{"sparse_result_bytes": int64(1 << 30)})
	st, _ := h.waitFor(t, agent.BuilderWaiting)
	_, log := h.get(t, "/filecache/buildlog")
	if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
		t.Errorf("build_status = %v, want PACKAGEFAIL\n%s", st["build_status"], log)
	}
	if !bytes.Contains(log, []byte("Result big.snap is over this builder's limit of 67108864 bytes ([limits] result_file_bytes)")) {
		t.Errorf("build log does not explain the limit:\n%s", log)
	}
	var total int64
	filepath.Walk(h.cfg.Builder.StateDir+"/filecache", func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	if total > 1<<20 {
		t.Errorf("the file cache holds %d bytes after the refused result", total)
	}
}

// hardFIFOResult: a FIFO among the results does not hang gathering.
func hardFIFOResult(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	h.start()
	chroot := h.ensure(t, []byte("chroot tarball"))
	h.build(t, "FIFO-1", chroot, map[string]any{}, map[string]any{"fifo_result": true})
	st, _ := h.waitFor(t, agent.BuilderWaiting) // waitFor bounds a hang
	_, log := h.get(t, "/filecache/buildlog")
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v\n%s", st["build_status"], log)
	}
	fm := st["filemap"].(map[string]any)
	if _, ok := fm["good.snap"]; !ok {
		t.Errorf("good.snap not gathered: %v", fm)
	}
	if _, ok := fm["evil.snap"]; ok {
		t.Errorf("the FIFO was gathered: %v", fm)
	}
	if !bytes.Contains(log, []byte("Not gathering /evil.snap: not a regular file")) {
		t.Errorf("log does not mention the FIFO:\n%s", log)
	}
}

// hardDownloadLimit: ensurepresent over download_bytes stores nothing and
// says why.
func hardDownloadLimit(t *testing.T, bin string) {
	h := newHardAgent(t, bin, func(c *agent.Config) { c.Limits.DownloadBytes = 1 << 20 })
	h.start()
	big := bytes.Repeat([]byte("B"), 2<<20)
	sum := agentE2ESum(big)
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/" + sum: big})
	v := h.mustCall(t, "ensurepresent", sum, lib.URL+"/"+sum, lib.user, lib.pass)
	want := []any{false, "Error accessing Librarian: the file is larger than this builder's limit of 1048576 bytes ([limits] download_bytes); nothing was stored"}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("ensurepresent (-want +got):\n%s", diff)
	}
	if code, _ := h.get(t, "/filecache/"+sum); code != 404 {
		t.Errorf("oversized download served: %d", code)
	}
}

// hardRedirectAuth: ensurepresent's Basic credentials do not follow a
// redirect to another port of the same host.
func hardRedirectAuth(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	h.start()
	payload := []byte("redirected payload")
	sum := agentE2ESum(payload)
	var mu sync.Mutex
	var gotAuth []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(payload)
	}))
	defer other.Close()
	librarian := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, other.URL+"/blob", http.StatusFound)
	}))
	defer librarian.Close()
	v := h.mustCall(t, "ensurepresent", sum, librarian.URL+"/"+sum, "buildd", "macaroon-secret")
	if !cmp.Equal(v, []any{true, agent.InfoDownload}) {
		t.Fatalf("ensurepresent = %v", v)
	}
	mu.Lock()
	defer mu.Unlock()
	if !cmp.Equal(gotAuth, []string{""}) {
		t.Errorf("the other port received Authorization %q", gotAuth)
	}
}

// hardPlantedSymlink: a symlink planted in the cache directory under a
// SHA-1 name is not served.
func hardPlantedSymlink(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	h.start()
	secret := filepath.Join(h.dir, "secret")
	os.WriteFile(secret, []byte("not for the master"), 0o600)
	sum := agentE2ESum([]byte("not for the master"))
	if err := os.Symlink(secret, filepath.Join(h.cfg.Builder.StateDir, "filecache", sum)); err != nil {
		t.Fatal(err)
	}
	if code, body := h.get(t, "/filecache/"+sum); code != 404 {
		t.Errorf("planted symlink served: %d %q", code, body)
	}
	if v := h.mustCall(t, "ensurepresent", sum, nil, nil, nil); !cmp.Equal(v, []any{false, agent.InfoNoURL}) {
		t.Errorf("ensurepresent of the planted symlink = %v", v)
	}
}

// hardCleanKeepsInput: clean() keeps an input whose SHA-1 equals one of the
// build's results, so the next build with that input is not UNKNOWNSUM.
func hardCleanKeepsInput(t *testing.T, bin string) {
	h := newHardAgent(t, bin, nil)
	h.start()
	chroot := h.ensure(t, []byte("chroot tarball"))
	input := h.ensure(t, []byte("same as the output\n"))
	files := map[string]any{"in.txt": input}
	args := map[string]any{"output": "same as the output\n"}
	h.build(t, "CLEAN-1", chroot, files, args)
	if st, _ := h.waitFor(t, agent.BuilderWaiting); st["filemap"].(map[string]any)["output.txt"] != input {
		t.Fatalf("the result does not equal the input: %v", st)
	}
	h.mustCall(t, "clean")
	v := h.mustCall(t, "build", "CLEAN-2", "e2etest", chroot, files, args)
	if !cmp.Equal(v, []any{agent.BuilderBuilding, "CLEAN-2"}) {
		t.Fatalf("second build with the same input = %v", v)
	}
	h.waitFor(t, agent.BuilderWaiting)
}

// hardGracefulStopAndReload: SIGHUP reloads the log level and limits;
// SIGTERM while BUILDING waits (shutdown_grace) for the build, which is
// WAITING OK after the restart.
func hardGracefulStopAndReload(t *testing.T, bin string) {
	h := newHardAgent(t, bin, func(c *agent.Config) { c.Builder.ShutdownGrace.Duration = 5 * time.Minute })
	h.start()
	h.cfg.Log.Level = "info"
	h.cfg.Limits.DownloadBytes = 4096
	h.writeConfig()
	h.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(h.output.String(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("no reload after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	big := bytes.Repeat([]byte("R"), 8192)
	sum := agentE2ESum(big)
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/" + sum: big})
	if v := h.mustCall(t, "ensurepresent", sum, lib.URL+"/"+sum, lib.user, lib.pass); v.([]any)[0] != false {
		t.Errorf("reloaded download limit not applied: %v", v)
	}
	chroot := h.ensure(t, []byte("chroot"))
	h.build(t, "GRACE-1", chroot, map[string]any{}, map[string]any{"sleep": 2.0})
	h.waitBuilding(t, "sleeping")
	if err := h.stopWith(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(h.output.String(), "waiting for the running build to finish") {
		t.Errorf("SIGTERM did not wait for the build")
	}
	h.start()
	st := h.status(t)
	if st["builder_status"] != agent.BuilderWaiting || st["build_status"] != "BuildStatus.OK" || st["build_id"] != "GRACE-1" {
		t.Errorf("after a graceful stop during the build: %v", st)
	}
}

// hardGraceExpires: a build longer than shutdown_grace is stopped after it
// and reported IDLE after the restart (requeued), not as a failure; the
// same id builds again.
func hardGraceExpires(t *testing.T, bin string) {
	h := newHardAgent(t, bin, func(c *agent.Config) { c.Builder.ShutdownGrace.Duration = 500 * time.Millisecond })
	h.start()
	chroot := h.ensure(t, []byte("chroot"))
	h.build(t, "GRACE-2", chroot, map[string]any{}, map[string]any{"make_home": true, "sleep": int64(600)})
	h.waitBuilding(t, "sleeping")
	if err := h.stopWith(syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(h.output.String(), "did not finish within the shutdown grace") {
		t.Errorf("no log line about the grace expiring")
	}
	h.start()
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Fatalf("after the grace expired: %v", st)
	}
	h.build(t, "GRACE-2", chroot, map[string]any{}, map[string]any{"make_home": true})
	if st, _ := h.waitFor(t, agent.BuilderWaiting); st["build_status"] != "BuildStatus.OK" {
		t.Errorf("re-dispatched build: %v", st)
	}
}

// hardFreeDisk: build() is refused with a clear Fault when the disk is
// short of min_free_bytes, and the builder stays IDLE.
func hardFreeDisk(t *testing.T, bin string) {
	h := newHardAgent(t, bin, func(c *agent.Config) { c.Limits.MinFreeBytes = 1 << 60 })
	h.start()
	chroot := h.ensure(t, []byte("chroot"))
	_, err := h.call("build", "DISK-1", "e2etest", chroot, map[string]any{}, map[string]any{})
	f, ok := err.(*agent.Fault)
	if !ok || !strings.Contains(f.String, "not enough free disk space") || !strings.Contains(f.String, "[limits] min_free_bytes") {
		t.Fatalf("build() = %v", err)
	}
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Errorf("status after the refusal: %v", st)
	}
}

// TestHardeningE2EChrootKill is the report's case on the real chroot
// backend: kill -9 of the agent during a snap build (snapcraft running in
// the user-namespace chroot), then a restart and buildd-manager's
// re-dispatch of the same build id, which must build. Before the fix the
// 280 MB chroot under <build_home>/build-<id> made it CHROOTFAIL ("mkdir …:
// file exists"). The chroot's helper processes and mounts must be gone too.
func TestHardeningE2EChrootKill(t *testing.T) {
	testenv.RequireRoot(t)
	f := newSnapFixture(t)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("6.0", "standin-sleep-build: 600"))
	f.repo.Commit(t, "slow")
	// The chroot's mapped root must reach its build directory: no 0700
	// test directory on the way.
	state, err := os.MkdirTemp("", "hardening-chroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	os.Chmod(state, 0o755)
	h := newHardAgent(t, hardeningBinary(t), func(c *agent.Config) {
		c.Builder.StateDir = state
		c.Builder.Backend = "chroot"
		c.Builder.Architectures = []string{snapE2EArch}
		c.Proxy.Port = snapFreePort(t, "127.0.0.1")
	})
	h.start()
	if v := h.mustCall(t, "ensurepresent", f.chrootSHA1, f.chrootURL, "", ""); v.([]any)[0] != true {
		t.Fatalf("ensurepresent of the chroot = %v", v)
	}
	const id = "SNAPKILL-1"
	if v := h.mustCall(t, "build", id, "snap", f.chrootSHA1, map[string]any{}, f.buildArgs("")); !cmp.Equal(v, []any{agent.BuilderBuilding, id}) {
		t.Fatalf("build() = %v", v)
	}
	h.waitBuilding(t, "sleeping 600s as asked")
	home := filepath.Join(state, "builds", "build-"+id)
	if _, err := os.Stat(filepath.Join(home, "chroot", "usr", "bin")); err != nil {
		t.Fatalf("no chroot under the build home: %v", err)
	}
	h.kill()
	// The chroot's helper dies with the agent (parent-death signal): no
	// process is left whose root is inside the build home.
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := processesRootedUnder(home)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left in the killed build's chroot: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.start()
	if st := h.status(t); st["builder_status"] != agent.BuilderIdle {
		t.Fatalf("after kill -9: %v", st)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("the killed build's home was not swept: %v", err)
	}
	if m := sweepLine.FindStringSubmatch(h.output.String()); m != nil {
		t.Logf("sweep of the killed chroot build's home: %s", m[1])
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && bytes.Contains(mi, []byte(home)) {
		t.Errorf("mounts left under %s", home)
	}
	f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("6.1"))
	f.repo.Commit(t, "fast")
	if v := h.mustCall(t, "build", id, "snap", f.chrootSHA1, map[string]any{}, f.buildArgs("")); !cmp.Equal(v, []any{agent.BuilderBuilding, id}) {
		t.Fatalf("re-dispatch = %v", v)
	}
	deadline = time.Now().Add(5 * time.Minute)
	var st map[string]any
	for {
		st = h.status(t)
		if st["builder_status"] == agent.BuilderWaiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-dispatched build still %v", st["builder_status"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st["build_status"] != "BuildStatus.OK" {
		_, log := h.get(t, "/filecache/buildlog")
		t.Fatalf("re-dispatched build: %v\n%s", st["build_status"], log)
	}
	h.mustCall(t, "clean")
}

// processesRootedUnder lists the pids whose root directory is dir or below.
func processesRootedUnder(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		root, err := os.Readlink(filepath.Join("/proc", e.Name(), "root"))
		if err == nil && (root == dir || strings.HasPrefix(root, dir+"/")) {
			out = append(out, e.Name())
		}
	}
	return out
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// journalAgent is a real Agent (file cache, build log, journal) on a
// state directory that outlives it, so that a test can restart it.
type journalAgent struct {
	*Agent
	srv    *httptest.Server
	logBuf *testenv.SyncBuffer
}

func startJournalAgent(t *testing.T, stateDir string, mutate func(*Config)) *journalAgent {
	t.Helper()
	cfg := &Config{}
	cfg.Builder.Architectures = []string{"amd64"}
	cfg.Builder.StateDir = stateDir
	cfg.Builder.FileCacheDir = filepath.Join(stateDir, "filecache")
	cfg.Builder.BuildHome = filepath.Join(stateDir, "builds")
	cfg.Builder.AbortTimeout.Duration = 5 * time.Second
	cfg.Limits.RequestBodyBytes = 64 << 10
	if mutate != nil {
		mutate(cfg)
	}
	buf := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(buf, tLogWriter{t}), nil))
	a, err := New(cfg, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ja := &journalAgent{Agent: a, srv: httptest.NewServer(a.Handler()), logBuf: buf}
	t.Cleanup(ja.stop)
	return ja
}

func (ja *journalAgent) stop() {
	ja.srv.Close()
	ja.Close()
}

func (ja *journalAgent) rpc(t *testing.T, method string, params ...any) any {
	t.Helper()
	v, err := rpcPost(t, ja.srv.URL+"/rpc", method, params...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return v
}

func (ja *journalAgent) get(t *testing.T, name string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(ja.srv.URL + "/filecache/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (ja *journalAgent) store(t *testing.T, data []byte) string {
	t.Helper()
	sum, err := ja.cache.Store(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func waitAgentState(t *testing.T, b *Builder, state string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for b.State() != state {
		if time.Now().After(deadline) {
			t.Fatalf("builder is %s; still not %s", b.State(), state)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestJournalWaitingSurvivesRestart: a finished build is WAITING after a
// restart with the same status (filemap, extras, proxy_info) and log, until
// clean().
func TestJournalWaitingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	g := newGated()
	g.results = map[string]string{"a.snap": "snap bytes", "b.txt": "text"}
	registerManager(t, "jt-fake", g.manager)
	a := startJournalAgent(t, dir, nil)
	chroot := a.store(t, []byte("chroot"))
	a.rpc(t, "build", "JB-1", "jt-fake", chroot, map[string]any{}, map[string]any{"series": "noble"})
	env := <-g.started
	env.SetStatus("jobs", []any{map[string]any{"name": "j", "n": int64(3)}})
	g.release <- builders.Result{Status: builders.BuildOK}
	waitAgentState(t, a.Builder(), BuilderWaiting)
	before := a.rpc(t, "status")
	proxyBefore := a.rpc(t, "proxy_info")
	_, logBefore := a.get(t, "buildlog")
	a.stop()

	b := startJournalAgent(t, dir, nil)
	if diff := cmp.Diff(before, b.rpc(t, "status")); diff != "" {
		t.Errorf("status after restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(proxyBefore, b.rpc(t, "proxy_info")); diff != "" {
		t.Errorf("proxy_info after restart (-before +after):\n%s", diff)
	}
	if code, log := b.get(t, "buildlog"); code != 200 || !bytes.Equal(log, logBefore) || !bytes.Contains(log, []byte("building JB-1")) {
		t.Errorf("buildlog after restart: %d %q, want %q", code, log, logBefore)
	}
	fm := before.(map[string]any)["filemap"].(map[string]any)
	for name, sum := range fm {
		if code, body := b.get(t, sum.(string)); code != 200 || string(body) != g.results[name] {
			t.Errorf("%s after restart: %d %q", name, code, body)
		}
	}
	if got := b.rpc(t, "clean"); got != BuilderIdle {
		t.Fatalf("clean = %v", got)
	}
	for _, sum := range fm {
		if code, _ := b.get(t, sum.(string)); code != 404 {
			t.Errorf("result %s still served after clean", sum)
		}
	}
	b.stop()
	c := startJournalAgent(t, dir, nil)
	if st := c.Builder().State(); st != BuilderIdle {
		t.Errorf("after clean and restart: %s", st)
	}
}

// TestJournalRunningBuildRestartsIdle: a build that was running when the
// agent went away is IDLE after the restart (buildd-manager requeues it
// without counting a failure), its stored results are removed, and its
// build home is swept before the next build(), which then works with the
// same build id.
func TestJournalRunningBuildRestartsIdle(t *testing.T) {
	dir := t.TempDir()
	var g *gatedManager // the manager of the next build
	registerManager(t, "jt-run", func(req builders.Request) *funcManager {
		m := g.manager(req)
		run := m.run
		m.run = func(ctx context.Context, env *builders.Env) builders.Result {
			// Like the chroot target: Mkdir, not MkdirAll.
			home := filepath.Join(env.Config.BuildHome, "build-"+req.BuildID)
			if err := os.MkdirAll(env.Config.BuildHome, 0o755); err != nil {
				panic(err)
			}
			if err := os.Mkdir(home, 0o755); err != nil {
				fmt.Fprintf(env.Log, "cannot create chroot: %v\n", err)
				return builders.Result{Status: builders.BuildChrootFail}
			}
			os.WriteFile(filepath.Join(home, "file"), []byte("x"), 0o644)
			return run(ctx, env)
		}
		return m
	})
	g = newGated()
	g.results = map[string]string{"partial.snap": "half a snap"}
	a := startJournalAgent(t, dir, nil)
	chroot := a.store(t, []byte("chroot"))
	a.rpc(t, "build", "JR-1", "jt-run", chroot, map[string]any{}, map[string]any{"series": "noble"})
	<-g.started
	sum := sumOf([]byte("half a snap"))
	if !a.cache.Has(sum) {
		t.Fatal("result not stored")
	}
	// What a kill -9 leaves: the journal as last written, the build home,
	// the result in the cache. The dead agent writes nothing more.
	a.Builder().journal = nil

	g = newGated()
	b := startJournalAgent(t, dir, nil)
	if st := b.Builder().State(); st != BuilderIdle {
		t.Fatalf("restarted builder is %s, want IDLE", st)
	}
	if !strings.Contains(b.logBuf.String(), "a build was running when the agent stopped") {
		t.Errorf("no log line about the lost build:\n%s", b.logBuf.String())
	}
	if b.cache.Has(sum) {
		t.Errorf("the lost build's result is still cached")
	}
	if err := b.Sweep(context.Background()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "builds", "build-JR-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("build home not swept: %v", err)
	}
	b.rpc(t, "build", "JR-1", "jt-run", chroot, map[string]any{}, map[string]any{"series": "noble"})
	<-g.started
	g.release <- builders.Result{Status: builders.BuildOK}
	waitAgentState(t, b.Builder(), BuilderWaiting)
	if st := b.rpc(t, "status").(map[string]any); st["build_status"] != "BuildStatus.OK" {
		t.Errorf("re-dispatched build: %v", st)
	}
}

// TestJournalDamaged: a damaged journal is ignored with a clear log line
// and set aside; the builder starts IDLE and journals again.
func TestJournalDamaged(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"garbage", "\x00\x01 not json"},
		{"truncated", `{"version":1,"state":"BuilderStatus.WAITING","build_id":"X`},
		{"wrong version", `{"version":99,"state":"BuilderStatus.IDLE"}`},
		{"unknown state", `{"version":1,"state":"BuilderStatus.NAPPING","build_id":"X","manager":"m"}`},
		{"bad sha1", `{"version":1,"state":"BuilderStatus.WAITING","build_id":"X","manager":"m","build_status":"BuildStatus.OK","filemap":[{"name":"a","sha1":"../../etc/passwd"}]}`},
		{"bad build id", `{"version":1,"state":"BuilderStatus.WAITING","build_id":"../x","manager":"m","build_status":"BuildStatus.OK"}`},
		{"bad extra", `{"version":1,"state":"BuilderStatus.WAITING","build_id":"X","manager":"m","build_status":"BuildStatus.OK","extras":[{"key":"filemap","value":""}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, JournalName), []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			a := startJournalAgent(t, dir, nil)
			if st := a.Builder().State(); st != BuilderIdle {
				t.Errorf("state %s, want IDLE", st)
			}
			if !strings.Contains(a.logBuf.String(), "ignoring a damaged builder journal") {
				t.Errorf("no log line:\n%s", a.logBuf.String())
			}
			if b, err := os.ReadFile(filepath.Join(dir, JournalName+".damaged")); err != nil || string(b) != tc.data {
				t.Errorf("damaged journal not set aside: %v", err)
			}
			rec, err := newJournal(dir).read()
			if err != nil || rec == nil || rec.State != BuilderIdle {
				t.Errorf("journal after start: %+v, %v", rec, err)
			}
		})
	}
}

// TestJournalEveryTransition: each transition is on disk when the call
// that made it returns.
func TestJournalEveryTransition(t *testing.T) {
	dir := t.TempDir()
	g := newGated()
	g.stubborn = true // stays ABORTING until released
	registerManager(t, "jt-steps", g.manager)
	a := startJournalAgent(t, dir, nil)
	j := newJournal(dir)
	state := func() string {
		t.Helper()
		rec, err := j.read()
		if err != nil || rec == nil {
			t.Fatalf("journal: %+v %v", rec, err)
		}
		return rec.State
	}
	chroot := a.store(t, []byte("chroot"))
	a.rpc(t, "build", "JS-1", "jt-steps", chroot, map[string]any{}, map[string]any{"series": "noble"})
	if s := state(); s != BuilderBuilding {
		t.Errorf("after build(): %s", s)
	}
	<-g.started
	a.rpc(t, "abort")
	if s := state(); s != BuilderAborting {
		t.Errorf("after abort(): %s", s)
	}
	g.release <- builders.Result{Status: builders.BuildPackageFail}
	waitAgentState(t, a.Builder(), BuilderWaiting)
	// The WAITING record is written just after the state changes.
	deadline := time.Now().Add(10 * time.Second)
	for state() != BuilderWaiting && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := state(); s != BuilderWaiting {
		t.Errorf("after the build ended: %s", s)
	}
	a.rpc(t, "clean")
	if s := state(); s != BuilderIdle {
		t.Errorf("after clean(): %s", s)
	}
}

// TestShutdownDuringBuildLeavesItRunningInJournal: stopping the agent
// while a build runs does not record what the manager makes of the
// cancellation (it would be a PACKAGEFAIL or ABORTED the build did not
// earn); the restart reports IDLE.
func TestShutdownDuringBuildLeavesItRunningInJournal(t *testing.T) {
	dir := t.TempDir()
	g := newGated()
	registerManager(t, "jt-stop", g.manager)
	a := startJournalAgent(t, dir, nil)
	chroot := a.store(t, []byte("chroot"))
	a.rpc(t, "build", "JT-1", "jt-stop", chroot, map[string]any{}, map[string]any{"series": "noble"})
	<-g.started
	a.stop() // cancels; the gated manager returns PACKAGEFAIL
	rec, err := newJournal(dir).read()
	if err != nil || rec.State != BuilderBuilding {
		t.Fatalf("journal after shutdown: %+v, %v", rec, err)
	}
	b := startJournalAgent(t, dir, nil)
	if st := b.Builder().State(); st != BuilderIdle {
		t.Errorf("after restart: %s", st)
	}
}

// TestDrain: SIGTERM's drain refuses new builds and waits for the running
// one; the WAITING record is on disk when it returns.
func TestDrain(t *testing.T) {
	dir := t.TempDir()
	g := newGated()
	registerManager(t, "jt-drain", g.manager)
	a := startJournalAgent(t, dir, nil)
	chroot := a.store(t, []byte("chroot"))
	a.rpc(t, "build", "JD-1", "jt-drain", chroot, map[string]any{}, map[string]any{"series": "noble"})
	<-g.started
	drained := make(chan bool)
	go func() { drained <- a.Builder().Drain(time.Hour) }()
	for {
		a.Builder().mu.Lock()
		d := a.Builder().draining
		a.Builder().mu.Unlock()
		if d {
			break
		}
		time.Sleep(time.Millisecond)
	}
	g.release <- builders.Result{Status: builders.BuildOK}
	if !<-drained {
		t.Fatal("Drain reported the build still running")
	}
	if rec, err := newJournal(dir).read(); err != nil || rec.State != BuilderWaiting {
		t.Errorf("journal after drain: %+v, %v", rec, err)
	}
	a.rpc(t, "clean")
	_, err := rpcPost(t, a.srv.URL+"/rpc", "build", "JD-2", "jt-drain", chroot, map[string]any{}, map[string]any{"series": "noble"})
	if f := faultOf(t, err); !strings.Contains(f.String, "shutting down") {
		t.Errorf("build while draining: %v", f)
	}
	if a.Builder().Drain(0) != true {
		t.Errorf("Drain of an idle builder")
	}
}

// TestCleanKeepsInputEqualToResult: clean() removes only results the build
// put in the cache; a result whose content equals an input (or any file
// cached before) stays, and so does a result an ensurepresent asked for
// since.
func TestCleanKeepsInputEqualToResult(t *testing.T) {
	dir := t.TempDir()
	g := newGated()
	g.results = map[string]string{"copy-of-input.txt": "the input", "new.snap": "fresh", "asked.txt": "asked for later"}
	registerManager(t, "jt-clean", g.manager)
	a := startJournalAgent(t, dir, nil)
	chroot := a.store(t, []byte("chroot"))
	input := a.store(t, []byte("the input"))
	a.rpc(t, "build", "JC-1", "jt-clean", chroot, map[string]any{"in.txt": input}, map[string]any{"series": "noble"})
	<-g.started
	g.release <- builders.Result{Status: builders.BuildOK}
	waitAgentState(t, a.Builder(), BuilderWaiting)
	asked := sumOf([]byte("asked for later"))
	// The next build's input, fetched while this one waits: a cache hit.
	// Its mtime is refreshed; make sure the clock moved on the way.
	time.Sleep(10 * time.Millisecond)
	if got := a.rpc(t, "ensurepresent", asked, "http://unused.invalid/", "", ""); !cmp.Equal(got, []any{true, InfoCache}) {
		t.Fatalf("ensurepresent = %v", got)
	}
	a.rpc(t, "clean")
	for sum, want := range map[string]bool{input: true, chroot: true, asked: true, sumOf([]byte("fresh")): false} {
		if got := a.cache.Has(sum); got != want {
			t.Errorf("cached %s = %v after clean, want %v", sum, got, want)
		}
	}
	a.rpc(t, "build", "JC-2", "jt-clean", chroot, map[string]any{"in.txt": input, "asked.txt": asked}, map[string]any{"series": "noble"})
	<-g.started
	g.release <- builders.Result{Status: builders.BuildOK}
	waitAgentState(t, a.Builder(), BuilderWaiting)
}

// TestResultLimits: a result over result_file_bytes or over what is left
// of result_total_bytes is not stored and fails the build as PACKAGEFAIL
// with a build-log line, whatever the manager returns.
func TestResultLimits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     int64
		total    int64
		results  []string
		key      string
		reported string
	}{
		{"file", 100, 1000, []string{strings.Repeat("x", 101)}, "result_file_bytes", "100 bytes"},
		{"exactly the file limit", 100, 1000, []string{strings.Repeat("x", 100)}, "", ""},
		{"total", 100, 150, []string{strings.Repeat("a", 100), strings.Repeat("b", 51)}, "result_total_bytes", "150 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tag := "jt-limit-" + strings.ReplaceAll(tc.name, " ", "-")
			var storeErr error
			registerManager(t, tag, func(req builders.Request) *funcManager {
				return &funcManager{run: func(ctx context.Context, env *builders.Env) builders.Result {
					for i, r := range tc.results {
						if _, err := env.AddWaitingFile(fmt.Sprintf("r%d", i), sparseReader(int64(len(r)), r)); err != nil {
							storeErr = err
							break
						}
					}
					return builders.Result{Status: builders.BuildOK} // a manager ignoring the error
				}}
			})
			a := startJournalAgent(t, dir, func(c *Config) {
				c.Limits.ResultFileBytes, c.Limits.ResultTotalBytes = tc.file, tc.total
			})
			chroot := a.store(t, []byte("chroot"))
			a.rpc(t, "build", "JL-1", tag, chroot, map[string]any{}, map[string]any{"series": "noble"})
			waitAgentState(t, a.Builder(), BuilderWaiting)
			st := a.rpc(t, "status").(map[string]any)
			_, log := a.get(t, "buildlog")
			if tc.key == "" {
				if st["build_status"] != "BuildStatus.OK" || storeErr != nil {
					t.Errorf("status %v, store error %v", st["build_status"], storeErr)
				}
				return
			}
			if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
				t.Errorf("build_status = %v, want PACKAGEFAIL", st["build_status"])
			}
			if !errors.Is(storeErr, builders.ErrResultTooLarge) {
				t.Errorf("AddWaitingFile error %v does not wrap ErrResultTooLarge", storeErr)
			}
			if !bytes.Contains(log, []byte("over this builder's limit of "+tc.reported+" ([limits] "+tc.key+")")) {
				t.Errorf("build log does not explain the limit:\n%s", log)
			}
			last := tc.results[len(tc.results)-1]
			if a.cache.Has(sumOf([]byte(last))) {
				t.Errorf("the oversized result was stored")
			}
			fm := st["filemap"].(map[string]any)
			if _, ok := fm[fmt.Sprintf("r%d", len(tc.results)-1)]; ok {
				t.Errorf("the oversized result is in the filemap: %v", fm)
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "filecache"))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), tempPrefix) {
					t.Errorf("temporary file left: %s", e.Name())
				}
			}
		})
	}
}

// sparseReader reads s (a test's stand-in for file contents of size n).
func sparseReader(n int64, s string) io.Reader { return io.LimitReader(strings.NewReader(s), n) }

// TestBuildRefusedShortOfDisk: build() answers a clear Fault and the
// builder stays IDLE when free space is below min_free_bytes.
func TestBuildRefusedShortOfDisk(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	registerManager(t, "jt-disk", newGated().manager)
	tb.cfg.Builder.FileCacheDir = "/cache"
	tb.SetLimits(Limits{MinFreeBytes: 10 << 30})
	tb.freeSpace = func(string) (uint64, error) { return 3 << 30, nil }
	_, err := tb.rpc("build", "JK-1", "jt-disk", tb.chroot, map[string]any{}, map[string]any{"series": "noble"})
	f := faultOf(t, err)
	if !strings.Contains(f.String, "not enough free disk space: /cache has 3.0 GiB (3221225472 bytes) free, this builder needs 10.0 GiB (10737418240 bytes) ([limits] min_free_bytes)") {
		t.Errorf("fault = %q", f.String)
	}
	if tb.State() != BuilderIdle || tb.log.resets != 0 {
		t.Errorf("state %s, log resets %d", tb.State(), tb.log.resets)
	}
	tb.freeSpace = func(string) (uint64, error) { return 11 << 30, nil }
	if _, err := tb.rpc("build", "JK-1", "jt-disk", tb.chroot, map[string]any{}, map[string]any{"series": "noble"}); err != nil {
		t.Errorf("build with enough space: %v", err)
	}
}

// TestSweep removes every build-* under the build home and the work
// directory, and calls the registered sweepers.
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	a := startJournalAgent(t, dir, nil)
	for _, p := range []string{"builds/build-1/chroot/usr/bin/x", "builds/build-2/y", "work/build-1-abc/src/z", "builds/keep-me"} {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte("x"), 0o644)
	}
	os.Chmod(filepath.Join(dir, "builds/build-1/chroot/usr/bin"), 0o500) // builds make read-only trees
	var swept []string
	builders.RegisterSweeper("jt-sweeper", func(ctx context.Context, stateDir, buildHome string) error {
		swept = append(swept, stateDir, buildHome)
		return nil
	})
	t.Cleanup(func() { builders.UnregisterSweeper("jt-sweeper") })
	if err := a.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"builds/build-1", "builds/build-2", "work/build-1-abc"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not swept: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "builds/keep-me")); err != nil {
		t.Errorf("sweep removed a file that is not a build's: %v", err)
	}
	if diff := cmp.Diff([]string{dir, filepath.Join(dir, "builds")}, swept); diff != "" {
		t.Errorf("sweeper called with (-want +got):\n%s", diff)
	}
}

func TestParseMountsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 0:5 / /var/lib/b/builds/build-1/chroot/proc rw - proc proc rw
31 22 8:1 /home /var/lib/b/builds/build-1/chroot/home\040dir rw - ext4 /dev/sda1 rw
32 22 8:1 /x /var/lib/b/builds/build-10 rw - ext4 /dev/sda1 rw
`
	got, err := parseMountsUnder(strings.NewReader(info), "/var/lib/b/builds/build-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/var/lib/b/builds/build-1/chroot/proc", "/var/lib/b/builds/build-1/chroot/home dir"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
}

// TestJournalRoundTrip: what snapshotLocked writes, parseJournal accepts.
func TestJournalRoundTrip(t *testing.T) {
	rec := &journalRecord{
		Version: journalVersion, State: BuilderWaiting, BuildID: "B-1", Manager: "snap",
		Started: time.Unix(1700000000, 0).UTC(), Result: "BuildStatus.OK",
		Files:  []journalFile{{Name: "build:0/a.snap", SHA1: sumOf([]byte("a")), Owned: true, MTime: 42}},
		Extras: []journalExtra{{Key: "revision_id", Value: string(mustResponse(t, "abc"))}},
		Log:    "/var/lib/buildd-agent/buildlog", RevocationEndpoint: "http://x/revoke",
	}
	dir := t.TempDir()
	j := newJournal(dir)
	if err := j.write(rec); err != nil {
		t.Fatal(err)
	}
	got, err := j.read()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func mustResponse(t testing.TB, v any) []byte {
	b, err := AppendResponse(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParseJournal: any bytes are a record or an error, never a panic;
// an accepted record is one the builder can restore and re-journal.
func FuzzParseJournal(f *testing.F) {
	f.Add([]byte(`{"version":1,"state":"BuilderStatus.IDLE"}`))
	f.Add([]byte(`{"version":1,"state":"BuilderStatus.WAITING","build_id":"X","manager":"m","build_status":"BuildStatus.OK","filemap":[{"name":"a","sha1":"0123456789abcdef0123456789abcdef01234567","owned":true,"mtime":5}]}`))
	f.Add([]byte(`{"version":1,"state":"BuilderStatus.BUILDING","build_id":"X","manager":"m"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := parseJournal(data)
		if err != nil {
			return
		}
		b := newBuilder(builderDeps{cfg: &Config{Builder: BuilderConfig{Architectures: []string{"amd64"}}},
			logger: slog.New(slog.DiscardHandler), cache: newMemCache(), log: &memLog{}})
		b.restore(rec)
		b.mu.Lock()
		again := b.snapshotLocked()
		b.mu.Unlock()
		if rec.State == BuilderWaiting {
			if _, err := AppendResponse(nil, b.status()); err != nil {
				t.Fatalf("restored status does not serialise: %v", err)
			}
			if again.State != BuilderWaiting || again.BuildID != rec.BuildID || len(again.Files) != len(rec.Files) {
				t.Fatalf("restored %+v, re-journalled %+v", rec, again)
			}
		} else if again.State != BuilderIdle {
			t.Fatalf("a %s record restored as %s", rec.State, again.State)
		}
	})
}

package tests

// End-to-end tests of the real buildd-agent binary driven like Launchpad's
// buildd-manager: over HTTP on loopback, from Go (with the agent's own
// codec, the master's half) and from Python's stdlib xmlrpc.client (the
// marshaller Launchpad uses). The binary is built with -tags e2etest, which
// adds the "e2etest" build manager (cmd/buildd-agent/testmanager_e2e.go):
// it builds nothing, but logs, stores results and sets status extras
// through the real agent, file cache and build log.

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func agentE2ESum(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// agentE2EBinary builds cmd/buildd-agent with the e2etest manager.
func agentE2EBinary(t *testing.T) string {
	return agentE2EBuild(t, "e2etest")
}

func agentE2EBuild(t *testing.T, tags string) string {
	t.Helper()
	testenv.RequireCommand(t, "go")
	bin := filepath.Join(t.TempDir(), "buildd-agent")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, "./cmd/buildd-agent")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cannot build buildd-agent: %v\n%s", err, out)
	}
	return bin
}

// agentE2EFreePort picks a loopback port for the child (which has to be
// told its port in the config, so 127.0.0.1:0 cannot be used).
func agentE2EFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type agentDaemon struct {
	url      string
	stateDir string
	output   *testenv.SyncBuffer
}

// startAgentDaemon runs `buildd-agent run --config F` on a free loopback
// port with the embedded default configuration, modified by mutate, and
// waits until it answers.
func startAgentDaemon(t *testing.T, bin string, mutate func(*agent.Config)) *agentDaemon {
	t.Helper()
	var cfg agent.Config
	if _, err := toml.Decode(string(agent.DefaultConfigTOML), &cfg); err != nil {
		t.Fatalf("cannot decode the default config: %v", err)
	}
	dir := t.TempDir()
	cfg.Builder.BindAddress = "127.0.0.1"
	cfg.Builder.StateDir = filepath.Join(dir, "state")
	cfg.Builder.AbortTimeout.Duration = 3 * time.Second
	cfg.Limits.RequestBodyBytes = 256 << 10
	cfg.Log.Level = "debug"
	if mutate != nil {
		mutate(&cfg)
	}
	for attempt := 0; ; attempt++ {
		cfg.Builder.Port = agentE2EFreePort(t)
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(dir, "buildd-agent.toml")
		if err := os.WriteFile(cfgPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		d := &agentDaemon{url: fmt.Sprintf("http://127.0.0.1:%d", cfg.Builder.Port), stateDir: cfg.Builder.StateDir, output: &testenv.SyncBuffer{}}
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = d.output, d.output
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Logf("buildd-agent exited after SIGTERM: %v", err)
				}
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Errorf("buildd-agent did not exit on SIGTERM")
			}
			if t.Failed() {
				t.Logf("buildd-agent output:\n%s", d.output.String())
			}
		})
		// Wait until it answers (a bound against hangs, not a timing claim).
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := d.call("echo"); err == nil {
				return d
			}
			select {
			case err := <-exited:
				if attempt < 3 && strings.Contains(d.output.String(), "address already in use") {
					t.Logf("port %d taken meanwhile; retrying", cfg.Builder.Port)
					goto retry
				}
				t.Fatalf("buildd-agent exited before answering: %v\n%s", err, d.output.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("buildd-agent does not answer on %s\n%s", d.url, d.output.String())
			}
		}
	retry:
	}
}

// call is one XML-RPC call as buildd-manager makes it. A fault is returned
// as *agent.Fault; transport problems as other errors.
func (d *agentDaemon) call(method string, params ...any) (any, error) {
	return rpcCall(d.url, method, params...)
}

// rpcCall posts one XML-RPC call to base+"/rpc" as buildd-manager does and
// decodes the answer; the e2e tests of every manager share it.
func rpcCall(base, method string, params ...any) (any, error) {
	body, err := agent.AppendRequest(nil, method, params...)
	if err != nil {
		return nil, err
	}
	resp, err := http.Post(base+"/rpc", "text/xml", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
		return nil, fmt.Errorf("Content-Type %q", ct)
	}
	return agent.DecodeResponse(resp.Body)
}

func (d *agentDaemon) mustCall(t *testing.T, method string, params ...any) any {
	t.Helper()
	v, err := d.call(method, params...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return v
}

func (d *agentDaemon) status(t *testing.T) map[string]any {
	t.Helper()
	return d.mustCall(t, "status").(map[string]any)
}

// waitFor polls status() until builder_status is state and returns the
// states seen on the way.
func (d *agentDaemon) waitFor(t *testing.T, state string) (map[string]any, []string) {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := d.status(t)
		s := st["builder_status"].(string)
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if s == state {
			return st, seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("builder still %s, not %s (seen %v)", s, state, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *agentDaemon) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(d.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// agentE2ELibrarian is a stand-in for Launchpad's librarian: files by path, behind
// HTTP basic auth (LP sends a macaroon as the password).
type agentE2ELibrarian struct {
	*httptest.Server
	user, pass string
}

func startAgentE2ELibrarian(t *testing.T, files map[string][]byte) *agentE2ELibrarian {
	l := &agentE2ELibrarian{user: "", pass: "macaroon-e2e-secret"}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != l.user || p != l.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="agentE2ELibrarian"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(l.Close)
	return l
}

// TestAgentE2E builds the binary once and runs each scenario against a
// daemon of its own.
func TestAgentE2E(t *testing.T) {
	bin := agentE2EBinary(t)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, string)
	}{
		{"BuildFlow", agentE2EBuildFlow},
		{"Results", agentE2EResults},
		{"Abort", agentE2EAbort},
		{"PythonClient", agentE2EPythonClient},
		{"BadInput", agentE2EBadInput},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, bin) })
	}
	t.Run("ShippedBinaryHasNoTestManager", func(t *testing.T) {
		d := startAgentDaemon(t, agentE2EBuild(t, ""), nil)
		info := d.mustCall(t, "info").([]any)
		if strings.Contains(fmt.Sprint(info[2]), "e2etest") {
			t.Errorf("the shipped binary lists the e2etest manager: %v", info)
		}
		v := d.mustCall(t, "build", "B-1", "e2etest", strings.Repeat("0", 40), map[string]any{}, map[string]any{}).([]any)
		if v[0] != "BuilderStatus.UNKNOWNBUILDER" {
			t.Errorf("build with the e2etest tag = %v", v)
		}
	})
}

var agentE2EArtifact = bytes.Repeat([]byte{0, 1, 2, 253, 254, 255}, 20000)

func agentE2EBuildFlow(t *testing.T, bin string) {
	d := startAgentDaemon(t, bin, nil)
	chroot := bytes.Repeat([]byte("chroot tarball "), 10000)
	source := []byte("Source: hello\n")
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/1/chroot.tar.gz": chroot, "/2/hello.dsc": source, "/3/wrong": []byte("not it")})
	chrootSum, sourceSum := agentE2ESum(chroot), agentE2ESum(source)

	info := d.mustCall(t, "info").([]any)
	if info[0] != "1.0" || info[1] != "amd64" || !strings.Contains(fmt.Sprint(info[2]), "e2etest") {
		t.Errorf("info = %v", info)
	}
	if st := d.status(t); !cmp.Equal(st, map[string]any{"builder_status": "BuilderStatus.IDLE", "builder_version": st["builder_version"]}) || st["builder_version"] == "" {
		t.Errorf("IDLE status = %v", st)
	}

	ensure := []struct {
		sum, url, user, pass string
		want                 []any
	}{
		{chrootSum, lib.URL + "/1/chroot.tar.gz", "", "wrong", []any{false, "Error accessing Librarian: "}},
		{chrootSum, lib.URL + "/1/chroot.tar.gz", lib.user, lib.pass, []any{true, "Download"}},
		{chrootSum, lib.URL + "/1/chroot.tar.gz", lib.user, lib.pass, []any{true, "Cache"}},
		{sourceSum, lib.URL + "/3/wrong", lib.user, lib.pass, []any{false, "Digests did not match, removing again!"}},
		{sourceSum, lib.URL + "/2/hello.dsc", lib.user, lib.pass, []any{true, "Download"}},
	}
	for _, e := range ensure {
		v := d.mustCall(t, "ensurepresent", e.sum, e.url, e.user, e.pass).([]any)
		if v[0] != e.want[0] || !strings.HasPrefix(v[1].(string), e.want[1].(string)) {
			t.Errorf("ensurepresent(%s, %s, %q) = %v, want %v", e.sum, e.url, e.pass, v, e.want)
		}
	}

	args := map[string]any{"series": "noble", "result": "ok", "sleep": 0.5, "output": "hello from go\n",
		"build_url": "https://launchpad.test/~e2e/+build/1", "proxy_url": "http://u:e2e-proxy-token@127.0.0.1:9/"}
	v := d.mustCall(t, "build", "SNAPBUILD-1", "e2etest", chrootSum, map[string]any{"hello.dsc": sourceSum}, args)
	if !cmp.Equal(v, []any{"BuilderStatus.BUILDING", "SNAPBUILD-1"}) {
		t.Fatalf("build = %v", v)
	}
	st := d.status(t)
	if st["builder_status"] == "BuilderStatus.BUILDING" {
		if _, ok := st["logtail"].([]byte); !ok || st["build_id"] != "SNAPBUILD-1" {
			t.Errorf("BUILDING status = %v", st)
		}
	}
	if pi := d.mustCall(t, "proxy_info"); !cmp.Equal(pi, map[string]any{"use_fetch_service": false, "revocation_endpoint": ""}) {
		t.Errorf("proxy_info = %v", pi)
	}
	st, seen := d.waitFor(t, "BuilderStatus.WAITING")
	outSum, artSum := agentE2ESum([]byte("hello from go\n")), agentE2ESum(agentE2EArtifact)
	want := map[string]any{
		"builder_status": "BuilderStatus.WAITING", "builder_version": st["builder_version"], "build_id": "SNAPBUILD-1",
		"build_status": "BuildStatus.OK", "dependencies": "", "revision_id": "e2e0123456789abcdef0123456789abcdef01234",
		"filemap": map[string]any{"output.txt": outSum, "build:0/artifact.bin": artSum},
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("WAITING status (-want +got):\n%s (states seen %v)", diff, seen)
	}
	for name, sum := range st["filemap"].(map[string]any) {
		code, body := d.get(t, "/filecache/"+sum.(string))
		if code != 200 || agentE2ESum(body) != sum {
			t.Errorf("%s: HTTP %d, %d bytes with SHA-1 %s", name, code, len(body), agentE2ESum(body))
		}
	}
	code, buildlog := d.get(t, "/filecache/buildlog")
	log := string(buildlog)
	if code != 200 || !strings.HasPrefix(log, "https://launchpad.test/~e2e/+build/1\n") ||
		!strings.Contains(log, "input hello.dsc: 14 bytes\n") || !strings.Contains(log, "e2etest build SNAPBUILD-1 done: ok\n") {
		t.Errorf("build log: HTTP %d\n%s", code, log)
	}
	if v := d.mustCall(t, "clean"); v != "BuilderStatus.IDLE" {
		t.Errorf("clean = %v", v)
	}
	if code, _ := d.get(t, "/filecache/"+outSum); code != 404 {
		t.Errorf("result still served after clean: %d", code)
	}
	if code, body := d.get(t, "/filecache/"+chrootSum); code != 200 || !bytes.Equal(body, chroot) {
		t.Errorf("chroot after clean: %d", code)
	}
	if st := d.status(t); st["builder_status"] != "BuilderStatus.IDLE" || len(st) != 2 {
		t.Errorf("status after clean = %v", st)
	}
}

func agentE2EResults(t *testing.T, bin string) {
	d := startAgentDaemon(t, bin, nil)
	chroot := []byte("chroot")
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/c": chroot})
	d.mustCall(t, "ensurepresent", agentE2ESum(chroot), lib.URL+"/c", lib.user, lib.pass)
	tests := []struct {
		result, status string
		filemap        bool
		deps           string
	}{
		{"packagefail", "BuildStatus.PACKAGEFAIL", true, ""},
		{"depfail", "BuildStatus.DEPFAIL", true, "libe2e-dev (>= 1.0)"},
		{"givenback", "BuildStatus.GIVENBACK", false, ""},
		{"chrootfail", "BuildStatus.CHROOTFAIL", false, ""},
		{"builderfail", "BuildStatus.BUILDERFAIL", false, ""},
		{"panic", "BuildStatus.BUILDERFAIL", false, ""},
	}
	for i, tt := range tests {
		t.Run(tt.result, func(t *testing.T) {
			id := fmt.Sprintf("BUILD-%d", i)
			d.mustCall(t, "build", id, "e2etest", agentE2ESum(chroot), map[string]any{}, map[string]any{"series": "noble", "result": tt.result})
			st, _ := d.waitFor(t, "BuilderStatus.WAITING")
			if st["build_status"] != tt.status || st["build_id"] != id {
				t.Errorf("status = %v", st)
			}
			if _, has := st["filemap"]; has != tt.filemap {
				t.Errorf("filemap present = %v, want %v", has, tt.filemap)
			}
			if tt.filemap && st["dependencies"] != tt.deps {
				t.Errorf("dependencies = %q", st["dependencies"])
			}
			if tt.result == "panic" {
				_, log := d.get(t, "/filecache/buildlog")
				if !strings.Contains(string(log), "Internal error in the e2etest build manager") {
					t.Errorf("build log after panic:\n%s", log)
				}
			}
			d.mustCall(t, "clean")
		})
	}
}

func agentE2EAbort(t *testing.T, bin string) {
	d := startAgentDaemon(t, bin, func(c *agent.Config) { c.Builder.AbortTimeout.Duration = 2 * time.Second })
	chroot := []byte("chroot")
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/c": chroot})
	d.mustCall(t, "ensurepresent", agentE2ESum(chroot), lib.URL+"/c", lib.user, lib.pass)
	for _, tt := range []struct {
		name         string
		ignoreCancel bool
		want         string
	}{
		{"cancelled", false, "BuildStatus.ABORTED"},
		{"stuck", true, "BuildStatus.BUILDERFAIL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d.mustCall(t, "build", "ABORT-1", "e2etest", agentE2ESum(chroot), map[string]any{},
				map[string]any{"series": "noble", "sleep": int64(600), "ignore_cancel": tt.ignoreCancel})
			if v := d.mustCall(t, "abort"); v != "BuilderStatus.ABORTING" {
				t.Fatalf("abort = %v", v)
			}
			if tt.ignoreCancel {
				// Still ABORTING (the manager ignores cancellation): a
				// repeated abort is a no-op.
				if v := d.mustCall(t, "abort"); v != "BuilderStatus.ABORTING" {
					t.Fatalf("second abort = %v", v)
				}
				if st := d.status(t); st["builder_status"] != "BuilderStatus.ABORTING" || st["build_id"] != "ABORT-1" || st["logtail"] != nil {
					t.Errorf("ABORTING status = %v", st)
				}
			}
			st, _ := d.waitFor(t, "BuilderStatus.WAITING")
			if st["build_status"] != tt.want || st["filemap"] != nil {
				t.Errorf("status = %v", st)
			}
			_, log := d.get(t, "/filecache/buildlog")
			if tt.ignoreCancel != strings.Contains(string(log), "ABORTING: Failed to kill all processes.\n") {
				t.Errorf("build log:\n%s", log)
			}
			d.mustCall(t, "clean")
		})
	}
}

func agentE2EPythonClient(t *testing.T, bin string) {
	python := testenv.RequireCommand(t, "python3")
	d := startAgentDaemon(t, bin, nil)
	chroot := bytes.Repeat([]byte("python chroot\n"), 5000)
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/chroot": chroot})
	cmd := exec.Command(python, filepath.Join(testenv.RepoRoot(), "tests", "xmlrpc_client.py"),
		d.url, agentE2ESum(chroot), lib.URL+"/chroot", lib.user, lib.pass, "PYBUILD-1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xmlrpc_client.py: %v\n%s", err, stderr.String())
	}
	var res struct {
		Echo               []any                     `json:"echo"`
		Info               []any                     `json:"info"`
		Faults             map[string][2]any         `json:"faults"`
		EnsurePresent      []any                     `json:"ensurepresent"`
		EnsurePresentAgain []any                     `json:"ensurepresent_again"`
		EnsurePresentNoURL []any                     `json:"ensurepresent_nourl"`
		UnknownBuilder     []any                     `json:"unknownbuilder"`
		UnknownSum         []any                     `json:"unknownsum"`
		Build              []any                     `json:"build"`
		BuildBusy          [2]any                    `json:"build_busy"`
		StatesSeen         []string                  `json:"states_seen"`
		Building           *struct{ Keys []string }  `json:"building"`
		ProxyInfo          map[string]any            `json:"proxy_info"`
		Waiting            map[string]any            `json:"waiting"`
		Files              map[string]map[string]any `json:"files"`
		BuildLog           string                    `json:"buildlog"`
		Clean              string                    `json:"clean"`
		Aborted            map[string]any            `json:"aborted"`
		Final              map[string]any            `json:"final"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("cannot parse the client's output: %v\n%s", err, out)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	check("echo[:3]", res.Echo[:3], []any{"Hello World", 1.0, nil})
	check("faults", res.Faults, map[string][2]any{
		"unknown":               {8001.0, "procedure nosuchmethod not found"},
		"abort_idle":            {8002.0, "abort: the builder is IDLE; only a BUILDING build can be aborted"},
		"clean_idle":            {8002.0, "clean: the builder is IDLE; only a WAITING builder can be cleaned"},
		"proxy_info_idle":       {8002.0, "proxy_info: the builder is IDLE: there is no build to report on"},
		"ensurepresent_arity":   {8002.0, "ensurepresent: takes 4 parameters (sha1sum, url, username, password), got 1"},
		"build_bad_buildid":     {8002.0, "build: parameter 1 (buildid) must be a non-empty string, got an empty string"},
		"ensurepresent_url_int": {8002.0, "ensurepresent: parameter 2 (url) must be a string or nil, got int"},
		"build_args_nil":        {8002.0, "build: parameter 5 (args) must be a struct, got nil"},
		"build_filemap_list":    {8002.0, "build: parameter 4 (filemap) must be a struct, got array"},
	})
	check("aborted", res.Aborted, map[string]any{"builder_status": "BuilderStatus.WAITING", "builder_version": res.Aborted["builder_version"],
		"build_id": "PYBUILD-1-abort", "build_status": "BuildStatus.ABORTED"})
	check("ensurepresent", res.EnsurePresent, []any{true, "Download"})
	check("ensurepresent again", res.EnsurePresentAgain, []any{true, "Cache"})
	check("ensurepresent no URL", res.EnsurePresentNoURL, []any{false, "No URL"})
	if len(res.UnknownBuilder) != 2 || res.UnknownBuilder[0] != "BuilderStatus.UNKNOWNBUILDER" ||
		!strings.HasPrefix(res.UnknownBuilder[1].(string), "nonexistentbuilder not in [") || !strings.Contains(res.UnknownBuilder[1].(string), "'e2etest'") {
		t.Errorf("unknown builder = %v", res.UnknownBuilder)
	}
	check("unknown sum", res.UnknownSum, []any{"BuilderStatus.UNKNOWNSUM", "CHROOTSUM -> " + strings.Repeat("1", 40) +
		"\n            ***** INFO *****\n            No URL\n            ****************\n            "})
	check("build", res.Build, []any{"BuilderStatus.BUILDING", "PYBUILD-1"})
	if res.BuildBusy[0] != 8002.0 || !strings.Contains(res.BuildBusy[1].(string), "not IDLE") {
		t.Errorf("build while busy = %v", res.BuildBusy)
	}
	if res.StatesSeen[len(res.StatesSeen)-1] != "BuilderStatus.WAITING" {
		t.Errorf("states seen = %v", res.StatesSeen)
	}
	if res.Building != nil {
		check("BUILDING keys", res.Building.Keys, []string{"build_id", "builder_status", "builder_version", "logtail"})
		check("proxy_info", res.ProxyInfo, map[string]any{"use_fetch_service": false, "revocation_endpoint": ""})
	} else {
		t.Log("the build finished before the client saw BUILDING")
	}
	check("build_status", res.Waiting["build_status"], "BuildStatus.OK")
	check("files", res.Files, map[string]map[string]any{
		"output.txt":           {"sha1": agentE2ESum([]byte("hello from python\n")), "size": 18.0},
		"build:0/artifact.bin": {"sha1": agentE2ESum(agentE2EArtifact), "size": float64(len(agentE2EArtifact))},
	})
	if !strings.HasPrefix(res.BuildLog, "https://launchpad.test/~e2e/+snap/s/+build/1\n") || strings.Contains(res.BuildLog, "e2e-proxy-secret") ||
		!strings.Contains(res.BuildLog, "input chroot.tar: 70000 bytes") {
		t.Errorf("build log:\n%s", res.BuildLog)
	}
	check("clean", res.Clean, "BuilderStatus.IDLE")
	check("final status", res.Final["builder_status"], "BuilderStatus.IDLE")
}

// Bad input for every method over HTTP: a clear fault (or HTTP error), and
// the builder loses nothing.
func agentE2EBadInput(t *testing.T, bin string) {
	d := startAgentDaemon(t, bin, nil)
	chroot := []byte("chroot")
	lib := startAgentE2ELibrarian(t, map[string][]byte{"/c": chroot})
	c := agentE2ESum(chroot)
	d.mustCall(t, "ensurepresent", c, lib.URL+"/c", lib.user, lib.pass)
	ok := map[string]any{"series": "noble"}
	tests := []struct {
		method string
		params []any
		fault  string
	}{
		{"echo", []any{}, ""},
		{"info", []any{"x"}, "info: takes no parameters, got 1"},
		{"status", []any{int64(1), int64(2)}, "status: takes no parameters, got 2"},
		{"proxy_info", []any{}, "proxy_info: the builder is IDLE"},
		{"abort", []any{}, "abort: the builder is IDLE"},
		{"abort", []any{true}, "abort: takes no parameters"},
		{"clean", []any{}, "clean: the builder is IDLE"},
		{"clean", []any{nil}, "clean: takes no parameters"},
		{"ensurepresent", []any{c}, "ensurepresent: takes 4 parameters"},
		{"ensurepresent", []any{c, nil, nil, nil, nil}, "ensurepresent: takes 4 parameters"},
		{"ensurepresent", []any{int64(1), nil, nil, nil}, "parameter 1 (sha1sum) must be a string, got int"},
		{"ensurepresent", []any{c, int64(1), nil, nil}, "ensurepresent: parameter 2 (url) must be a string or nil, got int"},
		{"ensurepresent", []any{c, nil, []any{}, nil}, "parameter 3 (username) must be a string or nil, got array"},
		{"ensurepresent", []any{c, nil, nil, 1.5}, "parameter 4 (password) must be a string or nil, got double"},
		{"build", []any{}, "build: takes 5 parameters"},
		{"build", []any{"B", "e2etest", c, map[string]any{}}, "build: takes 5 parameters"},
		{"build", []any{"B", []byte("e2etest"), c, map[string]any{}, ok}, "parameter 2 (managertag) must be a string, got base64"},
		{"build", []any{"B", "e2etest", true, map[string]any{}, ok}, "parameter 3 (chrootsum) must be a string, got boolean"},
		{"build", []any{"B", "e2etest", c, "x", ok}, "parameter 4 (filemap) must be a struct, got string"},
		{"build", []any{"B", "e2etest", c, map[string]any{"../../../etc/passwd": c}, ok}, `parameter 4 (filemap): name "../../../etc/passwd" is not a plain file name`},
		{"build", []any{"B", "e2etest", c, map[string]any{"x": nil}, ok}, `entry "x" must be a string (a SHA-1), got nil`},
		{"build", []any{"B", "e2etest", c, map[string]any{}, []any{}}, "parameter 5 (args) must be a struct, got array"},
		{"build", []any{"../../x", "e2etest", c, map[string]any{}, ok}, "is not usable as a build id"},
		{"build", []any{int64(0), "e2etest", c, map[string]any{}, ok}, "must be a non-empty string, got int 0"},
		{"build", []any{"B", "e2etest", c, map[string]any{}, map[string]any{"result": "explode"}}, `build: invalid build argument "result"`},
		{"build", []any{"B", "e2etest", c, map[string]any{}, map[string]any{"sleep": "long"}}, `build: invalid build argument "sleep"`},
	}
	for _, tt := range tests {
		v, err := d.call(tt.method, tt.params...)
		if tt.fault == "" {
			if err != nil {
				t.Errorf("%s%v: %v", tt.method, tt.params, err)
			}
			continue
		}
		var f *agent.Fault
		if !errors.As(err, &f) || f.Code != 8002 || !strings.Contains(f.String, tt.fault) {
			t.Errorf("%s%v = %v, %v; want fault 8002 containing %q", tt.method, tt.params, v, err, tt.fault)
		}
	}
	// Traversal through ensurepresent's sha1: refused, nothing written.
	v := d.mustCall(t, "ensurepresent", "../../../../tmp/agent-e2e-escape", lib.URL+"/c", lib.user, lib.pass).([]any)
	if v[0] != false {
		t.Errorf("ensurepresent with a traversal sha1 = %v", v)
	}
	if _, err := os.Stat("/tmp/agent-e2e-escape"); err == nil {
		t.Error("ensurepresent wrote outside the cache")
	}
	// HTTP-level abuse.
	for _, path := range []string{"/filecache/../../../../etc/passwd", "/filecache/%2e%2e/%2e%2e/etc/passwd", "/filecache/", "/filecache/" + c + ".tmp"} {
		code, body := d.get(t, path)
		if code == 200 && (bytes.Contains(body, []byte("root:")) || path == "/filecache/") {
			t.Errorf("GET %s: %d %q", path, code, body)
		}
	}
	resp, err := http.Get(d.url + "/rpc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /rpc: %s, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}
	big, _ := agent.AppendRequest(nil, "echo", strings.Repeat("x", 300<<10))
	resp, err = http.Post(d.url+"/rpc", "text/xml", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("oversized body: %s", resp.Status)
	}
	for _, body := range []string{"", "<methodCall>", "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><methodCall><methodName>echo</methodName><params><param><value>&e;</value></param></params></methodCall>"} {
		resp, err := http.Post(d.url+"/rpc", "text/xml", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, err = agent.DecodeResponse(resp.Body)
		resp.Body.Close()
		var f *agent.Fault
		if !errors.As(err, &f) || f.Code != 8002 || !strings.HasPrefix(f.String, "Can't deserialize input: ") {
			t.Errorf("body %q: %v", body, err)
		}
	}
	// None of it changed anything: the builder is IDLE and builds.
	if st := d.status(t); st["builder_status"] != "BuilderStatus.IDLE" {
		t.Fatalf("status after bad input = %v", st)
	}
	d.mustCall(t, "build", "GOOD-1", "e2etest", c, map[string]any{}, ok)
	if st, _ := d.waitFor(t, "BuilderStatus.WAITING"); st["build_status"] != "BuildStatus.OK" {
		t.Errorf("status = %v", st)
	}
	// Calls that are wrong in this state.
	for _, m := range []string{"abort", "build"} {
		params := []any{}
		if m == "build" {
			params = []any{"GOOD-2", "e2etest", c, map[string]any{}, ok}
		}
		if _, err := d.call(m, params...); err == nil {
			t.Errorf("%s while WAITING succeeded", m)
		}
	}
	if st := d.status(t); st["build_id"] != "GOOD-1" {
		t.Errorf("refused build changed build_id: %v", st)
	}
	d.mustCall(t, "clean")
}

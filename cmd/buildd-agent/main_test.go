package main

import (
	"bytes"
	"context"
	"crypto/sha1"
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

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// agentBinary is the real buildd-agent, built once for these tests.
var agentBinary string

const testVersion = "9.9.9-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "buildd-agent-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // TestRunAsUser runs it as nobody
	agentBinary = filepath.Join(dir, "buildd-agent")
	build := exec.Command("go", "build", "-o", agentBinary,
		"-ldflags", "-X github.com/buildd-agent/buildd-agent/agent.Version="+testVersion, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot build buildd-agent:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runAgent runs the binary to completion.
func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBinary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("cannot run buildd-agent: %v", err)
	}
	return o.String(), e.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := runBinary(t, "version")
	if code != 0 || !strings.HasPrefix(out, "buildd-agent "+testVersion+" (go") {
		t.Errorf("version: %q, exit %d", out, code)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.toml", "[builder]\nport = \"8221\"\nbindhost = \"0.0.0.0\"\n\n[lxd]\nsubnet = \"10.10.10.0/24\"\n")
	syntax := write("syntax.toml", "[builder\n")
	example := filepath.Join(testenv.RepoRoot(), "etc", "buildd-agent.toml")
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{"example passes", []string{"config", "check", example}, "ok\n", "", 0},
		{"every problem with file and line", []string{"config", "check", bad},
			bad + ":2: builder.port: wrong type: the value is string, expected integer\n" +
				bad + ":3: builder.bindhost: unknown key\n" +
				bad + ":6: lxd.subnet: 10.10.10.0 is the network address; give the bridge's own address, like 10.10.10.1\n",
			"", 1},
		{"syntax error", []string{"config", "check", syntax}, syntax + ":1: ", "", 1},
		{"missing file", []string{"config", "check", filepath.Join(dir, "nope.toml")}, "", "buildd-agent: cannot read configuration: open ", 1},
		{"no file", []string{"config", "check"}, "", "accepts 1 arg(s), received 0", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runBinary(t, tt.args...)
			if code != tt.wantCode || !strings.HasPrefix(out, tt.wantOut) || (tt.wantOut == "" && out != "") ||
				!strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr containing %q",
					code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestConfigShow(t *testing.T) {
	out, _, code := runBinary(t, "config", "show")
	if code != 0 || !strings.Contains(out, "[builder]") || !strings.Contains(out, `file_cache_dir = "`) {
		t.Errorf("config show: exit %d, %q", code, out)
	}
}

// freePort finds a port free on host.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// agentProcess is a running `buildd-agent run`.
type agentProcess struct {
	base   string // http://host:port
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	exited chan struct{} // closed when it has exited (cmd.ProcessState is then set)
}

// startAgent starts `buildd-agent run` on a fresh state directory (which
// prepare, if set, may fill first) and waits until it answers.
func startAgent(t *testing.T, host string, prepare func(stateDir string), extraEnv ...string) *agentProcess {
	t.Helper()
	dir := t.TempDir()
	if prepare != nil {
		prepare(filepath.Join(dir, "state"))
	}
	return startAgentIn(t, dir, host, extraEnv...)
}

// startAgentIn starts `buildd-agent run` with its configuration and state
// in dir (state in dir/state) and waits until it answers.
func startAgentIn(t *testing.T, dir, host string, extraEnv ...string) *agentProcess {
	t.Helper()
	port := freePort(t, host)
	config := filepath.Join(dir, "buildd-agent.toml")
	os.WriteFile(config, fmt.Appendf(nil, "[builder]\nbind_address = %q\nport = %d\nstate_dir = %q\nbackend = \"chroot\"\n[log]\nlevel = \"debug\"\n",
		host, port, filepath.Join(dir, "state")), 0o644)
	p := &agentProcess{
		cmd:    exec.Command(agentBinary, "run", "--config", config),
		stderr: &testenv.SyncBuffer{},
		exited: make(chan struct{}),
		base:   "http://" + net.JoinHostPort(host, fmt.Sprint(port)),
	}
	p.cmd.Env = append(os.Environ(), extraEnv...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	for {
		conn, err := net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err == nil {
			conn.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("buildd-agent exited: %s", p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

const statusCall = `<?xml version="1.0"?><methodCall><methodName>status</methodName><params/></methodCall>`

func TestRunServesAndStopsOnSIGTERM(t *testing.T) {
	// systemd's notification socket, to see READY=1.
	sockPath := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	// 127.0.0.2: the configured bind address is honoured, not 0.0.0.0.
	p := startAgent(t, "127.0.0.2", nil, "NOTIFY_SOCKET="+sockPath)
	base := p.base

	resp, err := http.Post(base+"/rpc", "text/xml", strings.NewReader(statusCall))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("BuilderStatus.IDLE")) || !bytes.Contains(body, []byte(testVersion)) {
		t.Errorf("status() = %s", body)
	}
	resp, err = http.Get(base + "/filecache/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/filecache/ listing: %d", resp.StatusCode)
	}

	// ensurepresent from a librarian with pre-emptive authentication, then
	// the file served back by the daemon's /filecache/ with a range.
	content := []byte("chroot tarball bytes")
	sum := fmt.Sprintf("%x", sha1.Sum(content))
	lib := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "" || p != "macaroon" {
			http.NotFound(w, r)
			return
		}
		w.Write(content)
	}))
	defer lib.Close()
	call := `<?xml version="1.0"?><methodCall><methodName>ensurepresent</methodName><params>` +
		`<param><value><string>` + sum + `</string></value></param>` +
		`<param><value><string>` + lib.URL + `/f</string></value></param>` +
		`<param><value><string></string></value></param>` +
		`<param><value><string>macaroon</string></value></param></params></methodCall>`
	resp, err = http.Post(base+"/rpc", "text/xml", strings.NewReader(call))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("<boolean>1</boolean>")) || !bytes.Contains(body, []byte("Download")) {
		t.Errorf("ensurepresent() = %s", body)
	}
	req, _ := http.NewRequest("GET", base+"/filecache/"+sum, nil)
	req.Header.Set("Range", "bytes=7-13")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "tarball" {
		t.Errorf("GET /filecache/<sha1> with a range: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/filecache/buildlog")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET /filecache/buildlog: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	port := strings.TrimPrefix(base, "http://127.0.0.2:")
	if conn, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
		conn.Close()
		t.Errorf("agent bound to 127.0.0.2 answers on 127.0.0.1")
	}

	buf := make([]byte, 64)
	notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := notify.Read(buf); err != nil || string(buf[:n]) != "READY=1" {
		t.Errorf("sd_notify: %q, %v", buf[:n], err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("buildd-agent did not stop on SIGTERM: %s", p.stderr.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM: %s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop in the log: %s", p.stderr.String())
	}
}

// A user other than root runs the agent with its state under
// $XDG_STATE_HOME (here: ~/.local/state), and without LXD access.
func TestRunAsUser(t *testing.T) {
	testenv.RequireRoot(t)
	home, err := os.MkdirTemp("", "buildd-agent-home-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	const nobody = 65534
	os.Chmod(home, 0o755)
	os.Chown(home, nobody, nobody)
	config := filepath.Join(home, "c.toml")
	port := freePort(t, "127.0.0.1")
	os.WriteFile(config, fmt.Appendf(nil, "[builder]\nport = %d\n", port), 0o644)
	cmd := exec.Command(agentBinary, "run", "--config", config)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	url := fmt.Sprintf("http://127.0.0.1:%d/rpc", port)
	for {
		resp, err := http.Post(url, "text/xml", strings.NewReader(statusCall))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(body, []byte("BuilderStatus.IDLE")) {
				t.Errorf("status() = %s", body)
			}
			break
		}
		select {
		case <-exited:
			t.Fatalf("buildd-agent exited: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	state := filepath.Join(home, ".local", "state", "buildd-agent")
	for _, d := range []string{"filecache", "builds"} {
		fi, err := os.Stat(filepath.Join(state, d))
		if err != nil {
			t.Errorf("state directory: %v", err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
			t.Errorf("%s owned by %d", d, st.Uid)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

// At start the daemon removes cached files unused for file_cache_max_age
// (48h by default) and temporary files a killed agent left.
func TestRunPrunesFileCache(t *testing.T) {
	old := strings.Repeat("a", 40)
	fresh := strings.Repeat("b", 40)
	var cacheDir string
	p := startAgent(t, "127.0.0.1", func(state string) {
		cacheDir = filepath.Join(state, "filecache")
		os.MkdirAll(cacheDir, 0o755)
		for _, name := range []string{old, fresh, ".partial-123"} {
			os.WriteFile(filepath.Join(cacheDir, name), []byte(name), 0o644)
		}
		past := time.Now().Add(-72 * time.Hour)
		os.Chtimes(filepath.Join(cacheDir, old), past, past)
	})
	// Pruning runs beside serving: wait for it (bounded).
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(cacheDir, old)); os.IsNotExist(err) {
			break
		}
		if i > 3000 {
			t.Fatalf("old cache file not pruned: %s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	entries, _ := os.ReadDir(cacheDir)
	if len(entries) != 1 || entries[0].Name() != fresh {
		t.Errorf("file cache after start: %v", entries)
	}
}

// At start the daemon also keeps the git mirror cache under
// git_mirror_max_bytes, removing the least recently used mirrors.
func TestRunPrunesGitMirrors(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	mirrors := filepath.Join(state, "git-mirrors")
	for i, name := range []string{"old", "new"} {
		pack := filepath.Join(mirrors, name+".git", "objects", "pack")
		if err := os.MkdirAll(pack, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pack, "pack-1.pack"), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		used := time.Now().Add(time.Duration(i-2) * time.Hour)
		os.WriteFile(filepath.Join(mirrors, name+".lock"), nil, 0o644)
		os.Chtimes(filepath.Join(mirrors, name+".lock"), used, used)
	}
	config := filepath.Join(dir, "buildd-agent.toml")
	os.WriteFile(config, fmt.Appendf(nil, "[builder]\nport = %d\nstate_dir = %q\nbackend = \"chroot\"\ngit_mirror_max_bytes = %d\n",
		freePort(t, "127.0.0.1"), state, 100<<10), 0o644)
	cmd := exec.Command(agentBinary, "run", "--config", config)
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Pruning runs beside serving: wait for it (bounded).
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(mirrors, "old.git")); os.IsNotExist(err) {
			break
		}
		if i > 3000 {
			t.Fatalf("least recently used mirror not pruned: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(mirrors, "new.git")); err != nil {
		t.Errorf("the recently used mirror was pruned too: %v", err)
	}
}

// A download in flight when the agent is killed leaves a temporary file;
// the next start removes it.
func TestRunRemovesTemporariesOfKilledAgent(t *testing.T) {
	hang := make(chan struct{})
	lib := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(bytes.Repeat([]byte("x"), 1000))
		w.(http.Flusher).Flush()
		<-hang
	}))
	defer lib.Close()
	defer close(hang)

	dir := t.TempDir()
	cacheDir := filepath.Join(dir, "state", "filecache")
	p := startAgentIn(t, dir, "127.0.0.1")
	call := `<?xml version="1.0"?><methodCall><methodName>ensurepresent</methodName><params>` +
		`<param><value><string>` + strings.Repeat("c", 40) + `</string></value></param>` +
		`<param><value><string>` + lib.URL + `/f</string></value></param>` +
		`<param><value><nil/></value></param><param><value><nil/></value></param></params></methodCall>`
	go func() {
		if resp, err := http.Post(p.base+"/rpc", "text/xml", strings.NewReader(call)); err == nil {
			resp.Body.Close()
		}
	}()
	partials := func() []string {
		m, _ := filepath.Glob(filepath.Join(cacheDir, ".partial-*"))
		return m
	}
	for i := 0; len(partials()) == 0; i++ {
		if i > 3000 {
			t.Fatalf("no download in progress: %s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	<-p.exited

	startAgentIn(t, dir, "127.0.0.1")
	if left := partials(); len(left) != 0 {
		t.Errorf("temporary files survive a restart: %v", left)
	}
	if entries, _ := os.ReadDir(cacheDir); len(entries) != 0 {
		t.Errorf("file cache after restart: %v", entries)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	config := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(config, []byte("[builder]\nport = 0\n"), 0o644)
	_, errOut, code := runBinary(t, "run", "--config", config)
	if want := config + ":2: builder.port: 0 is not a port number (1 to 65535)\n"; code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
}

func TestRunPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "c.toml")
	os.WriteFile(config, fmt.Appendf(nil, "[builder]\nport = %d\nstate_dir = %q\nbackend = \"chroot\"\n", ln.Addr().(*net.TCPAddr).Port, dir), 0o644)
	_, errOut, code := runBinary(t, "run", "--config", config)
	if code != 1 || !strings.Contains(errOut, "cannot listen on 127.0.0.1:") || !strings.Contains(errOut, "address already in use") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// The shipped unit passes systemd's own checks.
func TestSystemdUnit(t *testing.T) {
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "etc", "buildd-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/bin/buildd-agent run --config /etc/buildd-agent/buildd-agent.toml\n")) {
		t.Errorf("unexpected ExecStart")
	}
	// Verify it against the binary built here (the installed path need not exist).
	local := filepath.Join(t.TempDir(), "buildd-agent.service")
	os.WriteFile(local, bytes.ReplaceAll(unit, []byte("/usr/bin/buildd-agent"), []byte(agentBinary)), 0o644)
	out, err := exec.Command(analyze, "verify", local).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

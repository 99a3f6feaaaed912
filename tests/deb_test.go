package tests

// The Debian package (make deb, packaging/deb): built, checked by lintian,
// installed with dpkg -i, its unit verified with systemd-analyze, the agent
// started the way the unit starts it, status() answered, and purged leaving
// nothing behind. Two installations:
//   - on this machine, where the build user ("buildd") already exists
//     (tests/setup.sh made it and other tests use it): the package must
//     adopt it and leave it, and its subuid/subgid lines, exactly as they were;
//   - in an unpacked Debian chroot (the test chroot tarball), where nothing
//     exists: the package creates the user and its ranges, and purge
//     removes them again; the chroot's files afterwards are what they were.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	debState    = "/var/lib/buildd-agent"
	debUnit     = "/lib/systemd/system/buildd-agent.service"
	debConffile = "/etc/buildd-agent/buildd-agent.toml"
)

// buildDeb runs `make deb` into a temporary directory and returns the .deb.
func buildDeb(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "dpkg-deb")
	testenv.RequireCommand(t, "make")
	out := t.TempDir()
	cmd := exec.Command("make", "deb", "DEB_OUT="+out)
	cmd.Dir = testenv.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "buildd-agent_*_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one buildd-agent_<version>_<arch>.deb", debs)
	}
	return debs[0]
}

func debRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readOrEmpty(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func TestDebPackage(t *testing.T) {
	testenv.RequireRoot(t)
	lintian := testenv.RequireCommand(t, "lintian")
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	deb := buildDeb(t)
	base := filepath.Base(deb)
	if !strings.HasPrefix(base, "buildd-agent_") || !strings.HasSuffix(base, "_"+strings.TrimSpace(debRun(t, "dpkg", "--print-architecture"))+".deb") {
		t.Errorf("package name %s, want buildd-agent_<version>_<arch>.deb", base)
	}

	t.Run("lintian", func(t *testing.T) {
		out, err := exec.Command(lintian, "--fail-on", "error", deb).CombinedOutput()
		t.Logf("lintian:\n%s", out)
		if err != nil || bytes.Contains(out, []byte("\nE: ")) || bytes.HasPrefix(out, []byte("E: ")) {
			t.Errorf("lintian reports errors (%v)", err)
		}
	})
	t.Run("contents", func(t *testing.T) {
		list := debRun(t, "dpkg-deb", "--contents", deb)
		for _, want := range []string{"./usr/bin/buildd-agent", "." + debUnit, "." + debConffile,
			"./usr/share/doc/buildd-agent/copyright", "./usr/share/doc/buildd-agent/changelog.gz",
			"./usr/share/doc/buildd-agent/README.md.gz"} {
			if !strings.Contains(list, want+"\n") {
				t.Errorf("package lacks %s:\n%s", want, list)
			}
		}
		if cf := debRun(t, "dpkg-deb", "--info", deb, "conffiles"); strings.TrimSpace(cf) != debConffile {
			t.Errorf("conffiles = %q, want %s", cf, debConffile)
		}
	})
	t.Run("host", func(t *testing.T) { debOnHost(t, deb, analyze) })
	t.Run("fresh-root", func(t *testing.T) { debInFreshRoot(t, deb) })
}

// debOnHost installs the package on this machine, runs the agent as the
// unit does and purges it.
func debOnHost(t *testing.T, deb, analyze string) {
	if out, err := exec.Command("dpkg-query", "-W", "buildd-agent").CombinedOutput(); err == nil {
		t.Fatalf("buildd-agent is already installed on this machine (%s); not touching it", out)
	}
	for _, p := range []string{"/usr/bin/buildd-agent", "/etc/buildd-agent"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists outside the package; not overwriting it", p)
		}
	}
	// The build user tests/setup.sh made, which other tests use: purge
	// must leave it exactly as it is.
	before := map[string]string{}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"} {
		before[f] = readOrEmpty(t, f)
	}
	// A state directory of the default configuration (a local `buildd-agent
	// build` made it) is set aside while the package owns the path, and put
	// back afterwards: purge removes the package's state directory.
	saved := ""
	if _, err := os.Lstat(debState); err == nil {
		saved = debState + ".deb-test-" + fmt.Sprint(os.Getpid())
		if err := os.Rename(debState, saved); err != nil {
			t.Fatal(err)
		}
	}
	purged := false
	t.Cleanup(func() {
		if !purged {
			exec.Command("dpkg", "--purge", "buildd-agent").Run()
		}
		if saved != "" {
			os.RemoveAll(debState)
			if err := os.Rename(saved, debState); err != nil {
				t.Errorf("cannot restore %s: %v", debState, err)
			}
		}
	})

	debRun(t, "dpkg", "-i", deb)
	files := strings.Fields(debRun(t, "dpkg-query", "-L", "buildd-agent"))
	for _, p := range []string{"/usr/bin/buildd-agent", debUnit, debConffile, debState} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after dpkg -i: %v", err)
		}
	}
	if id := strings.TrimSpace(debRun(t, "id", "-u", "buildd")); id == "" {
		t.Errorf("no buildd user")
	}
	if out, err := exec.Command(analyze, "verify", debUnit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify %s: %v\n%s", debUnit, err, out)
	}
	unit, err := os.ReadFile(debUnit)
	if err != nil {
		t.Fatal(err)
	}
	// The installed configuration as shipped passes the unit's own
	// ExecStartPre.
	pre := unitExec(t, unit, "ExecStartPre")
	if out, err := exec.Command(pre[0], pre[1:]...).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("ExecStartPre %v: %v\n%s", pre, err, out)
	}
	runUnitAgent(t, unit)

	debRun(t, "dpkg", "--purge", "buildd-agent")
	purged = true
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "buildd-agent").CombinedOutput(); err == nil && strings.Contains(string(out), "installed") {
		t.Errorf("still known to dpkg after purge: %s", out)
	}
	for _, p := range append(files, debState, "/etc/buildd-agent", "/usr/share/doc/buildd-agent") {
		switch p {
		case "/.", "/usr", "/usr/bin", "/usr/share", "/usr/share/doc", "/lib", "/lib/systemd", "/lib/systemd/system", "/etc":
			continue // the system's own directories
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after purge", p)
		}
	}
	for f, was := range before {
		if now := readOrEmpty(t, f); now != was {
			t.Errorf("%s changed by install + purge (a user or range it did not create):\nbefore:\n%s\nafter:\n%s", f, was, now)
		}
	}
}

// unitExec returns the argv of the unit's key= line (ExecStart, ...).
func unitExec(t *testing.T, unit []byte, key string) []string {
	t.Helper()
	for _, l := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("no %s= in the unit", key)
	return nil
}

// runUnitAgent runs the unit's ExecStart as systemd would (Type=notify: a
// notification socket in $NOTIFY_SOCKET, READY=1 expected), with the
// installed configuration's path replaced by a copy that keeps this test
// on loopback, on a free port, on the chroot backend (the shipped LXD
// backend would take over the shared test bridge and NAT it) and in a
// temporary state directory, and asks it status() and /healthz.
func runUnitAgent(t *testing.T, unit []byte) {
	argv := unitExec(t, unit, "ExecStart")
	var cfg agent.Config
	if _, err := toml.DecodeFile(debConffile, &cfg); err != nil {
		t.Fatalf("cannot decode the installed %s: %v", debConffile, err)
	}
	dir := t.TempDir()
	cfg.Builder.BindAddress = "127.0.0.1"
	cfg.Builder.Port = agentE2EFreePort(t)
	cfg.Builder.StateDir = filepath.Join(dir, "state")
	cfg.Builder.Backend = "chroot"
	cfg.LXD.NAT = false
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	override := filepath.Join(dir, "buildd-agent.toml")
	if err := os.WriteFile(override, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	replaced := false
	for i, a := range argv {
		if a == debConffile {
			argv[i], replaced = override, true
		}
	}
	if !replaced {
		t.Fatalf("ExecStart %v does not name %s", argv, debConffile)
	}

	sock := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	output := &testenv.SyncBuffer{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the agent exited after SIGTERM with %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("the agent did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", output.String())
		}
	}()
	ready := make(chan string, 1)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := notify.Read(b)
			if err != nil {
				return
			}
			if s := string(b[:n]); strings.Contains(s, "READY=1") {
				ready <- s
				return
			}
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("the agent exited before READY=1: %v\n%s", err, output.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no READY=1 from the agent\n%s", output.String())
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", cfg.Builder.Port)
	v, err := rpcCall(base, "status")
	if err != nil {
		t.Fatalf("status(): %v", err)
	}
	if st, _ := v.(map[string]any); st["builder_status"] != "BuilderStatus.IDLE" {
		t.Errorf("status() = %v, want IDLE", v)
	}
	debCheckHealth(t, base, strings.TrimSpace(debRun(t, "dpkg-query", "-W", "-f", "${Version}", "buildd-agent")))
}

// debInFreshRoot installs the package in an unpacked Debian root where no
// build user exists: postinst creates it with its ranges, purge removes
// everything again.
func debInFreshRoot(t *testing.T, deb string) {
	tarball := testenv.ChrootTarball(t)
	dir := t.TempDir()
	debRun(t, "tar", "-C", dir, "--numeric-owner", "-xzf", tarball)
	root := filepath.Join(dir, "chroot-autobuild")
	if err := os.WriteFile(filepath.Join(root, "tmp", "p.deb"), mustRead(t, deb), 0o644); err != nil {
		t.Fatal(err)
	}
	// The root is a minbase without uidmap; the maintainer scripts need
	// only passwd's useradd/userdel and init-system-helpers.
	chroot := func(args ...string) string {
		t.Helper()
		return debRun(t, "chroot", append([]string{root}, args...)...)
	}
	snapshot := func() map[string]string { return rootSnapshot(t, root) }
	before := snapshot()

	chroot("dpkg", "--force-depends", "-i", "/tmp/p.deb")
	if line := chroot("getent", "passwd", "buildd"); !strings.Contains(line, ":/nonexistent:/usr/sbin/nologin") {
		t.Errorf("buildd user = %q, want a system user without a home or shell", line)
	}
	for _, f := range []string{"subuid", "subgid"} {
		if got := readOrEmpty(t, filepath.Join(root, "etc", f)); !strings.Contains(got, "buildd:10200000:65536\n") {
			t.Errorf("/etc/%s = %q, want the build user's range buildd:10200000:65536 (tests/setup.sh's)", f, got)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/buildd-agent.service")); err != nil {
		t.Errorf("unit not enabled: %v", err)
	}
	// Reinstalling (an upgrade to the same version) adds nothing.
	chroot("dpkg", "--force-depends", "-i", "/tmp/p.deb")
	if got := readOrEmpty(t, filepath.Join(root, "etc/subuid")); strings.Count(got, "buildd:") != 1 {
		t.Errorf("after a reinstall /etc/subuid = %q, want one buildd range", got)
	}
	chroot("dpkg", "--purge", "buildd-agent")
	if err := os.Remove(filepath.Join(root, "tmp", "p.deb")); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	for p, was := range before {
		if now, ok := after[p]; !ok {
			t.Errorf("%s gone after install + purge", p)
		} else if now != was {
			t.Errorf("%s changed by install + purge:\nbefore: %q\nafter:  %q", p, was, now)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s left after purge", p)
		}
	}
}

// rootSnapshot lists a root's files outside dpkg's and the logs' own
// bookkeeping, with the contents of the account files. A file missing and
// an empty one are the same (purge may leave an emptied /etc/subuid).
func rootSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	skip := []string{"/var/lib/dpkg", "/var/log", "/var/cache", "/tmp", "/proc", "/dev"}
	accounts := map[string]bool{"/etc/passwd": true, "/etc/group": true, "/etc/shadow": true,
		"/etc/gshadow": true, "/etc/subuid": true, "/etc/subgid": true}
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				return filepath.SkipDir
			}
		}
		// useradd's backups (passwd-, shadow-, ...) are rewritten by any
		// account change; their contents are not the package's.
		if strings.HasSuffix(rel, "-") && strings.HasPrefix(rel, "/etc/") {
			return nil
		}
		if accounts[rel] {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			snap[rel] = string(b)
			return nil
		}
		snap[rel] = d.Type().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for a := range accounts {
		if _, ok := snap[a]; !ok {
			snap[a] = ""
		}
	}
	return snap
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// debCheckHealth reads the installed agent's /healthz.
func debCheckHealth(t *testing.T, base, version string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	defer resp.Body.Close()
	var h agent.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	if h.State != "IDLE" || h.Version != version || !h.Backends["chroot"].Reachable || len(h.Disk) == 0 {
		t.Errorf("/healthz = %+v, want IDLE, version %s, chroot reachable, free disk", h, version)
	}
	if (resp.StatusCode == http.StatusOK) != h.Healthy {
		t.Errorf("/healthz HTTP %d with healthy = %v", resp.StatusCode, h.Healthy)
	}
}

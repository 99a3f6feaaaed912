package lxd

// Tests against the real LXD daemon (tests/lxd-setup.sh) and the real
// debootstrap chroot (testenv.ChrootTarball). Each test owns its LXD objects:
// a unique Instance, name prefix and profile, an address in
// 10.10.10.100-149, and removes them in t.Cleanup.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func uniqueID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sharedInstance labels the objects of this test process: tests share its
// cached chroot image (one import per run), and TestMain removes it all.
var sharedInstance = "test-" + uniqueID()

func TestMain(m *testing.M) {
	code := m.Run()
	if c, err := lxdclient.ConnectLXDUnix("", nil); err == nil {
		cleanupInstance(c, Config{Instance: sharedInstance})
		c.Disconnect()
	}
	os.Exit(code)
}

// testConfig is a Config whose containers and profile belong to this test
// only; its Instance is the process's (see sharedInstance).
func testConfig(t testing.TB, addr int) Config {
	id := uniqueID()
	return Config{
		Instance:      sharedInstance,
		NamePrefix:    "t" + id,
		Profile:       "buildd-agent-test-" + id,
		Address:       fmt.Sprintf("10.10.10.%d", addr),
		BuildHome:     t.TempDir(),
		ReadyTimeout:  90 * time.Second,
		ImageMaxCount: 3,
	}
}

// rawClient is a direct connection, for checks and cleanup behind the agent's back.
func rawClient(t testing.TB) lxdclient.InstanceServer {
	t.Helper()
	c, err := lxdclient.ConnectLXDUnix("", nil)
	if err != nil {
		t.Fatalf("cannot connect to LXD: %v", err)
	}
	t.Cleanup(c.Disconnect)
	return c
}

// cleanupInstance removes every object labelled with cfg.Instance, and its profile.
func cleanupInstance(c lxdclient.InstanceServer, cfg Config) {
	cleanupContainers(c, cfg, "")
	imgs, _ := c.GetImages()
	for _, img := range imgs {
		if img.Properties[labelInstance] != cfg.Instance {
			continue
		}
		if op, err := c.DeleteImage(img.Fingerprint); err == nil {
			_ = op.Wait()
		}
	}
	if cfg.Profile != "" {
		_ = c.DeleteProfile(cfg.Profile)
	}
}

// cleanupContainers removes the containers labelled with cfg.Instance whose
// names start with prefix, and the profile if prefix is set.
func cleanupContainers(c lxdclient.InstanceServer, cfg Config, prefix string) {
	insts, _ := c.GetInstances(api.InstanceTypeContainer)
	for _, inst := range insts {
		if inst.Config[labelInstance] != cfg.Instance || !strings.HasPrefix(inst.Name, prefix) {
			continue
		}
		if op, err := c.UpdateInstanceState(inst.Name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, ""); err == nil {
			_ = op.Wait()
		}
		if op, err := c.DeleteInstance(inst.Name); err == nil {
			_ = op.Wait()
		}
	}
	if prefix != "" {
		_ = c.DeleteProfile(cfg.Profile)
	}
}

func newTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: real LXD containers (run without -short)")
	}
	testenv.RequireLXD(t)
	c := rawClient(t)
	if cfg.Instance == sharedInstance {
		t.Cleanup(func() { cleanupContainers(c, cfg, cfg.NamePrefix+"-") })
	} else {
		t.Cleanup(func() { cleanupInstance(c, cfg) })
	}
	h, err := NewHost(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func chrootImage(t testing.TB) target.Image {
	p := testenv.ChrootTarball(t)
	sum, err := fileSHA1(p)
	if err != nil {
		t.Fatal(err)
	}
	return target.Image{Path: p, SHA1: sum, Type: "chroot"}
}

// tinyImage writes a small image file of the given type ("chroot": a
// zstd-compressed Launchpad-layout tarball; "lxd": an uncompressed unified
// image) with unique content, for tests that need containers but never boot
// them: creating one costs LXD no 250 MB unpack.
func tinyImage(t testing.TB, typ string) target.Image {
	t.Helper()
	unique := uniqueID()
	var data []byte
	if typ == "chroot" {
		data = compress(t, compZstd, chrootTar(t, []member{
			{name: "chroot-autobuild/", typ: tar.TypeDir},
			{name: "chroot-autobuild/etc/", typ: tar.TypeDir},
			{name: "chroot-autobuild/etc/os-release", body: "ID=tiny\nBUILD=" + unique + "\n"},
			{name: "chroot-autobuild/sbin/", typ: tar.TypeDir},
			{name: "chroot-autobuild/sbin/init", body: "#!/bin/sh\n"},
		}))
	} else {
		data = chrootTar(t, []member{
			{name: "metadata.yaml", body: `{"architecture": "x86_64", "creation_date": 1700000000, "properties": {"unique": "` + unique + `"}}` + "\n"},
			{name: "rootfs/", typ: tar.TypeDir},
			{name: "rootfs/etc/", typ: tar.TypeDir},
			{name: "rootfs/sbin/", typ: tar.TypeDir},
			{name: "rootfs/sbin/init", body: "#!/bin/sh\n"},
		})
	}
	p := filepath.Join(t.TempDir(), "image-"+typ)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA1(p)
	if err != nil {
		t.Fatal(err)
	}
	return target.Image{Path: p, SHA1: sum, Type: typ}
}

func makeTarget(t testing.TB, h *Host, spec target.Spec, log io.Writer) *Container {
	t.Helper()
	tgt, err := h.Factory()(context.Background(), spec, target.Options{Log: log, ReadyTimeout: 90 * time.Second})
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	return tgt.(*Container)
}

// output runs a command and returns its stdout, failing on a non-zero exit.
func output(t testing.TB, c *Container, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := c.Run(context.Background(), target.Command{Args: args, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("%q: exit %d, err %v, stderr %q", args, code, err, errb.String())
	}
	return out.String()
}

func hostOutput(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// TestContainer builds one unprivileged container from the real chroot and
// checks everything a build relies on inside it.
func TestContainer(t *testing.T) {
	cfg := testConfig(t, 101)
	h := newTestHost(t, cfg)
	ctx := context.Background()
	log := &testenv.SyncBuffer{}
	c := makeTarget(t, h, target.Spec{BuildID: "1-1", Series: "bookworm", Arch: "amd64"}, log)
	t.Cleanup(func() { _ = c.Stop(ctx); _ = c.Remove(ctx) })
	start := time.Now()
	if err := c.Create(ctx, chrootImage(t)); err != nil {
		t.Fatalf("Create: %v\nlog:\n%s", err, log)
	}
	t.Logf("Create: %s", time.Since(start))
	start = time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v\nlog:\n%s", err, log)
	}
	t.Logf("Start: %s", time.Since(start))

	t.Run("unprivileged", func(t *testing.T) {
		m := strings.Join(strings.Fields(output(t, c, "cat", "/proc/self/uid_map")), " ")
		if m == "0 0 4294967295" {
			t.Errorf("container root is host root: uid_map %q", m)
		}
	})
	t.Run("identity", func(t *testing.T) {
		if got, want := strings.TrimSpace(output(t, c, "hostname")), hostOutput(t, "hostname"); got != want {
			t.Errorf("hostname = %q, host's %q", got, want)
		}
		fqdn := strings.TrimSpace(output(t, c, "hostname", "--fqdn"))
		if want := hostOutput(t, "hostname", "--fqdn"); fqdn != want {
			t.Errorf("hostname --fqdn = %q, host's %q", fqdn, want)
		}
		// RES_OPTIONS: the test machine's resolver is unreachable; getent
		// asks DNS for IPv6 before it reads the IPv4 entry from hosts.
		if got := output(t, c, "env", "RES_OPTIONS=timeout:1 attempts:1", "getent", "hosts", fqdn); !strings.HasPrefix(got, "127.0.1.1") {
			t.Errorf("getent hosts %s = %q, want 127.0.1.1", fqdn, got)
		}
		hostResolv, _, err := hostResolvConf("/etc/resolv.conf")
		if err != nil {
			t.Fatal(err)
		}
		if got := output(t, c, "cat", "/etc/resolv.conf"); got != string(hostResolv) {
			t.Errorf("resolv.conf = %q, host's %q", got, hostResolv)
		}
		if got := output(t, c, "stat", "-c", "%a %U", policyRCPath); got != "755 root\n" {
			t.Errorf("policy-rc.d: %q", got)
		}
		var out bytes.Buffer
		code, _ := c.Run(ctx, target.Command{Args: []string{policyRCPath, "ssh"}, Stdout: &out})
		if code != 101 || !strings.Contains(out.String(), "Not running services in chroot.") {
			t.Errorf("policy-rc.d ssh: exit %d, %q", code, out.String())
		}
		if got := output(t, c, "readlink", snapdRefreshTmr); got != "/dev/null\n" {
			t.Errorf("snapd.refresh.timer -> %q", got)
		}
		if got := output(t, c, "cat", snapdNoCDNPath); got != snapdNoCDN {
			t.Errorf("no-cdn.conf = %q", got)
		}
	})
	t.Run("env-cwd-personality", func(t *testing.T) {
		var out bytes.Buffer
		code, err := c.Run(ctx, target.Command{
			Args: []string{"sh", "-c", `printf '%s|' "$FOO"; pwd; uname -m`},
			Env:  []string{"FOO=a b;$(x)"}, Dir: "/tmp", Stdout: &out,
		})
		if err != nil || code != 0 || out.String() != "a b;$(x)|/tmp\nx86_64\n" {
			t.Errorf("exit %d, err %v, output %q", code, err, out.String())
		}
	})
	t.Run("bridge", func(t *testing.T) {
		ln, err := net.Listen("tcp", net.JoinHostPort(c.ProxyHost(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from the host") })}
		go srv.Serve(ln)
		defer srv.Close()
		got := output(t, c, "curl", "-sS", "--max-time", "20", "http://"+ln.Addr().String()+"/")
		if got != "hello from the host" {
			t.Errorf("curl = %q", got)
		}
	})
	t.Run("output-10MB", func(t *testing.T) {
		const n = 10 << 20
		var cw countWriter
		code, err := c.Run(ctx, target.Command{Args: []string{"head", "-c", fmt.Sprint(n), "/dev/urandom"}, Stdout: &cw})
		if err != nil || code != 0 || cw.n != n {
			t.Errorf("exit %d, err %v, %d bytes, want %d", code, err, cw.n, n)
		}
		// Through the build log, stdout and stderr together, in lines.
		var lw countWriter
		c2 := *c
		c2.opts.Log = &lw
		code, err = c2.Run(ctx, target.Command{Args: []string{"sh", "-c", "yes 0123456789abcdef | head -c 5242880; yes err | head -c 1048576 >&2"}})
		if err != nil || code != 0 || lw.n != 5242880+1048576 {
			t.Errorf("log: exit %d, err %v, %d bytes", code, err, lw.n)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		var out bytes.Buffer
		in := bytes.Repeat([]byte("stdin line\n"), 100000)
		code, err := c.Run(ctx, target.Command{Args: []string{"sha1sum"}, Stdin: bytes.NewReader(in), Stdout: &out})
		want := hostSHA1(in)
		if err != nil || code != 0 || !strings.HasPrefix(out.String(), want) {
			t.Errorf("exit %d, err %v, %q, want %s", code, err, out.String(), want)
		}
	})
	t.Run("exit-codes", func(t *testing.T) {
		for _, tc := range []struct {
			script string
			want   int
		}{{"exit 0", 0}, {"exit 3", 3}, {"exit 126", 126}, {"exit 127", 127}, {"kill -9 $$", 137}, {"kill -15 $$", 143}} {
			code, err := c.Run(ctx, target.Command{Args: []string{"sh", "-c", tc.script}})
			if err != nil || code != tc.want {
				t.Errorf("%s: exit %d, err %v, want %d", tc.script, code, err, tc.want)
			}
		}
		code, err := c.Run(ctx, target.Command{Args: []string{"/no/such/program"}})
		if err != nil || code != 127 {
			t.Errorf("missing program: exit %d, err %v", code, err)
		}
	})
	t.Run("files", func(t *testing.T) {
		if err := c.CopyIn(ctx, strings.NewReader("secret\n"), "/tmp/in.txt", 1000, 1001, 0o640); err != nil {
			t.Fatal(err)
		}
		if got := output(t, c, "stat", "-c", "%u %g %a %s", "/tmp/in.txt"); got != "1000 1001 640 7\n" {
			t.Errorf("copied in: %q", got)
		}
		var b bytes.Buffer
		if err := c.CopyOut(ctx, "/tmp/in.txt", &b); err != nil || b.String() != "secret\n" {
			t.Errorf("CopyOut: %v %q", err, b.String())
		}
		output(t, c, "ln", "-s", "/etc/shadow", "/tmp/shadow-link")
		b.Reset()
		if err := c.CopyOut(ctx, "/tmp/shadow-link", &b); !errors.Is(err, target.ErrSymlink) || b.Len() != 0 {
			t.Errorf("CopyOut of a symlink to /etc/shadow: %v, %d bytes", err, b.Len())
		}
		if err := c.CopyOut(ctx, "/tmp/none", &b); !errors.Is(err, target.ErrNotExist) {
			t.Errorf("CopyOut of a missing file: %v", err)
		}
		// CopyIn over a symlink replaces the link, never writes through it.
		output(t, c, "ln", "-s", "/etc/passwd", "/tmp/passwd-link")
		if err := c.CopyIn(ctx, strings.NewReader("x"), "/tmp/passwd-link", 0, 0, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := output(t, c, "sh", "-c", "stat -c %F /tmp/passwd-link; head -c 5 /etc/passwd"); got != "regular file\nroot:" {
			t.Errorf("CopyIn over a symlink: %q", got)
		}
		fi, err := c.Stat(ctx, "/tmp/shadow-link")
		if err != nil || fi.Mode&os.ModeSymlink == 0 || fi.Name != "shadow-link" {
			t.Errorf("Stat symlink: %+v %v", fi, err)
		}
		if _, err := c.Stat(ctx, "/tmp/none"); !errors.Is(err, target.ErrNotExist) {
			t.Errorf("Stat missing: %v", err)
		}
		fi, err = c.Stat(ctx, "/usr/bin/passwd")
		if err != nil || fi.Mode&os.ModeSetuid == 0 || !fi.Mode.IsRegular() || fi.Size == 0 {
			t.Errorf("Stat setuid file: %+v %v", fi, err)
		}
		list, err := c.ListDir(ctx, "/tmp")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range list {
			names = append(names, e.Name)
		}
		if got := strings.Join(names, " "); !strings.Contains(got, "in.txt passwd-link shadow-link") {
			t.Errorf("ListDir /tmp: %q", got)
		}
	})
	t.Run("tree", func(t *testing.T) {
		good := tarOf(t, []tarEntry{
			{name: "src/", typ: tar.TypeDir, mode: 0o755},
			{name: "src/a.txt", body: "A", mode: 0o644},
			{name: "src/run.sh", body: "#!/bin/sh\n", mode: 0o755},
			{name: "src/link", typ: tar.TypeSymlink, link: "/etc/passwd"},
			{name: "src/hard", typ: tar.TypeLink, link: "src/a.txt"},
		})
		if err := c.CopyTreeIn(ctx, bytes.NewReader(good), "/build/tree", 1000, 1000); err != nil {
			t.Fatal(err)
		}
		got := output(t, c, "sh", "-c", "cd /build/tree && stat -c '%n %u:%g %a %F' src src/a.txt src/run.sh src/link src/hard")
		want := "src 1000:1000 755 directory\nsrc/a.txt 1000:1000 644 regular file\nsrc/run.sh 1000:1000 755 regular file\n" +
			"src/link 1000:1000 777 symbolic link\nsrc/hard 1000:1000 644 regular file\n"
		if got != want {
			t.Errorf("tree:\n%s\nwant:\n%s", got, want)
		}
		for name, evil := range map[string][]tarEntry{
			"dotdot":   {{name: "../../etc/evil", body: "x"}},
			"absolute": {{name: "/etc/evil", body: "x"}},
			"through-symlink": {
				{name: "l", typ: tar.TypeSymlink, link: "/etc"},
				{name: "l/evil", body: "x"},
			},
			"hardlink-out": {{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}},
			"device":       {{name: "d", typ: tar.TypeChar}},
		} {
			err := c.CopyTreeIn(ctx, bytes.NewReader(tarOf(t, evil)), "/build/evil", 0, 0)
			if err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if got := output(t, c, "sh", "-c", "ls /etc/evil 2>&1 || true"); !strings.Contains(got, "No such file") {
			t.Errorf("/etc/evil exists: %q", got)
		}
	})
	t.Run("fcaps", func(t *testing.T) {
		if got := output(t, c, "getcap", "/usr/bin/ping"); !strings.Contains(got, "cap_net_raw=ep") {
			t.Errorf("getcap /usr/bin/ping = %q", got)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var out bytes.Buffer
		_, err := c.Run(cctx, target.Command{Args: []string{"sh", "-c", "echo started; exec sleep 1000"}, Stdout: &out})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run with an expiring context: %v", err)
		}
		// The process was killed with the context: no sleep is left.
		if got := output(t, c, "sh", "-c", "for p in /proc/[0-9]*; do cat $p/comm; done | grep -c '^sleep$' || true"); got != "0\n" {
			t.Errorf("sleep processes left: %q", got)
		}
	})
	t.Run("abort", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			code, err := c.Run(ctx, target.Command{Args: []string{"sh", "-c", `trap "" TERM; touch /tmp/started; sleep 1000`}, Stdout: io.Discard, Stderr: io.Discard})
			if err == nil && code == 0 {
				err = errors.New("exit 0")
			}
			done <- err
		}()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := c.Stat(ctx, "/tmp/started"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the command never started")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := c.KillProcesses(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil && !strings.Contains(err.Error(), "exit") {
				t.Logf("Run after kill: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("Run did not return after KillProcesses")
		}
	})
	start = time.Now()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop: %s", time.Since(start))
	start = time.Now()
	if err := c.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	t.Logf("Remove: %s", time.Since(start))
	if _, _, err := rawClient(t).GetInstance(c.Name()); !isNotFound(err) {
		t.Errorf("container still there after Remove: %v", err)
	}
	if _, err := os.Stat(c.buildDir()); !os.IsNotExist(err) {
		t.Errorf("build dir still there: %v", err)
	}
}

func hostSHA1(b []byte) string {
	f, _ := os.CreateTemp("", "sha1")
	defer os.Remove(f.Name())
	f.Write(b)
	f.Close()
	s, _ := fileSHA1(f.Name())
	return s
}

type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarOf(t testing.TB, entries []tarEntry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: mode, ModTime: time.Unix(1700000000, 0)}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

// TestFastCleanupAndCache: with fast_cleanup the container stays; the
// default removes it; the second build on the same chroot skips the import.
// A tiny zstd chroot keeps it quick (nothing boots here).
func TestFastCleanupAndCache(t *testing.T) {
	cfg := testConfig(t, 102)
	h := newTestHost(t, cfg)
	ctx := context.Background()
	img := tinyImage(t, "chroot")
	raw := rawClient(t)

	log := &testenv.SyncBuffer{}
	fast := makeTarget(t, h, target.Spec{BuildID: "2-1", Series: "bookworm", Arch: "amd64", FastCleanup: true}, log)
	if err := fast.Create(ctx, img); err != nil {
		t.Fatalf("Create: %v\n%s", err, log)
	}
	if err := fast.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fast.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.GetInstance(fast.Name()); err != nil {
		t.Errorf("fast_cleanup: container gone: %v", err)
	}
	if !strings.Contains(log.String(), "fast_cleanup: leaving the container") {
		t.Errorf("log lacks the fast_cleanup line:\n%s", log)
	}

	log = &testenv.SyncBuffer{}
	def := makeTarget(t, h, target.Spec{BuildID: "2-2", Series: "bookworm", Arch: "amd64"}, log)
	if err := def.Create(ctx, img); err != nil {
		t.Fatalf("Create: %v\n%s", err, log)
	}
	if n := h.Imports(); n != 1 {
		t.Errorf("second build on the same chroot: %d imports, want 1", n)
	}
	// The identity was written into the tiny rootfs, its directories made.
	var hosts bytes.Buffer
	if err := def.CopyOut(ctx, "/etc/hosts", &hosts); err != nil || !strings.Contains(hosts.String(), "127.0.1.1\t") {
		t.Errorf("/etc/hosts: %q %v", hosts.String(), err)
	}
	if !strings.Contains(log.String(), "Using cached LXD image") {
		t.Errorf("log does not say the cache was used:\n%s", log)
	}
	inst, _, err := raw.GetInstance(def.Name())
	if err != nil || inst.Config[labelBuildID] != "2-2" {
		t.Fatalf("container after the second Create: %v %v", inst, err)
	}
	alias, _, err := raw.GetImageAlias(def.Name())
	if err != nil || alias.Target == "" {
		t.Errorf("alias %s: %v", def.Name(), err)
	}
	if err := def.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := def.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.GetInstance(def.Name()); !isNotFound(err) {
		t.Errorf("default cleanup: container still there: %v", err)
	}
}

// TestRestartCleanup: a new Host with the same Instance removes the previous
// run's container and spares a foreign one.
func TestRestartCleanup(t *testing.T) {
	cfg := testConfig(t, 103)
	h := newTestHost(t, cfg)
	ctx := context.Background()
	raw := rawClient(t)
	// A ready LXD image (type "lxd", uploaded unchanged), tiny: nothing boots.
	img := tinyImage(t, "lxd")
	c := makeTarget(t, h, target.Spec{BuildID: "3-1", Series: "bookworm", Arch: "amd64"}, io.Discard)
	if err := c.Create(ctx, img); err != nil {
		t.Fatal(err)
	}
	foreign := "foreign-" + uniqueID()
	alias, _, err := raw.GetImageAlias(c.Name())
	if err != nil {
		t.Fatal(err)
	}
	op, err := raw.CreateInstance(api.InstancesPost{
		Name:   foreign,
		Source: api.InstanceSource{Type: "image", Fingerprint: alias.Target},
		InstancePut: api.InstancePut{
			Profiles: []string{cfg.Profile},
			Config:   map[string]string{"user.someone-else": "yes"},
		},
	})
	if err == nil {
		err = op.Wait()
	}
	if err != nil {
		t.Fatalf("cannot create the foreign container: %v", err)
	}
	t.Cleanup(func() {
		if op, err := raw.DeleteInstance(foreign); err == nil {
			_ = op.Wait()
		}
	})
	// The "crash": the Host is dropped without cleanup and a new one starts.
	h.Close()
	h2, err := NewHost(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, _, err := raw.GetInstance(c.Name()); !isNotFound(err) {
		t.Errorf("leftover container survived the restart: %v", err)
	}
	if _, _, err := raw.GetInstance(foreign); err != nil {
		t.Errorf("foreign container removed: %v", err)
	}
	// The cached image survives: it is the cache.
	if fp, _ := h2.cachedImage(img.SHA1); fp != alias.Target {
		t.Errorf("cached image %q after restart, want %q", fp, alias.Target)
	}
}

// TestPrivileged: Spec.Privileged gives the reference's privileged container
// (host root, the host's devtmpfs for loop devices), still with the host's
// identity and the static address.
func TestPrivileged(t *testing.T) {
	cfg := testConfig(t, 104)
	h := newTestHost(t, cfg)
	ctx := context.Background()
	log := &testenv.SyncBuffer{}
	c := makeTarget(t, h, target.Spec{BuildID: "4-1", Series: "bookworm", Arch: "amd64", Privileged: true}, log)
	t.Cleanup(func() { _ = c.Stop(ctx); _ = c.Remove(ctx) })
	if err := c.Create(ctx, chrootImage(t)); err != nil {
		t.Fatalf("Create: %v\n%s", err, log)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v\n%s", err, log)
	}
	if m := strings.Join(strings.Fields(output(t, c, "cat", "/proc/self/uid_map")), " "); m != "0 0 4294967295" {
		t.Errorf("privileged container uid_map %q", m)
	}
	if got := output(t, c, "sh", "-c", "test -c /dev/loop-control && echo loop"); got != "loop\n" {
		t.Errorf("no /dev/loop-control: %q", got)
	}
	if got, want := strings.TrimSpace(output(t, c, "hostname")), hostOutput(t, "hostname"); got != want {
		t.Errorf("hostname = %q, want %q", got, want)
	}
	if got := output(t, c, "getcap", "/usr/bin/ping"); !strings.Contains(got, "cap_net_raw=ep") {
		t.Errorf("getcap /usr/bin/ping = %q", got)
	}
}

// TestStartFailureIsReported: a container that cannot boot makes Start fail
// within the ready timeout, with the reason in the build log.
func TestStartFailureIsReported(t *testing.T) {
	cfg := testConfig(t, 105)
	h := newTestHost(t, cfg)
	ctx := context.Background()
	log := &testenv.SyncBuffer{}
	tgt, err := h.Factory()(ctx, target.Spec{BuildID: "5-1", Series: "bookworm", Arch: "amd64"}, target.Options{Log: log, ReadyTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := tgt.(*Container)
	t.Cleanup(func() { _ = c.Remove(ctx) })
	// A rootfs whose init is a script with no shell to run it.
	if err := c.Create(ctx, tinyImage(t, "lxd")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Start(ctx)
	if err == nil {
		t.Fatal("Start succeeded with no init")
	}
	t.Logf("Start failed after %s: %v", time.Since(start), err)
	if !strings.Contains(log.String(), c.Name()) {
		t.Errorf("the build log does not say why:\n%s", log)
	}
}

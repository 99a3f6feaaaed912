package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"golang.org/x/sys/unix"
)

// searchableTempDir is a t.TempDir the namespace's root (an unprivileged
// host uid) can traverse.
func searchableTempDir(t *testing.T) string {
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func runOut(t *testing.T, tg target.Target, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code, err := tg.Run(context.Background(), target.Command{Args: args, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("Run %q: %v", args, err)
	}
	return out.String(), code
}

// TestChrootTarget runs the real debootstrap chroot in the namespaces.
func TestChrootTarget(t *testing.T) {
	testenv.RequireRoot(t)
	tarball := testenv.ChrootTarball(t)
	home := searchableTempDir(t)
	subuid := filepath.Join(home, "subuid")
	subgid := filepath.Join(home, "subgid")
	// An empty user: the factory adds a range for it.
	os.WriteFile(subuid, []byte("other:100000:65536\n"), 0o644)
	os.WriteFile(subgid, []byte("other:100000:65536\n"), 0o644)
	log := &testenv.SyncBuffer{}
	factory := NewChrootFactory(ChrootConfig{BuildHome: filepath.Join(home, "builds"), IDMapUser: "root",
		SubUIDFile: subuid, SubGIDFile: subgid, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	tg, err := factory(ctx, target.Spec{BuildID: "t1", Series: "bookworm", Arch: "amd64"}, target.Options{Log: log, ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(subuid); !strings.Contains(string(data), "root:1000000:65536\n") {
		t.Fatalf("subuid = %q, want a range added for root", data)
	}
	if err := tg.Create(ctx, target.Image{Path: tarball, Type: "chroot"}); err != nil {
		t.Fatal(err)
	}
	defer tg.Remove(ctx)
	if err := tg.Start(ctx); err != nil {
		t.Fatalf("Start: %v (log: %s)", err, log)
	}
	ct := tg.(*chrootTarget)
	helperPid := ct.helper.Process.Pid

	if out, code := runOut(t, tg, "id"); code != 0 || !strings.HasPrefix(out, "uid=0(root) gid=0(root)") {
		t.Errorf("id = %q, %d", out, code)
	}
	if out, _ := runOut(t, tg, "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(out), " ") != "0 1000000 65536" {
		t.Errorf("uid_map = %q", out)
	}
	if out, _ := runOut(t, tg, "sh", "-c", "echo $$"); strings.TrimSpace(out) == "1" || strings.TrimSpace(out) == "" {
		t.Errorf("pid in namespace = %q", out)
	}
	if out, _ := runOut(t, tg, "getcap", "/usr/bin/ping"); strings.TrimSpace(out) != "/usr/bin/ping cap_net_raw=ep" {
		t.Errorf("getcap /usr/bin/ping = %q", out)
	}
	host, _ := os.Hostname()
	if out, _ := runOut(t, tg, "hostname"); strings.TrimSpace(out) != host {
		t.Errorf("hostname = %q, want %q", out, host)
	}
	if out, _ := runOut(t, tg, "cat", "/etc/hosts"); !strings.Contains(out, "\n127.0.1.1\t") {
		t.Errorf("/etc/hosts = %q", out)
	}
	if out, _ := runOut(t, tg, "cat", "/etc/hostname"); out != host+"\n" {
		t.Errorf("/etc/hostname = %q", out)
	}
	mounts, _ := runOut(t, tg, "cat", "/proc/self/mountinfo")
	for _, mp := range []string{"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/tmp", "/build", "/dev/null"} {
		if !hasMountPoint(mounts, mp) {
			t.Errorf("no mount on %s in:\n%s", mp, mounts)
		}
	}
	if out, code := runOut(t, tg, "sh", "-c", "echo hi > /dev/null && head -c4 /dev/zero | wc -c && touch /sys/x"); code == 0 || !strings.Contains(out, "4") {
		t.Errorf("devices/ro sys: %q %d", out, code)
	}
	// env, cwd, stdin, exit status.
	var out bytes.Buffer
	code, err := tg.Run(ctx, target.Command{Args: []string{"sh", "-c", "pwd; echo $FOO; cat; exit 3"}, Env: []string{"FOO=a b;c"},
		Dir: "/etc", Stdin: strings.NewReader("from stdin\n"), Stdout: &out, Stderr: &out})
	if err != nil || code != 3 || out.String() != "/etc\na b;c\nfrom stdin\n" {
		t.Errorf("Run = %d, %v, %q", code, err, out.String())
	}
	if _, err := tg.Run(ctx, target.Command{Args: []string{"no-such-command"}}); err == nil {
		t.Error("running a missing command succeeded")
	}

	// Files: CopyIn/CopyOut/Stat/ListDir, through the mounts (/tmp is a
	// tmpfs only the namespace sees).
	if err := tg.CopyIn(ctx, strings.NewReader("payload"), "/tmp/in", 1000, 1000, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if out, _ := runOut(t, tg, "stat", "-c", "%u:%g %a %s", "/tmp/in"); strings.TrimSpace(out) != "1000:1000 4755 7" {
		t.Errorf("stat of copied-in file = %q", out)
	}
	runOut(t, tg, "sh", "-c", "echo made inside > /build/out; ln -s /etc/shadow /build/link")
	var got bytes.Buffer
	if err := tg.CopyOut(ctx, "/build/out", &got); err != nil || got.String() != "made inside\n" {
		t.Errorf("CopyOut = %q, %v", got.String(), err)
	}
	if err := tg.CopyOut(ctx, "/build/link", io.Discard); !errors.Is(err, target.ErrSymlink) {
		t.Errorf("CopyOut of a symlink = %v, want ErrSymlink", err)
	}
	if fi, err := tg.Stat(ctx, "/build/link"); err != nil || fi.Mode&os.ModeSymlink == 0 {
		t.Errorf("Stat of symlink = %+v, %v", fi, err)
	}
	if _, err := tg.Stat(ctx, "/nope"); !errors.Is(err, target.ErrNotExist) {
		t.Errorf("Stat of missing = %v", err)
	}
	ls, err := tg.ListDir(ctx, "/build")
	if err != nil || len(ls) != 2 || ls[0].Name != "link" || ls[1].Name != "out" {
		t.Errorf("ListDir = %+v, %v", ls, err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "sub/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "sub/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("ok"))
	tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	if err := tg.CopyTreeIn(ctx, bytes.NewReader(tb.Bytes()), "/build/tree", 1000, 1000); err == nil {
		t.Error("CopyTreeIn accepted ../escape")
	}
	if out, _ := runOut(t, tg, "stat", "-c", "%u %n", "/build/tree/sub/f"); strings.TrimSpace(out) != "1000 /build/tree/sub/f" {
		t.Errorf("CopyTreeIn result = %q", out)
	}

	// A v3 capability works inside: the test binary, given cap_net_raw=ep
	// owned by the namespace root, run as an unprivileged uid.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.CopyIn(ctx, bytes.NewReader(self), "/usr/local/bin/capcheck", 0, 0, 0o755); err != nil {
		t.Fatal(err)
	}
	root := uint32(1000000)
	if err := SetCaps(filepath.Join(ct.chroot, "usr/local/bin/capcheck"), Caps{Permitted: 1 << unix.CAP_NET_RAW, Effective: true}, &root); err != nil {
		t.Fatal(err)
	}
	var capOut bytes.Buffer
	if _, err := tg.Run(ctx, target.Command{Args: []string{"setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "/usr/local/bin/capcheck"},
		Env: []string{capEffEnv + "=1"}, Stdout: &capOut, Stderr: &capOut}); err != nil || strings.TrimSpace(capOut.String()) != "0000000000002000" {
		t.Errorf("CapEff of capcheck as uid 1000 = %q, %v; want cap_net_raw only", capOut.String(), err)
	}

	// KillProcesses ends a running command, and the target stays usable.
	done := make(chan int)
	go func() {
		code, _ := tg.Run(ctx, target.Command{Args: []string{"sh", "-c", "sleep 1000 & sleep 1000"}, Stdout: io.Discard, Stderr: io.Discard})
		done <- code
	}()
	time.Sleep(300 * time.Millisecond)
	if err := tg.KillProcesses(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 128+9 {
			t.Errorf("killed command exit = %d, want 137", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("KillProcesses did not end the command")
	}
	if _, code := runOut(t, tg, "true"); code != 0 {
		t.Error("target unusable after KillProcesses")
	}
	// Cancelling a Run kills its command.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := tg.Run(cctx, target.Command{Args: []string{"sleep", "1000"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled Run = %v", err)
	}
	cancel()

	mntNS, err := os.Readlink("/proc/" + strconv.Itoa(helperPid) + "/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// No process is left in the target's mount namespace, so it and all
	// its mounts are gone.
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
	for _, p := range procs {
		if l, err := os.Readlink(p); err == nil && l == mntNS {
			t.Errorf("%s is still in the target's mount namespace %s", p, mntNS)
		}
	}
	if err := unix.Kill(helperPid, 0); err != unix.ESRCH {
		t.Errorf("helper pid %d still exists after Stop: %v", helperPid, err)
	}
	if n := mountsUnder(ct.chroot); n != 0 {
		t.Errorf("%d mounts remain under the chroot", n)
	}
	if err := tg.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ct.dir); !os.IsNotExist(err) {
		t.Errorf("build dir remains: %v", err)
	}
}

func hasMountPoint(mountinfo, mp string) bool {
	for _, l := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == mp {
			return true
		}
	}
	return false
}

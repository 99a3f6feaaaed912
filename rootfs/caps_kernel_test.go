package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"golang.org/x/sys/unix"
)

// TestCapsKernelRoundTrip: what setcap writes we read and render as getcap
// does; what we write, getcap reads back in the same text.
func TestCapsKernelRoundTrip(t *testing.T) {
	testenv.RequireRoot(t)
	setcap := testenv.RequireCommand(t, "setcap")
	getcap := testenv.RequireCommand(t, "getcap")
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o755)
	getcapText := func(args ...string) string {
		out, err := exec.Command(getcap, append(args, f)...).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(strings.TrimPrefix(string(out), f))
	}
	for _, g := range capsGolden {
		if g.want.Version == 1 || g.want.Permitted>>41 != 0 || g.want.Inheritable>>41 != 0 {
			continue // the kernel refuses v1 on write; libcap cannot name bits past 40
		}
		t.Run(g.name, func(t *testing.T) {
			// Ours -> kernel -> getcap.
			var rootid *uint32
			if g.want.Version == 3 {
				rootid = &g.want.RootID
			}
			if err := SetCaps(f, g.want, rootid); err != nil {
				t.Fatal(err)
			}
			if got := getcapText(); got != g.text {
				t.Errorf("getcap after SetCaps = %q, want %q", got, g.text)
			}
			if got, want := getcapText("-n"), g.want.StringWithRootID(); got != want {
				t.Errorf("getcap -n = %q, want %q", got, want)
			}
			// setcap -> kernel -> ours.
			if g.want.Version == 3 {
				return
			}
			if out, err := exec.Command(setcap, "-r", f).CombinedOutput(); err != nil {
				t.Fatalf("setcap -r: %v %s", err, out)
			}
			if _, ok, _ := GetCaps(f); ok {
				t.Fatal("caps still there after setcap -r")
			}
			if out, err := exec.Command(setcap, g.text, f).CombinedOutput(); err != nil {
				t.Fatalf("setcap %q: %v %s", g.text, err, out)
			}
			c, ok, err := GetCaps(f)
			if err != nil || !ok {
				t.Fatalf("GetCaps = %v %v", ok, err)
			}
			if c != g.want || c.String() != g.text {
				t.Errorf("GetCaps after setcap %q = %+v (%q)", g.text, c, c.String())
			}
		})
	}
	// A symlink is never followed.
	l := filepath.Join(dir, "l")
	os.Symlink(f, l)
	if _, _, err := GetCaps(l); err == nil {
		t.Error("GetCaps followed a symlink")
	}
	if err := SetCaps(l, Caps{Permitted: 1}, nil); err == nil {
		t.Error("SetCaps followed a symlink")
	}
}

// TestCapsV3EffectiveOnlyInItsNamespace execs a copy of the test binary
// carrying cap_net_raw=ep v3 (rootid R) as uid 1000 in user namespaces: it
// gets CAP_NET_RAW where R is root, and nothing elsewhere.
func TestCapsV3EffectiveOnlyInItsNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for p := filepath.Dir(dir); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "capcheck")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	const rootid = 2000000
	r := uint32(rootid)
	if err := SetCaps(bin, Caps{Permitted: 1 << unix.CAP_NET_RAW, Effective: true}, &r); err != nil {
		t.Fatal(err)
	}
	run := func(nsRoot int) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{capEffEnv + "=1"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, NoSetGroups: true}}
		if nsRoot >= 0 {
			cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
			cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: nsRoot, Size: 65536}}
			cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: nsRoot, Size: 65536}}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("capcheck (ns root %d): %v %s", nsRoot, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(rootid); got != "0000000000002000" {
		t.Errorf("CapEff in the namespace whose root is %d = %s, want cap_net_raw", rootid, got)
	}
	if got := run(rootid + 65536); got != "0000000000000000" {
		t.Errorf("CapEff in another namespace = %s, want none", got)
	}
	if got := run(-1); got != "0000000000000000" {
		t.Errorf("CapEff on the host as uid 1000 = %s, want none", got)
	}
	// The same value as v2 applies everywhere (what Privileged writes).
	if err := SetCaps(bin, Caps{Permitted: 1 << unix.CAP_NET_RAW, Effective: true}, nil); err != nil {
		t.Fatal(err)
	}
	if got := run(rootid + 65536); got != "0000000000002000" {
		t.Errorf("CapEff of v2 in another namespace = %s, want cap_net_raw", got)
	}
}

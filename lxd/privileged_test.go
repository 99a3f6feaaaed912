package lxd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// execServer is the fake LXD with exec: each command is recorded and
// answered by reply (stdout, exit status).
type execServer struct {
	*fakeServer
	mu    sync.Mutex
	execs [][]string
	reply func(argv []string) (string, int)
}

func (s *execServer) ExecInstance(name string, post api.InstanceExecPost, args *lxdclient.InstanceExecArgs) (lxdclient.Operation, error) {
	s.mu.Lock()
	s.execs = append(s.execs, post.Command)
	s.mu.Unlock()
	out, code := s.reply(post.Command)
	if args.Stdout != nil {
		_, _ = io.WriteString(args.Stdout, out)
	}
	close(args.DataDone)
	return done(map[string]any{"return": float64(code)}), nil
}

// Character and block sections both name device-mapper only in the
// block one; the character line is a decoy.
const (
	testProcDevices = "Character devices:\n  1 mem\n 10 misc\n251 device-mapper-char\n\nBlock devices:\n  7 loop\n252 device-mapper\n259 blkext\n"
	testProcMisc    = "237 loop-control\n236 device-mapper\n  1 psaux\n"
	noDMProcDevices = "Character devices:\n  1 mem\n 10 misc\n\nBlock devices:\n  7 loop\n253 zram\n"
	noDMProcMisc    = "237 loop-control\n"
)

func setAppArmor(t *testing.T, on bool) {
	t.Helper()
	old := appArmorAvailable
	appArmorAvailable = func() bool { return on }
	t.Cleanup(func() { appArmorAvailable = old })
}

// TestPrivilegedProfile: what LXD is given and asked to run, privileged
// or not, with or without AppArmor, armhf or amd64, with and without
// device-mapper in the kernel.
func TestPrivilegedProfile(t *testing.T) {
	reference := []string{
		"lxc.autodev=0", "lxc.cap.drop=", "lxc.cap.drop=sys_time sys_module",
		"lxc.cgroup.devices.allow=", "lxc.cgroup.devices.deny=",
		"lxc.cgroup2.devices.allow=", "lxc.cgroup2.devices.deny=",
		"lxc.mount.auto=", "lxc.mount.auto=proc:rw sys:rw",
		"lxc.mount.entry=udev dev devtmpfs rw,nosuid,relatime,mode=755,inode64",
	}
	base := []string{"lxc.net.0.ipv4.address=10.10.10.2/24", "lxc.net.0.ipv4.gateway=10.10.10.1", "lxc.uts.name=buildd07"}
	devices := []string{"sh", "-c", devicesScript, "sh", "252", "236"}
	for _, tc := range []struct {
		name          string
		arch          string
		spec, host    bool // Spec.Privileged, Config.Privileged
		appArmor      bool
		noDM          bool
		wantPriv      bool
		wantRaw       []string
		wantExecs     [][]string // after the readiness check
		wantLog       string
		devicesFailed bool
	}{
		{name: "unprivileged amd64", arch: "amd64", appArmor: true, wantRaw: base},
		{name: "unprivileged armhf", arch: "armhf", appArmor: true, wantRaw: base,
			wantExecs: [][]string{{"umount", "/proc/cpuinfo"}}},
		{name: "privileged amd64 with AppArmor", arch: "amd64", spec: true, appArmor: true, wantPriv: true,
			wantRaw:   append(append(append([]string(nil), base...), appArmorUnconfined), reference...),
			wantExecs: [][]string{{"cat", "/proc/devices"}, {"cat", "/proc/misc"}, devices}},
		{name: "privileged amd64 without AppArmor", arch: "amd64", spec: true, wantPriv: true,
			wantRaw:   append(append([]string(nil), base...), reference...),
			wantExecs: [][]string{{"cat", "/proc/devices"}, {"cat", "/proc/misc"}, devices}},
		{name: "privileged armhf", arch: "armhf", spec: true, appArmor: true, wantPriv: true,
			wantRaw:   append(append(append([]string(nil), base...), appArmorUnconfined), reference...),
			wantExecs: [][]string{{"cat", "/proc/devices"}, {"cat", "/proc/misc"}, devices, {"umount", "/proc/cpuinfo"}}},
		{name: "every container privileged by the operator", arch: "amd64", host: true, wantPriv: true,
			wantRaw:   append(append([]string(nil), base...), reference...),
			wantExecs: [][]string{{"cat", "/proc/devices"}, {"cat", "/proc/misc"}, devices}},
		{name: "privileged, no device-mapper in the kernel", arch: "amd64", spec: true, noDM: true, wantPriv: true,
			wantRaw:   append(append([]string(nil), base...), reference...),
			wantExecs: [][]string{{"cat", "/proc/devices"}, {"cat", "/proc/misc"}, {"sh", "-c", devicesScript, "sh", "", ""}},
			wantLog:   "The kernel has no device-mapper"},
		{name: "mknod fails", arch: "amd64", spec: true, wantPriv: true, devicesFailed: true,
			wantRaw:   append(append([]string(nil), base...), reference...),
			wantExecs: [][]string{{"cat", "/proc/devices"}, {"cat", "/proc/misc"}, devices}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setAppArmor(t, tc.appArmor)
			f := newFakeServer()
			cfg := testHostConfig()
			cfg.Privileged = tc.host
			h, err := newHost(context.Background(), cfg, f)
			if err != nil {
				t.Fatal(err)
			}
			s := &execServer{fakeServer: f, reply: func(argv []string) (string, int) {
				// The agent's own commands run without the personality wrapper.
				switch {
				case len(argv) == 3 && argv[0] == "sh" && strings.Contains(argv[2], "is-system-running"):
					return "", 100 // no systemd: running is ready
				case len(argv) == 2 && argv[0] == "cat" && argv[1] == "/proc/devices":
					if tc.noDM {
						return noDMProcDevices, 0
					}
					return testProcDevices, 0
				case len(argv) == 2 && argv[0] == "cat" && argv[1] == "/proc/misc":
					if tc.noDM {
						return noDMProcMisc, 0
					}
					return testProcMisc, 0
				case argv[0] == "sh" && tc.devicesFailed:
					return "mknod: /dev/dm-0: Operation not permitted\n", 1
				case argv[0] == "umount":
					return "", 32 // not mounted: ignored
				}
				return "", 0
			}}
			h.srv = s
			c, err := h.newContainer(target.Spec{BuildID: "1", Series: "noble", Arch: tc.arch, Privileged: tc.spec}, target.Options{Log: &bytes.Buffer{}})
			if err != nil {
				t.Fatal(err)
			}
			cfgMap := c.config(hostIdentity{hostname: "buildd07"})
			if got := cfgMap["security.privileged"]; got != fmt.Sprint(tc.wantPriv) {
				t.Errorf("security.privileged = %q, want %v", got, tc.wantPriv)
			}
			if cfgMap["security.nesting"] != "true" {
				t.Errorf("security.nesting = %q", cfgMap["security.nesting"])
			}
			if diff := cmp.Diff(strings.Join(tc.wantRaw, "\n")+"\n", cfgMap["raw.lxc"]); diff != "" {
				t.Errorf("raw.lxc (-want +got):\n%s", diff)
			}
			f.instances[c.name] = api.Instance{Name: c.name, StatusCode: api.Running, Status: "Running"}
			err = c.Start(context.Background())
			log := c.opts.Log.(*bytes.Buffer).String()
			if tc.devicesFailed {
				if err == nil || !strings.Contains(err.Error(), "cannot make device nodes") || !strings.Contains(log, "Operation not permitted") {
					t.Errorf("Start = %v, log %q; want the mknod failure in both", err, log)
				}
			} else if err != nil {
				t.Fatalf("Start: %v\n%s", err, log)
			}
			if tc.wantLog != "" && !strings.Contains(log, tc.wantLog) {
				t.Errorf("log %q lacks %q", log, tc.wantLog)
			}
			if tc.wantLog == "" && strings.Contains(log, "device-mapper") {
				t.Errorf("log %q mentions device-mapper", log)
			}
			got := s.execs[1:] // [0] is the readiness check
			if diff := cmp.Diff(tc.wantExecs, got, cmp.Comparer(func(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") })); len(tc.wantExecs)+len(got) > 0 && diff != "" {
				t.Errorf("commands after start (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDevicesScript runs the device script in a shell with mknod, mkdir
// and the paths redirected into a temporary directory: what exists is left,
// what is missing is made with the right type and numbers.
func TestDevicesScript(t *testing.T) {
	dir := t.TempDir()
	script := strings.ReplaceAll(devicesScript, "/dev/", dir+"/dev/")
	mknodLog := dir + "/mknod.log"
	shim := fmt.Sprintf(`mknod() { echo "$*" >>%q; : >"$3"; }
mkdir -p %q/dev
: >%q/dev/loop0
`, mknodLog, dir, dir)
	for _, tc := range []struct {
		dm, ctl string
		want    []string
	}{
		{"252", "236", []string{
			"-m 0660 DIR/dev/loop-control c 10 237",
			"-m 0660 DIR/dev/loop1 b 7 1", "-m 0660 DIR/dev/loop2 b 7 2", "-m 0660 DIR/dev/loop3 b 7 3",
			"-m 0660 DIR/dev/loop4 b 7 4", "-m 0660 DIR/dev/loop5 b 7 5", "-m 0660 DIR/dev/loop6 b 7 6",
			"-m 0660 DIR/dev/loop7 b 7 7",
			"-m 0660 DIR/dev/dm-0 b 252 0", "-m 0660 DIR/dev/dm-1 b 252 1", "-m 0660 DIR/dev/dm-2 b 252 2",
			"-m 0660 DIR/dev/dm-3 b 252 3", "-m 0660 DIR/dev/dm-4 b 252 4", "-m 0660 DIR/dev/dm-5 b 252 5",
			"-m 0660 DIR/dev/dm-6 b 252 6", "-m 0660 DIR/dev/dm-7 b 252 7",
			"-m 0600 DIR/dev/mapper/control c 10 236",
		}},
		// Second run: everything exists, nothing is made.
		{"252", "236", nil},
	} {
		_ = removeFile(mknodLog)
		out, err := runShell(shim+script, tc.dm, tc.ctl)
		if err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
		got := readLines(mknodLog, dir)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("mknod calls (-want +got):\n%s", diff)
		}
		if n := strings.Count(out, "made "); n != len(tc.want) {
			t.Errorf("script reports %d nodes made, want %d:\n%s", n, len(tc.want), out)
		}
	}
	// Without device-mapper only the loop nodes are considered.
	dir2 := t.TempDir()
	script2 := strings.ReplaceAll(devicesScript, "/dev/", dir2+"/dev/")
	log2 := dir2 + "/mknod.log"
	shim2 := fmt.Sprintf("mknod() { echo \"$*\" >>%q; : >\"$3\"; }\nmkdir -p %q/dev\n", log2, dir2)
	if out, err := runShell(shim2+script2, "", ""); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	for _, l := range readLines(log2, dir2) {
		if strings.Contains(l, "dm-") || strings.Contains(l, "mapper") {
			t.Errorf("made %q without device-mapper", l)
		}
	}
}

func TestDeviceNumbers(t *testing.T) {
	for _, tc := range []struct {
		devices, misc string
		dm, ctl       int
		dmOK, ctlOK   bool
	}{
		{testProcDevices, testProcMisc, 252, 236, true, true},
		{noDMProcDevices, noDMProcMisc, 0, 0, false, false},
		// Only the block section counts.
		{"Character devices:\n254 device-mapper\n", "", 0, 0, false, false},
		{"Block devices:\nx device-mapper\n-1 device-mapper\n99999 device-mapper\n254 device-mapper\n", "bad\n", 254, 0, true, false},
		{"Block devices:\n254 device-mapper extra\n", "236  device-mapper\n", 0, 236, false, true},
		{"", "", 0, 0, false, false},
	} {
		dm, ok := deviceMajor([]byte(tc.devices), "Block devices:", "device-mapper")
		if dm != tc.dm || ok != tc.dmOK {
			t.Errorf("deviceMajor(%q) = %d %v, want %d %v", tc.devices, dm, ok, tc.dm, tc.dmOK)
		}
		ctl, ok := miscMinor([]byte(tc.misc), "device-mapper")
		if ctl != tc.ctl || ok != tc.ctlOK {
			t.Errorf("miscMinor(%q) = %d %v, want %d %v", tc.misc, ctl, ok, tc.ctl, tc.ctlOK)
		}
	}
}

// FuzzDeviceNumbers: the kernel's files are trusted less than that: any
// input gives a number mknod accepts, or none.
func FuzzDeviceNumbers(f *testing.F) {
	f.Add([]byte(testProcDevices))
	f.Add([]byte(noDMProcDevices))
	f.Add([]byte("Block devices:\n 0 device-mapper\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if n, ok := deviceMajor(data, "Block devices:", "device-mapper"); ok && (n < 0 || n > 4095 || !bytes.Contains(data, []byte("device-mapper"))) {
			t.Errorf("deviceMajor = %d", n)
		}
		if n, ok := miscMinor(data, "device-mapper"); ok && (n < 0 || n > 4095) {
			t.Errorf("miscMinor = %d", n)
		}
	})
}

func runShell(script string, args ...string) (string, error) {
	out, err := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...).CombinedOutput()
	return string(out), err
}

func removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// readLines is p's lines with dir written DIR; nil if p does not exist.
func readLines(p, dir string) []string {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(strings.ReplaceAll(string(b), dir, "DIR"), "\n"), "\n")
}

package lxd

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// What nvidia-container-cli list prints on a host with one GPU (the shape
// of its real output: device nodes, then binaries, libraries, firmware and
// IPC sockets).
const nvidiaList = `/dev/nvidiactl
/dev/nvidia-uvm
/dev/nvidia-uvm-tools
/dev/nvidia-modeset
/dev/nvidia0
/usr/bin/nvidia-smi
/usr/bin/nvidia-persistenced
/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03
/usr/lib/x86_64-linux-gnu/libcuda.so.535.129.03
/lib/firmware/nvidia/535.129.03/gsp_ga10x.bin
/run/nvidia-persistenced/socket
`

// fakeNvidia replaces the host seams for one test: the lister's output (or
// error) and the host's character devices.
func fakeNvidia(t *testing.T, out string, err error, devs map[string]charDevice) {
	t.Helper()
	oldList, oldStat := listNvidiaPaths, statCharDevice
	t.Cleanup(func() { listNvidiaPaths, statCharDevice = oldList, oldStat })
	listNvidiaPaths = func(context.Context) ([]byte, error) { return []byte(out), err }
	statCharDevice = func(p string) (charDevice, bool, error) {
		if d, ok := devs[p]; ok {
			return d, true, nil
		}
		if strings.HasPrefix(p, "/dev/nvidia") {
			return charDevice{}, false, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		}
		return charDevice{}, false, nil
	}
}

// oneGPU is a host's NVIDIA device nodes (numbers as on a real host).
var oneGPU = map[string]charDevice{
	"/dev/nvidiactl":        {mode: 0o666, major: 195, minor: 255},
	"/dev/nvidia-uvm":       {mode: 0o666, major: 511, minor: 0},
	"/dev/nvidia-uvm-tools": {mode: 0o666, major: 511, minor: 1},
	"/dev/nvidia-modeset":   {mode: 0o666, major: 195, minor: 254},
	"/dev/nvidia0":          {mode: 0o666, major: 195, minor: 0},
}

// The reference's disk devices for nvidiaList: nvidia-<i>, i the path's
// index in the whole list.
func disks() map[string]map[string]string {
	d := map[string]map[string]string{}
	for i, p := range map[int]string{
		5:  "/usr/bin/nvidia-smi",
		6:  "/usr/bin/nvidia-persistenced",
		7:  "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03",
		8:  "/usr/lib/x86_64-linux-gnu/libcuda.so.535.129.03",
		9:  "/lib/firmware/nvidia/535.129.03/gsp_ga10x.bin",
		10: "/run/nvidia-persistenced/socket",
	} {
		d[fmt.Sprintf("nvidia-%d", i)] = map[string]string{"type": "disk", "source": p, "path": p}
	}
	return d
}

func TestGPUDevices(t *testing.T) {
	paths, err := parseNvidiaPaths([]byte(nvidiaList))
	if err != nil {
		t.Fatal(err)
	}
	stat := func(p string) (charDevice, bool, error) { d, ok := oneGPU[p]; return d, ok, nil }

	// Privileged (the reference): bind mounts only; the nodes are made
	// after start.
	plan, err := gpuDevices(paths, true, stat)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(disks(), plan.devices); diff != "" {
		t.Errorf("privileged devices (-want +got):\n%s", diff)
	}
	var nodes []string
	for _, n := range plan.nodes {
		nodes = append(nodes, n.path)
	}
	if diff := cmp.Diff([]string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia0"}, nodes); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}

	// Unprivileged: the nodes are LXD unix-char devices with the host's
	// numbers and mode.
	plan, err = gpuDevices(paths, false, stat)
	if err != nil {
		t.Fatal(err)
	}
	want := disks()
	want["nvidia-0"] = map[string]string{"type": "unix-char", "source": "/dev/nvidiactl", "path": "/dev/nvidiactl", "major": "195", "minor": "255", "mode": "0666"}
	want["nvidia-1"] = map[string]string{"type": "unix-char", "source": "/dev/nvidia-uvm", "path": "/dev/nvidia-uvm", "major": "511", "minor": "0", "mode": "0666"}
	want["nvidia-2"] = map[string]string{"type": "unix-char", "source": "/dev/nvidia-uvm-tools", "path": "/dev/nvidia-uvm-tools", "major": "511", "minor": "1", "mode": "0666"}
	want["nvidia-3"] = map[string]string{"type": "unix-char", "source": "/dev/nvidia-modeset", "path": "/dev/nvidia-modeset", "major": "195", "minor": "254", "mode": "0666"}
	want["nvidia-4"] = map[string]string{"type": "unix-char", "source": "/dev/nvidia0", "path": "/dev/nvidia0", "major": "195", "minor": "0", "mode": "0666"}
	if diff := cmp.Diff(want, plan.devices); diff != "" {
		t.Errorf("unprivileged devices (-want +got):\n%s", diff)
	}
	if len(plan.nodes) != 0 {
		t.Errorf("unprivileged nodes to mknod: %v", plan.nodes)
	}

	// A /dev path that is not a character device is skipped, as the
	// reference's S_ISCHR check.
	plan, err = gpuDevices([]string{"/dev/shm/x", "/dev/nvidia0"}, true, stat)
	if err != nil || len(plan.nodes) != 1 || len(plan.devices) != 0 {
		t.Errorf("non-device /dev path: %+v %v", plan, err)
	}
}

func TestParseNvidiaPaths(t *testing.T) {
	tests := []struct {
		out     string
		want    []string
		wantErr bool
	}{
		{out: "", want: nil},
		{out: "/dev/nvidia0\r\n\n/usr/lib/libcuda.so.1\n", want: []string{"/dev/nvidia0", "/usr/lib/libcuda.so.1"}},
		{out: "nvidia0\n", wantErr: true},
		{out: "/usr/lib/../../etc/shadow\n", wantErr: true},
		{out: "/\n", wantErr: true},
		{out: "/dev/nvidia0 \n", wantErr: false, want: []string{"/dev/nvidia0 "}},
		{out: "/a\x00b\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseNvidiaPaths([]byte(tt.out))
		if (err != nil) != tt.wantErr || !cmp.Equal(got, tt.want) {
			t.Errorf("parseNvidiaPaths(%q) = %q, %v", tt.out, got, err)
		}
	}
}

func FuzzParseNvidiaPaths(f *testing.F) {
	f.Add([]byte(nvidiaList))
	f.Add([]byte("/a/../b\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		paths, err := parseNvidiaPaths(out)
		if err != nil {
			return
		}
		for _, p := range paths {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\x00\n") {
				t.Fatalf("accepted %q", p)
			}
		}
	})
}

// gpuFake is the fake LXD plus the instance calls Create and Start make:
// it records the InstancesPost and each exec's argv.
type gpuFake struct {
	*fakeServer
	posts []api.InstancesPost
	execs [][]string
}

func (g *gpuFake) CreateInstance(post api.InstancesPost) (lxdclient.Operation, error) {
	g.posts = append(g.posts, post)
	// Stop Create here: the devices are what this test is about.
	return nil, errors.New("fake: no instances")
}

func (g *gpuFake) ExecInstance(_ string, post api.InstanceExecPost, args *lxdclient.InstanceExecArgs) (lxdclient.Operation, error) {
	g.execs = append(g.execs, post.Command)
	close(args.DataDone)
	return done(map[string]any{"return": float64(0)}), nil
}

func gpuHost(t *testing.T, cfg Config) (*Host, *gpuFake, target.Image) {
	t.Helper()
	g := &gpuFake{fakeServer: newFakeServer()}
	h, err := newHost(context.Background(), cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	data := compress(t, compGzip, chrootTar(t, []member{{name: "chroot-autobuild/", typ: tar.TypeDir}, {name: "chroot-autobuild/etc/hosts", body: "x"}}))
	p := filepath.Join(t.TempDir(), "chroot.tar.gz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha1.Sum(data)
	return h, g, target.Image{Path: p, SHA1: hex.EncodeToString(s[:]), Type: "chroot"}
}

func newGPUContainer(t *testing.T, h *Host, privileged bool, constraints ...string) *Container {
	t.Helper()
	tgt, err := h.Factory()(context.Background(), target.Spec{BuildID: "1", Series: "noble", Arch: "amd64",
		Privileged: privileged, Constraints: constraints}, target.Options{Log: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	return tgt.(*Container)
}

// TestCreateGPUDevices checks the devices LXD receives at creation.
func TestCreateGPUDevices(t *testing.T) {
	fakeNvidia(t, nvidiaList, nil, oneGPU)
	h, g, img := gpuHost(t, testHostConfig())

	// Without the constraint: no devices of the container's own, and the
	// lister is not even asked.
	listed := false
	listNvidiaPaths = func(context.Context) ([]byte, error) { listed = true; return []byte(nvidiaList), nil }
	_ = newGPUContainer(t, h, false).Create(context.Background(), img)
	if len(g.posts) != 1 || g.posts[0].Devices != nil || listed {
		t.Fatalf("no constraint: posts %+v, listed %v", g.posts, listed)
	}

	// Privileged with gpu-nvidia: the reference's bind mounts.
	c := newGPUContainer(t, h, true, "gpu-nvidia")
	if err := c.Create(context.Background(), img); err == nil || !strings.Contains(err.Error(), "fake: no instances") {
		t.Fatalf("Create: %v", err)
	}
	if diff := cmp.Diff(disks(), g.posts[1].Devices); diff != "" {
		t.Errorf("privileged devices (-want +got):\n%s", diff)
	}
	if g.posts[1].Config["security.privileged"] != "true" {
		t.Errorf("not privileged: %v", g.posts[1].Config)
	}
	if log := c.opts.Log.(*bytes.Buffer).String(); !strings.Contains(log, "Passing the host's NVIDIA GPUs into the container (gpu-nvidia): 11 paths") {
		t.Errorf("build log: %q", log)
	}

	// Unprivileged: device nodes as unix-char devices.
	_ = newGPUContainer(t, h, false, "gpu-nvidia").Create(context.Background(), img)
	if d := g.posts[2].Devices["nvidia-4"]; d["type"] != "unix-char" || d["major"] != "195" || d["minor"] != "0" {
		t.Errorf("unprivileged nvidia0: %v", d)
	}
}

// TestCreateWithoutGPU: a host without NVIDIA devices fails Create (which
// the managers report as CHROOTFAIL) with a message saying so, before any
// image or container work.
func TestCreateWithoutGPU(t *testing.T) {
	tests := []struct {
		name string
		out  string
		err  error
		devs map[string]charDevice
		cfg  func(*Config)
		want string
	}{
		{name: "no cli", err: errors.New("nvidia-container-cli is not installed (neither /snap/lxd/current/bin/nvidia-container-cli.real from the LXD snap nor nvidia-container-cli on PATH)"),
			want: "this host has no usable NVIDIA driver: nvidia-container-cli is not installed"},
		{name: "no driver", err: errors.New("nvidia-container-cli list: exit status 1: nvidia-container-cli: initialization error: nvml error: driver not loaded"),
			want: "this host has no usable NVIDIA driver: nvidia-container-cli list: exit status 1: nvidia-container-cli: initialization error"},
		{name: "libraries only", out: "/usr/bin/nvidia-smi\n", want: "this host has no NVIDIA devices"},
		{name: "listed device missing", out: "/dev/nvidia0\n", want: "cannot inspect the host's /dev/nvidia0"},
		{name: "garbage", out: "../../etc/shadow\n", want: "not a clean absolute path"},
		{name: "remote LXD", out: nvidiaList, devs: oneGPU, cfg: func(c *Config) { c.RemoteURL = "https://lxd.example:8443" },
			want: "LXD is remote (https://lxd.example:8443)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeNvidia(t, tt.out, tt.err, tt.devs)
			cfg := testHostConfig()
			h, g, img := gpuHost(t, cfg)
			if tt.cfg != nil {
				tt.cfg(&h.cfg)
			}
			err := newGPUContainer(t, h, true, "gpu-nvidia").Create(context.Background(), img)
			if err == nil || !strings.Contains(err.Error(), tt.want) ||
				!strings.HasPrefix(err.Error(), "cannot give the build the NVIDIA GPUs it asks for (constraint gpu-nvidia): ") {
				t.Fatalf("Create = %v, want an error containing %q", err, tt.want)
			}
			if len(g.posts) != 0 || len(g.uploads) != 0 {
				t.Errorf("work done before failing: %d creates, %d uploads", len(g.posts), len(g.uploads))
			}
		})
	}
}

// TestStartGPU checks what runs in the started container: mknod of the
// absent nodes with the host's mode and numbers (privileged), then ldconfig.
func TestStartGPU(t *testing.T) {
	fakeNvidia(t, nvidiaList, nil, oneGPU)
	for _, privileged := range []bool{true, false} {
		h, g, _ := gpuHost(t, testHostConfig())
		c := newGPUContainer(t, h, privileged, "gpu-nvidia")
		plan, err := c.planGPU(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.gpu = plan
		if err := c.startGPU(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := [][]string{{"/sbin/ldconfig"}}
		if privileged {
			want = [][]string{{"sh", "-c", gpuNodesScript, "sh",
				"/dev/nvidiactl", "0666", "195", "255",
				"/dev/nvidia-uvm", "0666", "511", "0",
				"/dev/nvidia-uvm-tools", "0666", "511", "1",
				"/dev/nvidia-modeset", "0666", "195", "254",
				"/dev/nvidia0", "0666", "195", "0"}, {"/sbin/ldconfig"}}
		}
		if diff := cmp.Diff(want, g.execs); diff != "" {
			t.Errorf("privileged=%v execs (-want +got):\n%s", privileged, diff)
		}
	}
	// Without the constraint nothing runs.
	h, g, _ := gpuHost(t, testHostConfig())
	if err := newGPUContainer(t, h, true).startGPU(context.Background()); err != nil || len(g.execs) != 0 {
		t.Errorf("no constraint: %v, execs %v", err, g.execs)
	}
}

// TestGPUNodesScript runs the mknod script for real (as root, in a
// temporary directory): an absent node is made with the given mode and
// numbers, an existing path is left alone.
func TestGPUNodesScript(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	made, kept := filepath.Join(dir, "nvidia0"), filepath.Join(dir, "nvidiactl")
	if err := os.WriteFile(kept, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", gpuNodesScript, "sh", made, "0640", "1", "3", kept, "0666", "1", "5").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	d, ok, err := hostCharDevice(made)
	if err != nil || !ok || d.major != 1 || d.minor != 3 {
		t.Errorf("made node: %+v %v %v", d, ok, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(made, &st); err != nil || st.Mode&0o7777 != 0o640 {
		t.Errorf("made node mode %o", st.Mode&0o777)
	}
	if b, err := os.ReadFile(kept); err != nil || string(b) != "keep" {
		t.Errorf("existing path touched: %q %v", b, err)
	}
	// A failing mknod fails the script.
	if err := exec.Command("sh", "-c", gpuNodesScript, "sh", filepath.Join(dir, "no", "such"), "0666", "1", "3").Run(); err == nil {
		t.Error("mknod into a missing directory succeeded")
	}
}

// TestHostCharDevice reads a real character device's numbers.
func TestHostCharDevice(t *testing.T) {
	d, ok, err := hostCharDevice("/dev/null")
	if err != nil || !ok || d.major != 1 || d.minor != 3 || d.mode != 0o666 {
		t.Errorf("/dev/null: %+v %v %v", d, ok, err)
	}
	if _, ok, err := hostCharDevice("/etc/hostname"); ok || err != nil {
		t.Errorf("/etc/hostname: %v %v", ok, err)
	}
	if _, _, err := hostCharDevice("/nonexistent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

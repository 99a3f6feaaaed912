package lxd

// The gpu-nvidia constraint: the host's NVIDIA devices, driver libraries
// and tools passed into the build container as launchpad-buildd's
// target/lxd.py does it (_nvidia_container_paths, create_profile, start).
//
// The reference runs `nvidia-container-cli list` from the LXD snap and, for
// every path it prints, either bind-mounts it (a disk device nvidia-<i>,
// for everything outside /dev) or, once the privileged container is
// running, mknods it with the host's mode and numbers (the /dev character
// devices: a bind-mounted device node would not propagate into the lxd snap
// that lpci starts inside the container, and LXC's nvidia hook there would
// fail), then runs ldconfig for the mounted libraries. LXD's own
// nvidia.runtime cannot be used: it does not work with security.privileged.
//
// Unlike the reference, containers are unprivileged by default, and mknod is
// not permitted in an unprivileged container: there the device nodes are
// LXD unix-char devices (LXD makes them with the host's numbers) under the
// same names.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// ConstraintGPUNvidia is the builder constraint asking for the host's NVIDIA
// GPUs in the build container.
const ConstraintGPUNvidia = "gpu-nvidia"

// The LXD snap's nvidia-container-cli, as the reference runs it; outside
// the snap (Debian's LXD) the one on PATH (libnvidia-container-tools).
const (
	snapNvidiaCLI    = "/snap/lxd/current/bin/nvidia-container-cli.real"
	snapNvidiaLibDir = "/snap/lxd/current/lib"
)

// charDevice is a host character device node.
type charDevice struct {
	mode         fs.FileMode // permission bits
	major, minor uint32
}

// Test seams: what the host has. listNvidiaPaths prints what
// `nvidia-container-cli list` prints; statCharDevice stats a host path,
// ok false when it is not a character device.
var (
	listNvidiaPaths = nvidiaContainerPaths
	statCharDevice  = hostCharDevice
)

// nvidiaContainerPaths runs `nvidia-container-cli list` (the snap's, with
// its libraries, as the reference; else the one on PATH).
func nvidiaContainerPaths(ctx context.Context) ([]byte, error) {
	var cmd *exec.Cmd
	if _, err := os.Stat(snapNvidiaCLI); err == nil {
		cmd = exec.CommandContext(ctx, snapNvidiaCLI, "list")
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+snapNvidiaLibDir)
	} else if p, err := exec.LookPath("nvidia-container-cli"); err == nil {
		cmd = exec.CommandContext(ctx, p, "list")
	} else {
		return nil, fmt.Errorf("nvidia-container-cli is not installed (neither %s from the LXD snap nor nvidia-container-cli on PATH)", snapNvidiaCLI)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return nil, fmt.Errorf("%s list: %w: %s", cmd.Path, err, msg)
	}
	return out, nil
}

func hostCharDevice(p string) (charDevice, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return charDevice{}, false, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return charDevice{}, false, nil
	}
	return charDevice{
		mode:  fs.FileMode(st.Mode & 0o7777),
		major: unix.Major(uint64(st.Rdev)),
		minor: unix.Minor(uint64(st.Rdev)),
	}, true, nil
}

// gpuPlan is what gpu-nvidia passes into one container.
type gpuPlan struct {
	// devices are the LXD devices added to the container at creation.
	devices map[string]map[string]string
	// nodes are the /dev character devices mknod makes after start (a
	// privileged container only).
	nodes []gpuNode
}

type gpuNode struct {
	path string
	dev  charDevice
}

// wantsGPU says whether the build asked for NVIDIA GPUs.
func (c *Container) wantsGPU() bool {
	return slices.Contains(c.spec.Constraints, ConstraintGPUNvidia)
}

// planGPU lists the host's NVIDIA paths and plans the container's devices.
// A host without NVIDIA devices (or without nvidia-container-cli) is an
// error saying so: the build asked for something this builder cannot give.
func (c *Container) planGPU(ctx context.Context) (*gpuPlan, error) {
	if !c.wantsGPU() {
		return nil, nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("cannot give the build the NVIDIA GPUs it asks for (constraint %s): %s", ConstraintGPUNvidia, fmt.Sprintf(format, args...))
	}
	if c.h.cfg.RemoteURL != "" {
		return nil, fail("LXD is remote (%s) and the NVIDIA devices can only be listed on the LXD host itself", c.h.cfg.RemoteURL)
	}
	out, err := listNvidiaPaths(ctx)
	if err != nil {
		return nil, fail("this host has no usable NVIDIA driver: %v", err)
	}
	paths, err := parseNvidiaPaths(out)
	if err != nil {
		return nil, fail("%v", err)
	}
	plan, err := gpuDevices(paths, c.privileged, statCharDevice)
	if err != nil {
		return nil, fail("%v", err)
	}
	if len(plan.nodes) == 0 && !hasUnixChar(plan.devices) {
		return nil, fail("this host has no NVIDIA devices (nvidia-container-cli list printed no /dev/ character device)")
	}
	logf(c.opts.Log, "Passing the host's NVIDIA GPUs into the container (%s): %d paths", ConstraintGPUNvidia, len(paths))
	return plan, nil
}

// parseNvidiaPaths parses nvidia-container-cli list's output: one absolute
// path a line. Anything else is refused rather than mounted.
func parseNvidiaPaths(out []byte) ([]string, error) {
	var paths []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if !path.IsAbs(line) || path.Clean(line) != line || strings.ContainsRune(line, 0) || line == "/" {
			return nil, fmt.Errorf("nvidia-container-cli list printed %q, which is not a clean absolute path", line)
		}
		paths = append(paths, line)
	}
	return paths, nil
}

// gpuDevices is the reference's devices for paths: nvidia-<i> (i the
// path's index in the list) a read-write bind mount of every path outside
// /dev; the /dev character devices made after start (privileged) or as
// LXD unix-char devices (unprivileged). A /dev path that is not a
// character device is skipped, as the reference does.
func gpuDevices(paths []string, privileged bool, stat func(string) (charDevice, bool, error)) (*gpuPlan, error) {
	plan := &gpuPlan{devices: map[string]map[string]string{}}
	for i, p := range paths {
		name := "nvidia-" + strconv.Itoa(i)
		if !strings.HasPrefix(p, "/dev/") {
			plan.devices[name] = map[string]string{"type": "disk", "source": p, "path": p}
			continue
		}
		dev, ok, err := stat(p)
		if err != nil {
			return nil, fmt.Errorf("cannot inspect the host's %s: %w", p, err)
		}
		if !ok {
			continue
		}
		if privileged {
			plan.nodes = append(plan.nodes, gpuNode{path: p, dev: dev})
			continue
		}
		plan.devices[name] = map[string]string{
			"type":   "unix-char",
			"source": p,
			"path":   p,
			"major":  strconv.FormatUint(uint64(dev.major), 10),
			"minor":  strconv.FormatUint(uint64(dev.minor), 10),
			"mode":   fmt.Sprintf("0%o", dev.mode.Perm()),
		}
	}
	return plan, nil
}

// lxdDevices is the container's own devices (nil without gpu-nvidia).
func (p *gpuPlan) lxdDevices() map[string]map[string]string {
	if p == nil {
		return nil
	}
	return p.devices
}

func hasUnixChar(devices map[string]map[string]string) bool {
	for _, d := range devices {
		if d["type"] == "unix-char" {
			return true
		}
	}
	return false
}

// gpuNodesScript makes each absent node: "$@" is path, mode, major, minor
// for each node (the reference's `mknod -m 0<mode> <path> c <major>
// <minor>` when not path_exists).
const gpuNodesScript = `while [ $# -ge 4 ]; do
  [ -e "$1" ] || mknod -m "$2" "$1" c "$3" "$4" || exit 1
  shift 4
done`

// startGPU finishes gpu-nvidia in the running container: the device nodes
// of a privileged container, then ldconfig for the mounted libraries.
func (c *Container) startGPU(ctx context.Context) error {
	if c.gpu == nil {
		return nil
	}
	if len(c.gpu.nodes) > 0 {
		args := []string{"sh", "-c", gpuNodesScript, "sh"}
		for _, n := range c.gpu.nodes {
			args = append(args, n.path, fmt.Sprintf("0%o", n.dev.mode.Perm()),
				strconv.FormatUint(uint64(n.dev.major), 10), strconv.FormatUint(uint64(n.dev.minor), 10))
		}
		if err := c.runChecked(ctx, "cannot make the NVIDIA device nodes", args); err != nil {
			return err
		}
	}
	return c.runChecked(ctx, "cannot update the dynamic linker's cache for the NVIDIA libraries", []string{"/sbin/ldconfig"})
}

// runChecked runs args as root; a non-zero exit is an error with its output.
func (c *Container) runChecked(ctx context.Context, what string, args []string) error {
	var out bytes.Buffer
	code, err := c.run(ctx, target.Command{Args: args, Stdout: &out, Stderr: &out}, runOpts{})
	if err != nil {
		return fmt.Errorf("%s in container %q: %w", what, c.name, err)
	}
	if code != 0 {
		return fmt.Errorf("%s in container %q: %s exited %d: %s", what, c.name, args[0], code, strings.TrimSpace(out.String()))
	}
	return nil
}

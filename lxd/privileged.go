package lxd

// The build root image builds need: launchpad-buildd's LXD profile and the
// device nodes it makes in a started container (lpbuildd/target/lxd.py,
// create_profile and start). The reference gives every build this root;
// here only a container asked to be privileged gets it (target.Spec.
// Privileged, which only the livefs manager sets, or the operator's
// [lxd] privileged), as live-build makes images on loop devices and
// kpartx/dmsetup partition them through device-mapper. Every other
// container stays unprivileged and gets none of this.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// privilegedRawLXC is the reference's raw.lxc for its privileged
// containers, in its (sorted) order, the network and AppArmor keys aside:
// every capability but setting the clock and loading modules, no device
// cgroup (the v1 and v2 lists emptied), proc and sys writable, and the
// host's devtmpfs as /dev (so the loop devices the kernel creates when
// losetup asks /dev/loop-control for one appear in the container).
var privilegedRawLXC = []string{
	"lxc.autodev=0",
	"lxc.cap.drop=",
	"lxc.cap.drop=sys_time sys_module",
	"lxc.cgroup.devices.allow=",
	"lxc.cgroup.devices.deny=",
	"lxc.cgroup2.devices.allow=",
	"lxc.cgroup2.devices.deny=",
	"lxc.mount.auto=",
	"lxc.mount.auto=proc:rw sys:rw",
	"lxc.mount.entry=udev dev devtmpfs rw,nosuid,relatime,mode=755,inode64",
}

// appArmorUnconfined takes the container out of the AppArmor profile LXD
// generates for it, which denies the mounts live-build makes (proc, sysfs
// and devpts in the chroot it bootstraps, the image's filesystems).
const appArmorUnconfined = "lxc.apparmor.profile=unconfined"

// appArmorAvailable reports whether the kernel has AppArmor, the test LXD
// itself makes (/sys/kernel/security/apparmor is a directory). Without
// it LXD applies no profile and a liblxc built without AppArmor may refuse
// the key, so it is only set where AppArmor exists. With a remote LXD
// this is the agent's own kernel: run the agent on the same kind of host
// as its LXD. A variable so that tests can say either.
var appArmorAvailable = func() bool {
	fi, err := os.Stat("/sys/kernel/security/apparmor")
	return err == nil && fi.IsDir()
}

// privilegedLines is the raw.lxc a privileged container gets on top of
// the network and hostname lines.
func privilegedLines(appArmor bool) []string {
	lines := append([]string(nil), privilegedRawLXC...)
	if appArmor {
		lines = append([]string{appArmorUnconfined}, lines...)
	}
	return lines
}

// devicesScript makes the nodes a privileged container's devtmpfs lacks:
// loop-control (misc 10:237) and loop0-7 (block major 7), present on any
// host with the loop driver, made here for one where it is a module not
// yet loaded (opening them loads it); dm-0..7, as the reference (focal's
// kpartx looks for them and hangs in their absence), and
// /dev/mapper/control, when the kernel has device-mapper ($1 its block
// major, $2 its misc minor, "" if none). Existing nodes are left alone
// (on the host's devtmpfs, what is made is also the host's). It prints
// what it made.
const devicesScript = `set -e
dm=$1 ctl=$2
mk() { [ -e "$1" ] && return 0; mknod -m "$2" "$1" "$3" "$4" "$5"; echo "made $1"; }
mk /dev/loop-control 0660 c 10 237
for m in 0 1 2 3 4 5 6 7; do mk /dev/loop$m 0660 b 7 $m; done
if [ -n "$dm" ]; then
	for m in 0 1 2 3 4 5 6 7; do mk /dev/dm-$m 0660 b "$dm" $m; done
fi
if [ -n "$ctl" ]; then
	mkdir -p /dev/mapper
	mk /dev/mapper/control 0600 c 10 "$ctl"
fi
`

// startedHooks is what the reference does in a started container: the
// device nodes of a privileged one, and the armhf /proc/cpuinfo
// workaround (for any armhf container: it is about the architecture).
func (c *Container) startedHooks(ctx context.Context) error {
	if c.privileged {
		if err := c.makeDeviceNodes(ctx); err != nil {
			return err
		}
	}
	if c.spec.Arch == "armhf" {
		c.unmountCPUInfo(ctx)
	}
	return nil
}

// makeDeviceNodes reads the device numbers from the container's
// /proc/devices and /proc/misc (the LXD host's kernel, also when LXD is
// remote) and makes the nodes. A kernel without device-mapper is not an
// error, unlike in the reference (it raises): the build log says so, and
// only builds that need kpartx or dmsetup will fail.
func (c *Container) makeDeviceNodes(ctx context.Context) error {
	devices, err := c.output(ctx, "/proc/devices")
	if err != nil {
		return err
	}
	misc, err := c.output(ctx, "/proc/misc")
	if err != nil {
		return err
	}
	dm, dmOK := deviceMajor(devices, "Block devices:", "device-mapper")
	ctl, ctlOK := miscMinor(misc, "device-mapper")
	args := []string{"sh", "-c", devicesScript, "sh", "", ""}
	if dmOK {
		args[4] = strconv.Itoa(dm)
	}
	if ctlOK {
		args[5] = strconv.Itoa(ctl)
	}
	if !dmOK {
		logf(c.opts.Log, "The kernel has no device-mapper (not in /proc/devices): no /dev/dm-* or /dev/mapper/control in container %s; builds that need kpartx or dmsetup will fail", c.name)
	}
	var out bytes.Buffer
	code, err := c.run(ctx, target.Command{Args: args, Stdout: &out, Stderr: &out}, runOpts{})
	if err != nil {
		return fmt.Errorf("cannot make device nodes in container %q: %w", c.name, err)
	}
	if code != 0 {
		return fmt.Errorf("cannot make device nodes in container %q: exit status %d: %s", c.name, code, strings.TrimSpace(out.String()))
	}
	if made := strings.TrimSpace(out.String()); made != "" {
		c.h.log.Debug("device nodes made", "container", c.name, "nodes", strings.ReplaceAll(made, "\n", ", "))
	}
	return nil
}

// output is the content of a file of the container's /proc (read with
// cat: LXD's file API reads the container's root, not its mounts).
func (c *Container) output(ctx context.Context, p string) ([]byte, error) {
	var out, errb bytes.Buffer
	code, err := c.run(ctx, target.Command{Args: []string{"cat", p}, Stdout: &out, Stderr: &errb}, runOpts{})
	if err != nil {
		return nil, fmt.Errorf("cannot read %s in container %q: %w", p, c.name, err)
	}
	if code != 0 {
		return nil, fmt.Errorf("cannot read %s in container %q: cat exited %d: %s", p, c.name, code, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// unmountCPUInfo works around https://github.com/lxc/lxcfs/issues/553
// as the reference does: lxcfs's /proc/cpuinfo is wrong for 32-bit ARM, so
// the kernel's is uncovered (possibly over-reporting the usable cores,
// which does not matter to a build). Failure is ignored, as there.
func (c *Container) unmountCPUInfo(ctx context.Context) {
	code, err := c.run(ctx, target.Command{Args: []string{"umount", "/proc/cpuinfo"}, Stdout: io.Discard, Stderr: io.Discard}, runOpts{})
	if err != nil || code != 0 {
		c.h.log.Debug("umount /proc/cpuinfo failed (ignored)", "container", c.name, "code", code, "err", err)
	}
}

// deviceMajor finds name's major number in section ("Character devices:"
// or "Block devices:") of /proc/devices.
func deviceMajor(procDevices []byte, section, name string) (int, bool) {
	in := false
	sc := bufio.NewScanner(bytes.NewReader(procDevices))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, ":") {
			in = line == section
			continue
		}
		if !in {
			continue
		}
		if n, ok := numberedEntry(line, name); ok {
			return n, true
		}
	}
	return 0, false
}

// miscMinor finds name's minor number in /proc/misc ("236 device-mapper").
func miscMinor(procMisc []byte, name string) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(procMisc))
	for sc.Scan() {
		if n, ok := numberedEntry(strings.TrimSpace(sc.Text()), name); ok {
			return n, true
		}
	}
	return 0, false
}

// numberedEntry parses "<number> <name>", the number a device number
// (0-4095 for a major, 0-255 for these minors: bounded to what mknod
// accepts either way).
func numberedEntry(line, name string) (int, bool) {
	num, rest, ok := strings.Cut(line, " ")
	if !ok || strings.TrimSpace(rest) != name {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > 4095 {
		return 0, false
	}
	return n, true
}

package lxd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/canonical/lxd/shared/revert"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

const (
	// stopGrace bounds Stop's forced stop (LXD kills the container's init
	// and waits for it).
	stopGrace = 10 * time.Second
	// killTimeout bounds KillProcesses' exec inside the container.
	killTimeout = 30 * time.Second
	// drainTimeout bounds the wait for an exec's output after the process
	// is gone when the caller gave up (context cancelled).
	drainTimeout = 5 * time.Second
)

// Container is one build's LXD container, the target.Target of the "lxd"
// backend. It is named <prefix>-<series>-<arch>, so one build runs per Host
// at a time, as with the reference.
type Container struct {
	h          *Host
	spec       target.Spec
	opts       target.Options
	name       string
	privileged bool
	gpu        *gpuPlan // gpu-nvidia's devices (gpu.go); nil without it
}

var _ target.Target = (*Container)(nil)

func (h *Host) newContainer(spec target.Spec, opts target.Options) (*Container, error) {
	if !namePart.MatchString(spec.Series) {
		return nil, fmt.Errorf("cannot make an LXD target: invalid series %q", spec.Series)
	}
	if _, ok := lxcArch[spec.Arch]; !ok {
		return nil, fmt.Errorf("cannot make an LXD target: unknown architecture %q", spec.Arch)
	}
	if spec.BuildID == "" || strings.ContainsAny(spec.BuildID, "/\x00") || spec.BuildID == "." || spec.BuildID == ".." {
		return nil, fmt.Errorf("cannot make an LXD target: invalid build id %q", spec.BuildID)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = h.cfg.ReadyTimeout
	}
	return &Container{
		h:          h,
		spec:       spec,
		opts:       opts,
		name:       h.aliasName(spec.Series, spec.Arch),
		privileged: h.cfg.Privileged || spec.Privileged,
	}, nil
}

// Name is the LXD container's name.
func (c *Container) Name() string { return c.name }

// ProxyHost is the bridge address.
func (c *Container) ProxyHost() string { return c.h.net.host.String() }

func (c *Container) buildDir() string {
	if c.h.cfg.BuildHome == "" {
		return ""
	}
	return filepath.Join(c.h.cfg.BuildHome, "build-"+c.spec.BuildID)
}

// rawLXC is the container's raw.lxc: its static address set from the host
// side (no DHCP client needed inside) and the host's short name as its
// hostname (LXD would use the container's name). A privileged container also
// gets the reference's profile (privileged.go).
func rawLXC(n network, hostname string, privileged bool) string {
	lines := []string{
		fmt.Sprintf("lxc.net.0.ipv4.address=%s/%d", n.container, n.prefix.Bits()),
		fmt.Sprintf("lxc.net.0.ipv4.gateway=%s", n.host),
		"lxc.uts.name=" + hostname,
	}
	if privileged {
		lines = append(lines, privilegedLines(appArmorAvailable())...)
	}
	return strings.Join(lines, "\n") + "\n"
}

func (c *Container) config(id hostIdentity) map[string]string {
	return map[string]string{
		labelInstance:         c.h.cfg.Instance,
		labelBuildID:          c.spec.BuildID,
		"security.privileged": strconv.FormatBool(c.privileged),
		"security.nesting":    "true",
		"raw.lxc":             rawLXC(c.h.net, id.hostname, c.privileged),
	}
}

// Create imports (or finds in the cache) the image, makes the container
// from it and writes the host's identity into it while it is stopped. On
// failure nothing of it is left.
func (c *Container) Create(ctx context.Context, img target.Image) error {
	if err := c.h.ensure(ctx); err != nil {
		return err
	}
	gpu, err := c.planGPU(ctx)
	if err != nil {
		return err
	}
	c.gpu = gpu
	rev := revert.New()
	defer rev.Fail()
	if d := c.buildDir(); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cannot create build directory: %w", err)
		}
		rev.Add(func() { _ = os.RemoveAll(d) })
	}
	t0 := time.Now()
	fp, baked, err := c.h.ensureImageIdentity(ctx, img, c.spec.Series, c.spec.Arch, c.opts.Log)
	if err != nil {
		return err
	}
	t1 := time.Now()
	id, err := readHostIdentity(ctx, "/etc")
	if err != nil {
		return err
	}
	// A container of the same name is a leftover of ours (an earlier build
	// of this Instance) or someone else's, which is never touched.
	if inst, _, err := c.h.srv.GetInstance(c.name); err == nil {
		if inst.Config[labelInstance] != c.h.cfg.Instance {
			return fmt.Errorf("cannot create container %q: a container of that name exists and was not made by this agent", c.name)
		}
		logf(c.opts.Log, "Removing leftover container %s (build %s)", c.name, inst.Config[labelBuildID])
		if err := c.h.deleteContainer(ctx, c.name); err != nil {
			return err
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("cannot get container %q: %w", c.name, err)
	}
	op, err := c.h.srv.CreateInstance(api.InstancesPost{
		Name: c.name,
		Type: api.InstanceTypeContainer,
		Source: api.InstanceSource{
			Type:        "image",
			Fingerprint: fp,
		},
		InstancePut: api.InstancePut{
			Profiles:    []string{c.h.cfg.Profile},
			Config:      c.config(id),
			Devices:     c.gpu.lxdDevices(),
			Description: "buildd-agent build " + c.spec.BuildID,
		},
	})
	if err := waitOp(ctx, op, err); err != nil {
		return fmt.Errorf("cannot create container %q: %w", c.name, err)
	}
	rev.Add(func() { _ = c.h.deleteContainer(context.Background(), c.name) })
	t2 := time.Now()
	// An image converted on this host carries its identity already
	// (image_identity.go); file calls now would slow the first start.
	if baked != id.digest() {
		if err := c.writeIdentity(id); err != nil {
			return err
		}
	}
	c.h.log.Debug("container created", "container", c.name, "image", t1.Sub(t0), "create", t2.Sub(t1), "identity", time.Since(t2))
	rev.Success()
	return nil
}

// writeIdentity writes, through LXD's file API while the container is
// stopped, what makes it look like the host and keeps services from
// starting: hostname, hosts, resolv.conf, policy-rc.d and the snapd settings.
// The files are independent, so they are written concurrently: each file
// call on a stopped container costs LXD a mount and a helper process.
func (c *Container) writeIdentity(id hostIdentity) error {
	type file struct {
		path string
		data func() ([]byte, error)
		mode fs.FileMode
		then func() error
	}
	static := func(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }
	files := []file{
		{"/etc/hosts", func() ([]byte, error) {
			hosts, err := c.readFile("/etc/hosts")
			if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, target.ErrSymlink) {
				return nil, err
			}
			return containerHosts(hosts, id.hostname, id.fqdn), nil
		}, 0o644, nil},
		{"/etc/hostname", static([]byte(id.hostname + "\n")), 0o644, nil},
		{"/etc/resolv.conf", static(id.resolvConf), id.resolvMode, nil},
		{policyRCPath, static([]byte(policyRC)), 0o755, nil},
		// Masked after the drop-in (which creates /etc/systemd/system):
		// snapd must not refresh snaps in the middle of a build.
		{snapdNoCDNPath, static([]byte(snapdNoCDN)), 0o644, func() error {
			if err := c.replaceEntry(snapdRefreshTmr); err != nil {
				return err
			}
			err := c.h.srv.CreateInstanceFile(c.name, snapdRefreshTmr, lxdclient.InstanceFileArgs{
				Content: strings.NewReader("/dev/null"), Type: "symlink", UID: 0, GID: 0, Mode: 0o777,
			})
			if err != nil {
				return fmt.Errorf("cannot mask %s in container %q: %w", snapdRefreshTmr, c.name, err)
			}
			return nil
		}},
	}
	// Parent directories first, each once (a stopped container's file
	// calls are not cheap), then the files.
	dirs := map[string]bool{}
	for _, f := range files {
		dirs[path.Dir(f.path)] = true
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	if err := parallel(len(dirList), func(i int) error { return c.mkdirAll(dirList[i]) }); err != nil {
		return err
	}
	return parallel(len(files), func(i int) error {
		f := files[i]
		data, err := f.data()
		if err != nil {
			return err
		}
		if err := c.push(f.path, bytes.NewReader(data), 0, 0, f.mode); err != nil {
			return err
		}
		if f.then != nil {
			return f.then()
		}
		return nil
	})
}

// parallel runs fn(0..n-1) concurrently and joins their errors.
func parallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Start boots the container and waits until it is ready: Running, and, if
// the image has systemd, until `systemctl is-system-running` says running or
// degraded. The wait is bounded by the ready timeout; why it failed goes to
// the build log.
func (c *Container) Start(ctx context.Context) error {
	op, err := c.h.srv.UpdateInstanceState(c.name, api.InstanceStatePut{Action: "start", Timeout: -1}, "")
	if err := waitOp(ctx, op, err); err != nil {
		logf(c.opts.Log, "Container %s failed to start: %v", c.name, err)
		return fmt.Errorf("cannot start container %q: %w", c.name, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	if err := c.waitReady(rctx); err != nil {
		if ctx.Err() == nil && rctx.Err() != nil {
			err = fmt.Errorf("container %q was not ready within %s: %w", c.name, c.opts.ReadyTimeout, err)
		}
		logf(c.opts.Log, "%v", err)
		return err
	}
	if err := c.startedHooks(ctx); err != nil {
		logf(c.opts.Log, "%v", err)
		return err
	}
	if err := c.startGPU(ctx); err != nil {
		logf(c.opts.Log, "%v", err)
		return err
	}
	return nil
}

func (c *Container) waitReady(ctx context.Context) error {
	var last string
	for {
		inst, _, err := c.h.srv.GetInstance(c.name)
		if err != nil {
			return fmt.Errorf("cannot get container %q: %w", c.name, err)
		}
		if inst.StatusCode == api.Running {
			break
		}
		if inst.StatusCode == api.Stopped || inst.StatusCode == api.Error {
			// Started and gone again: its init exited or failed.
			return fmt.Errorf("container %q stopped while booting (status %s); see %s", c.name, inst.Status, "lxc info --show-log "+c.name)
		}
		last = "status " + inst.Status
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("%s (%w)", last, err)
		}
	}
	// --wait makes one exec cover the boot on systemd >= 240; older ones
	// answer at once and are polled.
	script := `case "$(readlink -f /sbin/init)" in *systemd*) ;; *) exit 100 ;; esac
state=$(systemctl is-system-running --wait 2>/dev/null)
case "$state" in
running|degraded|starting|initializing|maintenance|stopping) ;;
*) state=$(systemctl is-system-running 2>&1) ;;
esac
echo "$state"`
	for {
		var out bytes.Buffer
		code, err := c.run(ctx, target.Command{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out}, runOpts{})
		if err != nil {
			return fmt.Errorf("cannot check whether container %q is ready: %w", c.name, err)
		}
		state := strings.TrimSpace(out.String())
		switch {
		case code == 100:
			return nil // no systemd: Running is ready
		case state == "running" || state == "degraded":
			return nil
		}
		last = "systemd is " + strconv.Quote(state)
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("%s (%w)", last, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// KillProcesses kills every process in the container but its init (the
// reference does nothing here): `kill -9 -1` from inside, three passes to
// catch processes forked meanwhile, bounded; if that cannot run, the
// container is force-stopped.
func (c *Container) KillProcesses(ctx context.Context) error {
	inst, _, err := c.h.srv.GetInstance(c.name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot get container %q: %w", c.name, err)
	}
	if inst.StatusCode != api.Running {
		return nil
	}
	kctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	_, err = c.run(kctx, target.Command{
		Args:   []string{"sh", "-c", "for i in 1 2 3; do kill -9 -1 2>/dev/null; done; exit 0"},
		Stdout: io.Discard, Stderr: io.Discard,
	}, runOpts{})
	if err == nil {
		return nil
	}
	c.h.log.Warn("cannot kill processes from inside, force-stopping", "container", c.name, "err", err)
	op, serr := c.h.srv.UpdateInstanceState(c.name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
	if serr = waitOp(ctx, op, serr); serr != nil {
		return fmt.Errorf("cannot kill processes in container %q: %w", c.name, errors.Join(err, serr))
	}
	return nil
}

// Stop stops the container by force. A build container is disposable: its
// results have been copied out before Stop, and Remove follows, so a clean
// shutdown (systemd stopping every unit, up to stopGrace) would only add
// seconds to every build. With Spec.FastCleanup the manager does not call
// it; if it does, the container is left as it is.
func (c *Container) Stop(ctx context.Context) error {
	if c.spec.FastCleanup {
		logf(c.opts.Log, "fast_cleanup: leaving the container")
		return nil
	}
	inst, _, err := c.h.srv.GetInstance(c.name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot get container %q: %w", c.name, err)
	}
	if inst.StatusCode == api.Stopped {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, stopGrace+5*time.Second)
	defer cancel()
	op, err := c.h.srv.UpdateInstanceState(c.name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
	if err := waitOp(sctx, op, err); err != nil && !isNotFound(err) {
		return fmt.Errorf("cannot stop container %q: %w", c.name, err)
	}
	return nil
}

// Remove deletes the container (the cached image stays) and the build
// directory. With Spec.FastCleanup the manager does not call it; if it
// does, the container is left.
func (c *Container) Remove(ctx context.Context) error {
	if c.spec.FastCleanup {
		logf(c.opts.Log, "fast_cleanup: leaving the container")
		return nil
	}
	var errs []error
	inst, _, err := c.h.srv.GetInstance(c.name)
	switch {
	case isNotFound(err):
	case err != nil:
		errs = append(errs, fmt.Errorf("cannot get container %q: %w", c.name, err))
	case inst.Config[labelInstance] != c.h.cfg.Instance:
		errs = append(errs, fmt.Errorf("cannot delete container %q: it was not made by this agent", c.name))
	default:
		errs = append(errs, c.h.deleteContainer(ctx, c.name))
	}
	if d := c.buildDir(); d != "" {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("cannot remove build directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

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
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/canonical/lxd/shared/revert"
	"github.com/gorilla/websocket"

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

// fileType asks LXD what is at p: "file", "directory", "symlink" or "" when
// nothing is there.
func (c *Container) fileType(p string) (string, error) {
	rc, resp, err := c.h.srv.GetInstanceFile(c.name, p)
	if isNotFound(err) || (err != nil && strings.Contains(err.Error(), "no such file")) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot inspect %q in container %q: %w", p, c.name, err)
	}
	if rc != nil {
		rc.Close()
	}
	return resp.Type, nil
}

// readFile reads a regular file; a symlink is refused.
func (c *Container) readFile(p string) ([]byte, error) {
	var b bytes.Buffer
	if err := c.copyOut(p, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mkdirAll creates p and its missing parents (root-owned, 0755).
func (c *Container) mkdirAll(p string) error {
	if p == "/" || p == "." {
		return nil
	}
	t, err := c.fileType(p)
	if err != nil {
		return err
	}
	switch t {
	case "directory":
		return nil
	case "":
	default:
		return fmt.Errorf("cannot create directory %q in container %q: a %s is in the way", p, c.name, t)
	}
	if err := c.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	err = c.h.srv.CreateInstanceFile(c.name, p, lxdclient.InstanceFileArgs{Type: "directory", UID: 0, GID: 0, Mode: 0o755})
	if err != nil && !isConflict(err) {
		return fmt.Errorf("cannot create directory %q in container %q: %w", p, c.name, err)
	}
	return nil
}

// replaceEntry removes a symlink or file at p, so that writing p never
// writes through a link the image put there.
func (c *Container) replaceEntry(p string) error {
	t, err := c.fileType(p)
	if err != nil {
		return err
	}
	switch t {
	case "":
		return nil
	case "directory":
		return fmt.Errorf("cannot replace %q in container %q: it is a directory", p, c.name)
	}
	if err := c.h.srv.DeleteInstanceFile(c.name, p); err != nil && !isNotFound(err) {
		return fmt.Errorf("cannot replace %q in container %q: %w", p, c.name, err)
	}
	return nil
}

// unixMode converts a Go file mode's permission and special bits to the
// numeric mode LXD's file API takes.
func unixMode(m fs.FileMode) int {
	u := int(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// readSeeker adapts a plain reader to the client's ReadSeeker field: the
// client only reads the body, never seeks.
type readSeeker struct{ io.Reader }

func (readSeeker) Seek(int64, int) (int64, error) {
	return 0, errors.New("cannot seek a streamed file")
}

func (c *Container) push(p string, r io.Reader, uid, gid int, mode fs.FileMode) error {
	if err := c.replaceEntry(p); err != nil {
		return err
	}
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		rs = readSeeker{r}
	}
	err := c.h.srv.CreateInstanceFile(c.name, p, lxdclient.InstanceFileArgs{
		Content:   rs,
		UID:       int64(uid),
		GID:       int64(gid),
		Mode:      unixMode(mode),
		Type:      "file",
		WriteMode: "overwrite",
	})
	if err != nil {
		return fmt.Errorf("cannot push %q into container %q: %w", p, c.name, err)
	}
	return nil
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

// Run runs a command as root in the container under the architecture's
// personality, with its output streamed line by line and complete when Run
// returns.
func (c *Container) Run(ctx context.Context, cmd target.Command) (int, error) {
	return c.run(ctx, cmd, runOpts{personality: true})
}

// runOpts are the agent's own exec settings, beyond target.Command.
type runOpts struct {
	personality bool   // prefix linux32/linux64
	uid, gid    uint32 // run as this user (0: root)
}

func (c *Container) run(ctx context.Context, cmd target.Command, o runOpts) (int, error) {
	if len(cmd.Args) == 0 {
		return -1, errors.New("cannot run an empty command")
	}
	env := map[string]string{}
	for _, kv := range cmd.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return -1, fmt.Errorf("cannot run %q: invalid environment entry %q", cmd.Args[0], kv)
		}
		env[k] = v
	}
	argv := cmd.Args
	if o.personality {
		argv = append([]string{personality(c.spec.Arch)}, cmd.Args...)
	}
	stdout, stderr, flush := c.outputs(cmd)
	stdin := cmd.Stdin
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	dataDone := make(chan bool)
	var ctrlMu sync.Mutex
	var ctrl *websocket.Conn
	op, err := c.h.srv.ExecInstance(c.name, api.InstanceExecPost{
		Command:     argv,
		Environment: env,
		WaitForWS:   true,
		Cwd:         cmd.Dir,
		User:        o.uid,
		Group:       o.gid,
	}, &lxdclient.InstanceExecArgs{
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Control: func(conn *websocket.Conn) {
			ctrlMu.Lock()
			ctrl = conn
			ctrlMu.Unlock()
		},
		DataDone: dataDone,
	})
	if err != nil {
		flush()
		return -1, fmt.Errorf("cannot run %q in container %q: %w", cmd.Args[0], c.name, err)
	}
	if err := op.WaitContext(ctx); err != nil {
		if ctx.Err() != nil {
			// Given up: kill the process and take what output there is.
			ctrlMu.Lock()
			if ctrl != nil {
				_ = ctrl.WriteJSON(api.InstanceExecControl{Command: "signal", Signal: 9})
			}
			ctrlMu.Unlock()
			select {
			case <-dataDone:
			case <-time.After(drainTimeout):
			}
			flush()
			return -1, fmt.Errorf("cannot run %q in container %q: %w", cmd.Args[0], c.name, ctx.Err())
		}
		<-dataDone
		flush()
		// LXD turns the statuses 126 and 127 into errors; they are exit
		// statuses like any other (a shell says them too).
		switch {
		case strings.Contains(err.Error(), "Command not found"):
			return 127, nil
		case strings.Contains(err.Error(), "Command not executable"):
			return 126, nil
		}
		return -1, fmt.Errorf("cannot run %q in container %q: %w", cmd.Args[0], c.name, err)
	}
	// The exit status is known, but the output may still be in flight:
	// wait for the data websockets to drain (lxc/exec.go does the same).
	<-dataDone
	flush()
	ret, ok := op.Get().Metadata["return"].(float64)
	if !ok {
		return -1, fmt.Errorf("cannot run %q in container %q: LXD returned no exit status", cmd.Args[0], c.name)
	}
	return int(ret), nil
}

// outputs picks the writers for a command's output. Output for the build log
// (or one writer shared by stdout and stderr) is written in whole lines
// under one lock, so the two streams never interleave within a line.
func (c *Container) outputs(cmd target.Command) (io.Writer, io.Writer, func()) {
	out, errw := cmd.Stdout, cmd.Stderr
	if out == nil {
		out = c.opts.Log
	}
	if errw == nil {
		errw = c.opts.Log
	}
	if out == nil {
		out = io.Discard
	}
	if errw == nil {
		errw = io.Discard
	}
	if out != errw {
		return out, errw, func() {}
	}
	mu := &sync.Mutex{}
	lo, le := &lineWriter{mu: mu, w: out}, &lineWriter{mu: mu, w: errw}
	return lo, le, func() { lo.flush(); le.flush() }
}

// lineWriter forwards whole lines to w under mu; a partial line waits for
// its end (or for flush), up to maxLine bytes.
type lineWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

const maxLine = 64 << 10

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	i := bytes.LastIndexByte(l.buf, '\n')
	if i < 0 && len(l.buf) < maxLine {
		return len(p), nil
	}
	n := i + 1
	if i < 0 {
		n = len(l.buf)
	}
	l.mu.Lock()
	_, err := l.w.Write(l.buf[:n])
	l.mu.Unlock()
	l.buf = append(l.buf[:0], l.buf[n:]...)
	if err != nil && l.err == nil {
		l.err = err
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	if len(l.buf) == 0 {
		return
	}
	l.mu.Lock()
	_, _ = l.w.Write(l.buf)
	l.mu.Unlock()
	l.buf = nil
}

func checkPath(p string) error {
	if !path.IsAbs(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("invalid path %q: not absolute", p)
	}
	return nil
}

// CopyIn writes r to p in the container with the given owner and mode,
// replacing what is there (a symlink is replaced, never written through).
func (c *Container) CopyIn(ctx context.Context, r io.Reader, p string, uid, gid int, mode fs.FileMode) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return c.push(path.Clean(p), r, uid, gid, mode)
}

// CopyOut streams the regular file at p out of the container; a symlink is
// refused (target.ErrSymlink).
func (c *Container) CopyOut(ctx context.Context, p string, w io.Writer) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return c.copyOut(path.Clean(p), w)
}

func (c *Container) copyOut(p string, w io.Writer) error {
	rc, resp, err := c.h.srv.GetInstanceFile(c.name, p)
	if isNotFound(err) || (err != nil && strings.Contains(err.Error(), "no such file")) {
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, target.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, err)
	}
	defer rc.Close()
	switch resp.Type {
	case "file":
	case "symlink":
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, target.ErrSymlink)
	default:
		return fmt.Errorf("cannot pull %q from container %q: it is a %s", p, c.name, resp.Type)
	}
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, err)
	}
	return nil
}

// Stat lstats p in the container.
func (c *Container) Stat(ctx context.Context, p string) (target.FileInfo, error) {
	if err := checkPath(p); err != nil {
		return target.FileInfo{}, err
	}
	p = path.Clean(p)
	out, err := c.find(ctx, p, `[ -e "$1" ] || [ -L "$1" ] || exit 3
exec find "$1" -maxdepth 0 -printf '%y %m %s %f\0'`)
	if err != nil {
		return target.FileInfo{}, err
	}
	infos, err := parseFindOutput(out)
	if err != nil || len(infos) != 1 {
		return target.FileInfo{}, fmt.Errorf("cannot stat %q in container %q: unexpected answer %q", p, c.name, out)
	}
	infos[0].Name = path.Base(p)
	return infos[0], nil
}

// ListDir lists a directory in the container, sorted by name, without
// following symlinks (a symlink to a directory is refused).
func (c *Container) ListDir(ctx context.Context, p string) ([]target.FileInfo, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	p = path.Clean(p)
	out, err := c.find(ctx, p, `[ -e "$1" ] || [ -L "$1" ] || exit 3
[ -L "$1" ] && exit 4
[ -d "$1" ] || exit 5
exec find "$1" -mindepth 1 -maxdepth 1 -printf '%y %m %s %f\0'`)
	if err != nil {
		return nil, err
	}
	infos, err := parseFindOutput(out)
	if err != nil {
		return nil, fmt.Errorf("cannot list %q in container %q: %w", p, c.name, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos, nil
}

func (c *Container) find(ctx context.Context, p, script string) ([]byte, error) {
	var out, errb bytes.Buffer
	code, err := c.run(ctx, target.Command{Args: []string{"sh", "-c", script, "sh", p}, Stdout: &out, Stderr: &errb}, runOpts{})
	if err != nil {
		return nil, err
	}
	switch code {
	case 0:
		return out.Bytes(), nil
	case 3:
		return nil, fmt.Errorf("cannot inspect %q in container %q: %w", p, c.name, target.ErrNotExist)
	case 4:
		return nil, fmt.Errorf("cannot list %q in container %q: %w", p, c.name, target.ErrSymlink)
	case 5:
		return nil, fmt.Errorf("cannot list %q in container %q: not a directory", p, c.name)
	}
	return nil, fmt.Errorf("cannot inspect %q in container %q: find exited %d: %s", p, c.name, code, strings.TrimSpace(errb.String()))
}

// parseFindOutput parses NUL-terminated `find -printf '%y %m %s %f\0'`
// records.
func parseFindOutput(out []byte) ([]target.FileInfo, error) {
	var infos []target.FileInfo
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			return nil, errors.New("truncated find output")
		}
		rec := string(out[:i])
		out = out[i+1:]
		typ, rest, ok1 := strings.Cut(rec, " ")
		perm, rest, ok2 := strings.Cut(rest, " ")
		size, name, ok3 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || !ok3 || len(typ) != 1 || name == "" {
			return nil, fmt.Errorf("invalid find record %q", rec)
		}
		m, err := strconv.ParseUint(perm, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, fmt.Errorf("invalid mode in find record %q", rec)
		}
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid size in find record %q", rec)
		}
		mode := fs.FileMode(m & 0o777)
		if m&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if m&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
		if m&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch typ[0] {
		case 'f':
		case 'd':
			mode |= fs.ModeDir
		case 'l':
			mode |= fs.ModeSymlink
		case 'b':
			mode |= fs.ModeDevice
		case 'c':
			mode |= fs.ModeDevice | fs.ModeCharDevice
		case 'p':
			mode |= fs.ModeNamedPipe
		case 's':
			mode |= fs.ModeSocket
		default:
			return nil, fmt.Errorf("invalid type in find record %q", rec)
		}
		infos = append(infos, target.FileInfo{Name: name, Mode: mode, Size: n})
	}
	return infos, nil
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

package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"golang.org/x/sys/unix"
)

// ChrootConfig configures the chroot target.
type ChrootConfig struct {
	// BuildHome holds one build-<id> directory per build (the chroot
	// under "chroot", the bind-mounted /build under "build").
	BuildHome string
	// IDMapUser names the user whose subordinate ids (/etc/subuid,
	// /etc/subgid) the target's user namespace is mapped to ("root").
	IDMapUser string
	Logger    *slog.Logger
	// SubUIDFile and SubGIDFile default to /etc/subuid and /etc/subgid.
	SubUIDFile, SubGIDFile string
}

// DefaultSubIDStart and DefaultSubIDCount are the range given to
// IDMapUser when it has none.
const (
	DefaultSubIDStart = 1000000
	DefaultSubIDCount = 65536
)

// stopTimeout bounds Stop's wait for the namespace's processes to die.
const stopTimeout = 2 * time.Minute

// ProxyHost of a chroot: the loopback of its own network namespace, where
// Listen puts the builder proxy.
const chrootProxyHost = "127.0.0.1"

// NewChrootFactory returns the factory of chroot targets: a chroot
// tarball unpacked with shifted ids and run in user, mount, pid, uts and
// ipc namespaces (see nsinit_linux.go for the design).
func NewChrootFactory(cfg ChrootConfig) target.Factory {
	if cfg.IDMapUser == "" {
		cfg.IDMapUser = "root"
	}
	if cfg.SubUIDFile == "" {
		cfg.SubUIDFile = "/etc/subuid"
	}
	if cfg.SubGIDFile == "" {
		cfg.SubGIDFile = "/etc/subgid"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return func(ctx context.Context, spec target.Spec, opts target.Options) (target.Target, error) {
		if spec.BuildID == "" || strings.ContainsAny(spec.BuildID, "/\x00") || spec.BuildID == "." || spec.BuildID == ".." {
			return nil, fmt.Errorf("cannot make a chroot target: invalid build id %q", spec.BuildID)
		}
		ids, err := SubordinateIDs(cfg.IDMapUser, cfg.SubUIDFile, cfg.SubGIDFile)
		if err != nil {
			return nil, fmt.Errorf("cannot make a chroot target: %w", err)
		}
		if opts.Log == nil {
			opts.Log = io.Discard
		}
		if opts.ReadyTimeout == 0 {
			opts.ReadyTimeout = time.Minute
		}
		dir := filepath.Join(cfg.BuildHome, "build-"+spec.BuildID)
		return &chrootTarget{
			cfg: cfg, spec: spec, opts: opts, ids: ids,
			dir: dir, chroot: filepath.Join(dir, "chroot"), buildDir: filepath.Join(dir, "build"),
		}, nil
	}
}

// SubordinateIDs reads user's ranges from the subuid and subgid files. If
// the user has none in a file, one range of DefaultSubIDCount ids from
// DefaultSubIDStart (or past every range listed) is added to it.
func SubordinateIDs(user, subuid, subgid string) (IDMapping, error) {
	uids, err := subIDs(user, subuid)
	if err != nil {
		return IDMapping{}, err
	}
	gids, err := subIDs(user, subgid)
	if err != nil {
		return IDMapping{}, err
	}
	return IDMapping{UIDs: uids, GIDs: gids}, nil
}

func subIDs(user, file string) ([]IDMap, error) {
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot read %s: %w", file, err)
	}
	m, err := ParseSubID(bytes.NewReader(data), user)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", file, err)
	}
	if len(m) > 0 {
		return m, nil
	}
	// Place the new range past every range of every user.
	start := uint64(DefaultSubIDStart)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 {
			continue
		}
		var s, c uint64
		if _, err := fmt.Sscan(f[1], &s); err != nil {
			continue
		}
		if _, err := fmt.Sscan(f[2], &c); err != nil {
			continue
		}
		if s+c > start && s < start+DefaultSubIDCount {
			start = (s + c + DefaultSubIDCount - 1) / DefaultSubIDCount * DefaultSubIDCount
		}
	}
	if start+DefaultSubIDCount > 1<<32-1 {
		return nil, fmt.Errorf("cannot add subordinate ids for %q to %s: no free range", user, file)
	}
	line := fmt.Sprintf("%s:%d:%d\n", user, start, DefaultSubIDCount)
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		line = "\n" + line
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot add subordinate ids for %q to %s: %w", user, file, err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot add subordinate ids for %q to %s: %w", user, file, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return []IDMap{{NSID: 0, HostID: uint32(start), Size: DefaultSubIDCount}}, nil
}

type chrootTarget struct {
	cfg      ChrootConfig
	spec     target.Spec
	opts     target.Options
	ids      IDMapping
	dir      string
	chroot   string
	buildDir string

	mu     sync.Mutex // guards helper state and the control socket
	helper *exec.Cmd
	ctrl   int
	done   chan struct{} // closed when the helper has been reaped
	// listeners were opened in the target's network namespace (Listen);
	// Stop closes them, so that no socket keeps the namespace alive.
	listeners []net.Listener
}

var _ target.Target = (*chrootTarget)(nil)

func (t *chrootTarget) rootIDs() (int, int) {
	u, _ := t.ids.UID(0)
	g, _ := t.ids.GID(0)
	return int(u), int(g)
}

// Create unpacks the chroot tarball into <BuildHome>/build-<id>/chroot.
func (t *chrootTarget) Create(ctx context.Context, img target.Image) error {
	if img.Type != "" && img.Type != "chroot" {
		return fmt.Errorf("cannot create chroot %q: image type %q is not supported (want \"chroot\")", t.chroot, img.Type)
	}
	if err := os.MkdirAll(t.cfg.BuildHome, 0o755); err != nil {
		return fmt.Errorf("cannot create chroot %q: %w", t.chroot, err)
	}
	// The helper runs as the mapped root, which has no rights on host
	// files: the path to the chroot must be searchable by others.
	if err := os.Mkdir(t.dir, 0o755); err != nil {
		return fmt.Errorf("cannot create chroot %q: %w", t.chroot, err)
	}
	uid, gid := t.rootIDs()
	for _, d := range []string{t.chroot, t.buildDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("cannot create chroot %q: %w", t.chroot, err)
		}
		if err := os.Lchown(d, uid, gid); err != nil {
			return fmt.Errorf("cannot create chroot %q: %w", t.chroot, err)
		}
	}
	f, err := os.Open(img.Path)
	if err != nil {
		return fmt.Errorf("cannot create chroot %q: %w", t.chroot, err)
	}
	defer f.Close()
	start := time.Now()
	st, err := Unpack(ctx, f, t.chroot, UnpackOptions{IDs: t.ids, Privileged: t.spec.Privileged, Log: t.opts.Log})
	if err != nil {
		return fmt.Errorf("cannot create chroot %q: %w", t.chroot, err)
	}
	t.cfg.Logger.Info("unpacked chroot", "dir", t.chroot, "entries", st.Entries, "bytes", st.Bytes,
		"caps", st.Caps, "skipped_devices", st.SkippedDevices, "compression", st.Compression, "duration", time.Since(start))
	return nil
}

// Start writes the host's identity into the chroot and starts the
// namespace helper, waiting until it has made its mounts.
func (t *chrootTarget) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.helper != nil {
		return fmt.Errorf("cannot start chroot %q: already started", t.chroot)
	}
	hostname, fqdn := hostNames(ctx)
	if err := t.writeIdentity(hostname, fqdn); err != nil {
		return fmt.Errorf("cannot start chroot %q: %w", t.chroot, err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot start chroot %q: %w", t.chroot, err)
	}
	child := os.NewFile(uintptr(pair[1]), "ctrl")
	cfgJSON, _ := json.Marshal(nsInitConfig{Root: t.chroot, BuildDir: t.buildDir, Hostname: hostname})
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"buildd-agent-rootfs-init"}
	cmd.Env = []string{nsInitEnv + "=" + string(cfgJSON), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.ExtraFiles = []*os.File{child}
	cmd.Stderr = t.opts.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A network namespace of its own: see netns_linux.go.
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
		UidMappings:                toSysMap(t.ids.UIDs),
		GidMappings:                toSysMap(t.ids.GIDs),
		GidMappingsEnableSetgroups: true,
		// Become the namespace's root (host uid 0 is not mapped in it).
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
		// The namespace must not outlive the agent.
		Pdeathsig: syscall.SIGKILL,
	}
	// Pdeathsig fires when the forking *thread* exits, so the helper is
	// started and waited for on a thread of its own that lives exactly as
	// long as the helper (locked, it exits with the goroutine).
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			_ = cmd.Wait()
		}
		close(done)
	}()
	err = <-started
	child.Close()
	if err != nil {
		unix.Close(pair[0])
		return fmt.Errorf("cannot start chroot %q: %w", t.chroot, err)
	}
	t.helper, t.ctrl, t.done = cmd, pair[0], done
	rep, err := readReplyUntil(ctx, t.ctrl, t.opts.ReadyTimeout, t.done)
	if err == nil && rep.Error != "" {
		err = errors.New(rep.Error)
	}
	if err == nil && !rep.Ready {
		err = errors.New("helper did not say ready")
	}
	if err != nil {
		t.stopLocked()
		return fmt.Errorf("cannot start chroot %q: %w", t.chroot, err)
	}
	t.cfg.Logger.Info("chroot started", "dir", t.chroot, "helper_pid", cmd.Process.Pid)
	return nil
}

func toSysMap(m []IDMap) []syscall.SysProcIDMap {
	var out []syscall.SysProcIDMap
	for _, r := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(r.NSID), HostID: int(r.HostID), Size: int(r.Size)})
	}
	return out
}

// readReply reads one message from a SEQPACKET socket, bounded by ctx and
// timeout (0 = none).
func (t *chrootTarget) readReply(ctx context.Context, fd int, timeout time.Duration) (nsReply, error) {
	t.mu.Lock()
	helperDone := t.done
	t.mu.Unlock()
	return readReplyUntil(ctx, fd, timeout, helperDone)
}

// readReplyUntil is readReply that also gives up when helperDone closes.
func readReplyUntil(ctx context.Context, fd int, timeout time.Duration, helperDone <-chan struct{}) (nsReply, error) {
	type res struct {
		rep nsReply
		err error
	}
	ch := make(chan res, 1)
	dup, err := unix.Dup(fd)
	if err != nil {
		return nsReply{}, err
	}
	_ = unix.SetNonblock(dup, true)
	f := os.NewFile(uintptr(dup), "reply")
	defer f.Close()
	go func() {
		buf := make([]byte, 64<<10)
		n, err := f.Read(buf)
		if err != nil {
			ch <- res{err: fmt.Errorf("no answer from the namespace helper: %w", err)}
			return
		}
		var rep nsReply
		if err := json.Unmarshal(buf[:n], &rep); err != nil {
			ch <- res{err: fmt.Errorf("bad answer from the namespace helper: %w", err)}
			return
		}
		ch <- res{rep: rep}
	}()
	var tc <-chan time.Time
	if timeout > 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		tc = tm.C
	}
	select {
	case r := <-ch:
		return r.rep, r.err
	case <-ctx.Done():
		return nsReply{}, ctx.Err()
	case <-tc:
		return nsReply{}, fmt.Errorf("namespace helper not ready after %s", timeout)
	case <-helperDone:
		select {
		case r := <-ch:
			return r.rep, r.err
		case <-time.After(100 * time.Millisecond):
		}
		return nsReply{}, errors.New("namespace helper exited")
	}
}

// root opens the target's root as its processes see it: through the
// helper's /proc/PID/root while it runs (so the tmpfs and bind mounts it
// made are seen), else the unpacked directory.
func (t *chrootTarget) root() (*Root, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.helper != nil {
		p := fmt.Sprintf("/proc/%d/root", t.helper.Process.Pid)
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("cannot open the root of chroot %q: %w", t.chroot, err)
		}
		return &Root{fd: fd, path: t.chroot}, nil
	}
	return OpenRoot(t.chroot)
}

func (t *chrootTarget) mapOwner(uid, gid int) (int, int, error) {
	if uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("invalid owner %d:%d", uid, gid)
	}
	hu, ok := t.ids.UID(uint32(uid))
	if !ok {
		return 0, 0, fmt.Errorf("uid %d is not mapped", uid)
	}
	hg, ok := t.ids.GID(uint32(gid))
	if !ok {
		return 0, 0, fmt.Errorf("gid %d is not mapped", gid)
	}
	return int(hu), int(hg), nil
}

// defaultEnv is the environment every command starts from.
var defaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C",
}

func mergeEnv(base, extra []string) []string {
	idx := map[string]int{}
	var out []string
	for _, e := range append(append([]string{}, base...), extra...) {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}

func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// Run runs cmd inside the target through the helper.
func (t *chrootTarget) Run(ctx context.Context, cmd target.Command) (int, error) {
	if len(cmd.Args) == 0 {
		return -1, errors.New("cannot run an empty command")
	}
	stdout, stderr := cmd.Stdout, cmd.Stderr
	if stdout == nil {
		stdout = t.opts.Log
	}
	if stderr == nil {
		stderr = t.opts.Log
	}
	var closeLater []*os.File
	defer func() {
		for _, f := range closeLater {
			f.Close()
		}
	}()
	var stdin *os.File
	if cmd.Stdin == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return -1, err
		}
		stdin = f
		closeLater = append(closeLater, f)
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		stdin = r
		closeLater = append(closeLater, r)
		go func() { _, _ = io.Copy(w, cmd.Stdin); w.Close() }()
	}
	var copiers sync.WaitGroup
	pipeTo := func(w io.Writer) (*os.File, *os.File, error) {
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		copiers.Add(1)
		go func() { defer copiers.Done(); _, _ = io.Copy(w, r); r.Close() }()
		return r, pw, nil
	}
	outR, outW, err := pipeTo(stdout)
	if err != nil {
		return -1, err
	}
	errW := outW
	errR := outR
	if !sameWriter(stdout, stderr) {
		if errR, errW, err = pipeTo(stderr); err != nil {
			outW.Close()
			return -1, err
		}
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		outW.Close()
		errW.Close()
		return -1, err
	}
	req, _ := json.Marshal(nsRequest{Op: "run", Args: cmd.Args, Env: mergeEnv(defaultEnv, cmd.Env), Dir: cmd.Dir})
	err = t.send(req, pair[1], int(stdin.Fd()), int(outW.Fd()), int(errW.Fd()))
	unix.Close(pair[1])
	// The command holds the write ends now; ours must go for EOF.
	outW.Close()
	if errW != outW {
		errW.Close()
	}
	if err != nil {
		unix.Close(pair[0])
		copiers.Wait()
		return -1, fmt.Errorf("cannot run %q in chroot %q: %w", cmd.Args[0], t.chroot, err)
	}
	rep, err := t.readReply(ctx, pair[0], 0)
	// Closing our end tells the helper to kill the command if it still runs.
	unix.Close(pair[0])
	if err != nil {
		// Output stops once the process group is dead; bound the wait
		// anyway (a daemon may have escaped the group).
		waitBounded(&copiers, 10*time.Second, outR, errR)
		return -1, fmt.Errorf("cannot run %q in chroot %q: %w", cmd.Args[0], t.chroot, err)
	}
	copiers.Wait()
	if rep.Error != "" {
		return -1, fmt.Errorf("cannot run %q in chroot %q: %s", cmd.Args[0], t.chroot, rep.Error)
	}
	return rep.Status, nil
}

func waitBounded(wg *sync.WaitGroup, d time.Duration, files ...*os.File) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		for _, f := range files {
			f.Close()
		}
		<-done
	}
}

func (t *chrootTarget) send(msg []byte, fds ...int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.helper == nil {
		return errors.New("the chroot is not started")
	}
	return unix.Sendmsg(t.ctrl, msg, unix.UnixRights(fds...), nil, 0)
}

// KillProcesses kills every process in the target but the helper; if the
// helper does not answer, it is killed too (and with it everything).
func (t *chrootTarget) KillProcesses(ctx context.Context) error {
	t.mu.Lock()
	running := t.helper != nil
	t.mu.Unlock()
	if !running {
		return nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pair[0])
	req, _ := json.Marshal(nsRequest{Op: "kill"})
	err = t.send(req, pair[1])
	unix.Close(pair[1])
	if err == nil {
		var rep nsReply
		rep, err = t.readReply(ctx, pair[0], 15*time.Second)
		if err == nil && rep.Error != "" {
			err = errors.New(rep.Error)
		}
	}
	if err != nil {
		t.cfg.Logger.Warn("namespace helper could not kill processes; killing the namespace", "dir", t.chroot, "err", err)
		t.mu.Lock()
		t.stopLocked()
		t.mu.Unlock()
	}
	return nil
}

// Stop kills the namespace's init: the kernel kills every process in the
// pid namespace, and the mount namespace and its mounts go with the last.
func (t *chrootTarget) Stop(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopLocked()
}

func (t *chrootTarget) stopLocked() error {
	for _, ln := range t.listeners {
		ln.Close()
	}
	t.listeners = nil
	if t.helper == nil {
		return nil
	}
	pid := t.helper.Process.Pid
	_ = t.helper.Process.Kill()
	// The helper is reaped only after every process of its pid namespace;
	// a process stuck in the kernel (D state) could hold that up forever.
	select {
	case <-t.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("cannot stop chroot %q: processes of namespace helper %d did not exit within %s", t.chroot, pid, stopTimeout)
	}
	unix.Close(t.ctrl)
	t.helper, t.ctrl = nil, -1
	if n := mountsUnder(t.chroot); n > 0 {
		return fmt.Errorf("cannot stop chroot %q: %d mounts remain", t.chroot, n)
	}
	t.cfg.Logger.Info("chroot stopped", "dir", t.chroot, "helper_pid", pid)
	return nil
}

// mountsUnder counts the mounts of this mount namespace at or under dir.
func mountsUnder(dir string) int {
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			n++
		}
	}
	return n
}

// Remove stops the target if needed and deletes its build directory.
func (t *chrootTarget) Remove(ctx context.Context) error {
	if err := t.Stop(ctx); err != nil {
		return err
	}
	if err := os.RemoveAll(t.dir); err != nil {
		return fmt.Errorf("cannot remove chroot %q: %w", t.dir, err)
	}
	return nil
}

func (t *chrootTarget) ProxyHost() string { return chrootProxyHost }

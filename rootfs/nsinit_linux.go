package rootfs

// The chroot target's namespace init.
//
// Design: Start re-executes the agent's own binary (/proc/self/exe) with
// nsInitEnv set, in new user, mount, pid, uts, ipc and network namespaces (Go's
// clone flags and uid/gid maps; as root we write the maps directly). The
// init() below sees the variable before main runs and becomes the helper:
// pid 1 of the namespace. It makes every mount of the target through the
// secure mount functions (resolved from the new root's descriptor, never a
// path), pivots into the root, sets the host name, says "ready" on its
// control socket (fd 3) and then serves requests on it until the socket
// closes or it is killed.
//
// Each Run sends the helper a request with SCM_RIGHTS descriptors: a reply
// socket and the command's stdin, stdout and stderr. The helper forks and
// execs the command (so it is already in every namespace and the root: no
// setns of a multi-threaded Go process is needed), reaps it, and writes the
// exit status on the reply socket. If the agent closes the reply socket
// first (the Run's context was cancelled), the command's process group is
// killed. KillProcesses asks the helper for kill(-1, SIGKILL), which from
// the pid namespace's init reaches every other process in it and nothing
// outside; Stop SIGKILLs the helper itself, after which the kernel kills
// everything in the pid namespace, and the mount namespace, with all its
// mounts, goes away with its last process.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const nsInitEnv = "BUILDD_AGENT_ROOTFS_INIT"

// nsInitConfig is passed to the helper in nsInitEnv, as JSON.
type nsInitConfig struct {
	Root     string // host path of the unpacked root filesystem
	BuildDir string // host directory bind-mounted at /build ("" = none)
	Hostname string
}

type nsRequest struct {
	Op   string   `json:"op"` // "run", "kill", "copyin", "copytree"
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	// copyin and copytree: the destination and owner, as the namespace
	// sees them; the content comes on the second descriptor.
	Path string `json:"path,omitempty"`
	UID  int    `json:"uid,omitempty"`
	GID  int    `json:"gid,omitempty"`
	Mode uint32 `json:"mode,omitempty"`
}

type nsReply struct {
	Ready  bool   `json:"ready,omitempty"`
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

const nsCtrlFd = 3

func init() {
	v := os.Getenv(nsInitEnv)
	if v == "" {
		return
	}
	os.Unsetenv(nsInitEnv)
	var cfg nsInitConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "rootfs init: bad configuration: %v\n", err)
		os.Exit(2)
	}
	os.Exit(nsInitMain(cfg))
}

func nsInitMain(cfg nsInitConfig) int {
	runtime.LockOSThread()
	// The control socket must not leak into the commands.
	unix.CloseOnExec(nsCtrlFd)
	if err := nsSetup(cfg); err != nil {
		sendReply(nsCtrlFd, nsReply{Error: err.Error()})
		return 1
	}
	if err := sendReply(nsCtrlFd, nsReply{Ready: true}); err != nil {
		return 1
	}
	r := &reaper{waiting: map[int]chan unix.WaitStatus{}, wake: make(chan struct{}, 1)}
	go r.loop()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*8))
	for {
		n, oobn, _, _, err := unix.Recvmsg(nsCtrlFd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			// The agent is gone: take everything with us.
			_ = unix.Kill(-1, unix.SIGKILL)
			return 0
		}
		fds, err := parseRights(oob[:oobn])
		if err != nil || len(fds) == 0 {
			closeAll(fds)
			continue
		}
		var req nsRequest
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			sendReply(fds[0], nsReply{Error: "bad request: " + err.Error()})
			closeAll(fds)
			continue
		}
		switch req.Op {
		case "run":
			go r.run(req, fds)
		case "kill":
			go func() {
				err := killAllButInit()
				rep := nsReply{}
				if err != nil {
					rep.Error = err.Error()
				}
				sendReply(fds[0], rep)
				closeAll(fds)
			}()
		case "copyin", "copytree":
			// Files on the namespace's own filesystems (the tmpfs on /tmp)
			// can only be created by an id mapped in it: the helper writes
			// them, reading the content from the agent's pipe.
			go func() {
				err := nsCopy(req, fds)
				rep := nsReply{}
				if err != nil {
					rep.Error = err.Error()
				}
				sendReply(fds[0], rep)
				closeAll(fds)
			}()
		default:
			sendReply(fds[0], nsReply{Error: "unknown op " + req.Op})
			closeAll(fds)
		}
	}
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func sendReply(fd int, rep nsReply) error {
	b, _ := json.Marshal(rep)
	_, err := unix.Write(fd, b)
	return err
}

func nsCopy(req nsRequest, fds []int) error {
	if len(fds) != 2 {
		return errors.New("bad copy request")
	}
	src, err := unix.Dup(fds[1])
	if err != nil {
		return err
	}
	in := os.NewFile(uintptr(src), "content")
	defer in.Close()
	root, err := OpenRoot("/")
	if err != nil {
		return err
	}
	defer root.Close()
	if req.Op == "copyin" {
		return writeInRoot(root, req.Path, in, req.UID, req.GID, req.Mode)
	}
	d, err := root.MkdirAll(req.Path, 0o755, 0, 0)
	if err != nil {
		return fmt.Errorf("cannot copy a tree into %q: %w", req.Path, err)
	}
	defer d.Close()
	_, err = UnpackInRoot(context.Background(), in, &Root{fd: int(d.Fd()), path: req.Path}, UnpackOptions{
		KeepPrefix: true, Owner: &Owner{UID: uint32(req.UID), GID: uint32(req.GID)},
	})
	if err != nil {
		return fmt.Errorf("cannot copy a tree into %q: %w", req.Path, err)
	}
	return nil
}

// nsSetup runs as root of the new user namespace, in the new mount
// namespace, before anything of the target runs.
func nsSetup(cfg nsInitConfig) error {
	// The network namespace is new: only lo, and down.
	if err := bringUpLoopback(); err != nil {
		return err
	}
	// Nothing mounted here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return &MountError{Step: "make / private", Path: "/", Err: err}
	}
	hostRoot, err := OpenRoot(cfg.Root)
	if err != nil {
		return err
	}
	defer hostRoot.Close()
	// The root becomes a mount of its own (pivot_root needs one); every
	// later mount is resolved from this new mount's descriptor so that it
	// lands inside it.
	self, err := BindMount(hostRoot.fd, hostRoot.fd, MountFlags{NoSuid: false})
	if err != nil {
		return err
	}
	defer self.Close()
	root := &Root{fd: self.fd, path: cfg.Root}

	at := func(path string, mount func(dst int) (*Mount, error)) error {
		var d *os.File
		var err error
		if strings.HasPrefix(path, "/dev/") && !strings.Contains(path[5:], "/") && path != "/dev/pts" && path != "/dev/shm" {
			d, err = root.OpenPath(path) // a device's file mount point
		} else {
			d, err = root.MkdirAll(path, 0o755, -1, -1)
		}
		if err != nil {
			return &MountError{Step: "make mount point", Path: cfg.Root + path, Err: err}
		}
		defer d.Close()
		m, err := mount(int(d.Fd()))
		if err != nil {
			return err
		}
		return m.Close()
	}
	fs := func(fstype string, opts map[string]string, fl MountFlags) func(int) (*Mount, error) {
		return func(dst int) (*Mount, error) { return MountFS(fstype, opts, dst, fl) }
	}
	bindHost := func(src string, fl MountFlags) func(int) (*Mount, error) {
		return func(dst int) (*Mount, error) {
			sfd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, &MountError{Step: "open source", Path: src, Err: err}
			}
			defer unix.Close(sfd)
			return BindMount(sfd, dst, fl)
		}
	}
	const nsd = "" // fsconfig flag without value
	if err := at("/proc", fs("proc", nil, MountFlags{NoSuid: true, NoDev: true, NoExec: true})); err != nil {
		return err
	}
	sysFlags := MountFlags{ReadOnly: true, NoSuid: true, NoDev: true, NoExec: true}
	if err := at("/sys", fs("sysfs", nil, sysFlags)); err != nil {
		// A new sysfs needs a network namespace of our own (which the
		// helper has); should it still fail, bind the host's /sys
		// read-only instead.
		sysFlags.Recursive = true
		if err := at("/sys", bindHost("/sys", sysFlags)); err != nil {
			return err
		}
	}
	if err := at("/dev", fs("tmpfs", map[string]string{"mode": "755", "size": "65536k"}, MountFlags{NoSuid: true, NoExec: true})); err != nil {
		return err
	}
	dev, err := root.OpenDir("/dev")
	if err != nil {
		return err
	}
	defer dev.Close()
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		fd, err := unix.Openat(int(dev.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return &MountError{Step: "make device mount point", Path: "/dev/" + name, Err: err}
		}
		unix.Close(fd)
		if err := at("/dev/"+name, bindHost("/dev/"+name, MountFlags{NoSuid: true, NoExec: true})); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		if err := unix.Symlinkat(target, int(dev.Fd()), name); err != nil {
			return fmt.Errorf("cannot make /dev/%s: %w", name, err)
		}
	}
	if err := at("/dev/pts", fs("devpts", map[string]string{"newinstance": nsd, "ptmxmode": "0666", "mode": "0620", "gid": "5"}, MountFlags{NoSuid: true, NoExec: true})); err != nil {
		return err
	}
	if err := at("/dev/shm", fs("tmpfs", map[string]string{"mode": "1777"}, MountFlags{NoSuid: true, NoDev: true})); err != nil {
		return err
	}
	if err := at("/tmp", fs("tmpfs", map[string]string{"mode": "1777"}, MountFlags{NoSuid: true, NoDev: true})); err != nil {
		return err
	}
	if cfg.BuildDir != "" {
		if err := at("/build", bindHost(cfg.BuildDir, MountFlags{NoSuid: true, NoDev: true})); err != nil {
			return err
		}
	}
	// pivot_root(".", ".") with the new root as cwd stacks the old root on
	// top of the new one; detaching it leaves only the new root (runc).
	if err := unix.Fchdir(self.fd); err != nil {
		return fmt.Errorf("cannot enter the root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("cannot pivot_root into %q: %w", cfg.Root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("cannot detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("cannot set the host name: %w", err)
		}
	}
	return nil
}

// reaper is pid 1's wait loop: it reaps every child, orphans included, and
// hands the status of the commands it started to their Run.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
	wake    chan struct{}
}

func (r *reaper) loop() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ECHILD {
			<-r.wake
			continue
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// start holds mu across fork and registration, so a command's
		// pid is always registered by the time we get here.
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		}
		r.mu.Unlock()
	}
}

func envValue(env []string, key string) string {
	v := ""
	for _, e := range env {
		if k, val, ok := strings.Cut(e, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(envValue(env, "PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: executable file not found in $PATH", file)
}

func (r *reaper) run(req nsRequest, fds []int) {
	reply := fds[0]
	owned := true // fds still ours to close
	defer func() {
		if owned {
			closeAll(fds)
		}
	}()
	if len(fds) != 4 || len(req.Args) == 0 {
		sendReply(reply, nsReply{Error: "bad run request"})
		return
	}
	argv0, err := lookPath(req.Args[0], req.Env)
	if err != nil {
		sendReply(reply, nsReply{Error: err.Error()})
		return
	}
	dir := req.Dir
	if dir == "" {
		dir = "/"
	}
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	pid, err := syscall.ForkExec(argv0, req.Args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(fds[1]), uintptr(fds[2]), uintptr(fds[3])},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err == nil {
		r.waiting[pid] = ch
	}
	r.mu.Unlock()
	if err != nil {
		sendReply(reply, nsReply{Error: fmt.Sprintf("cannot run %q: %v", req.Args[0], err)})
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	closeAll(fds[1:])
	owned = false // the reply socket now belongs to rf
	// The agent closing its end of the reply socket means "cancel".
	rf, watchDone := watchClose(reply, func() { _ = unix.Kill(-pid, unix.SIGKILL) })
	ws := <-ch
	close(watchDone)
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	b, _ := json.Marshal(nsReply{Status: code})
	_, _ = rf.Write(b)
	rf.Close()
}

// watchClose calls onClose if the peer of the socket fd hangs up before
// done is closed. The returned file owns fd.
func watchClose(fd int, onClose func()) (*os.File, chan struct{}) {
	_ = unix.SetNonblock(fd, true)
	f := os.NewFile(uintptr(fd), "reply")
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 16)
		for {
			_, err := f.Read(buf)
			select {
			case <-done:
				return
			default:
			}
			if err != nil {
				onClose()
				return
			}
		}
	}()
	return f, done
}

// killAllButInit SIGKILLs every process of the pid namespace but pid 1
// and waits (bounded) until the reaper has reaped them all.
func killAllButInit() error {
	for range 250 {
		_ = unix.Kill(-1, unix.SIGKILL)
		if others() == 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("processes survived SIGKILL")
}

func others() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != 1 {
			n++
		}
	}
	return n
}

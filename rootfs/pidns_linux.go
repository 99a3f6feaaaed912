package rootfs

// Host processes in a PID namespace of their own.
//
// Some builds run a whole tool on the host rather than commands in a
// target: sbuild in unshare mode makes its own user namespaces and root
// filesystem, so the agent runs sbuild itself, as an unprivileged user.
// Killing such a tree reliably is the problem: sbuild forks apt, dpkg,
// dpkg-buildpackage and the package's own build, some in namespaces of
// their own, and any of them may set up a new session or process group.
//
// StartIsolated re-executes the agent's binary as pid 1 of a new PID and
// mount namespace (as root, before it drops to the build user). That init
// mounts a /proc of the new namespace (so that pids the tool passes to
// newuidmap and friends are the ones /proc shows), starts the command
// with the user's credentials, reaps every orphan, and exits with the
// command's status. Killing the init kills every process of the
// namespace, nested namespaces included (the kernel's rule for a PID
// namespace whose init dies); the init itself gets SIGKILL when the agent
// dies (Pdeathsig), so a crashed agent leaves no build running.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const pidnsInitEnv = "BUILDD_AGENT_PIDNS_INIT"

// IsolatedCommand is a host command for StartIsolated.
type IsolatedCommand struct {
	// Args is the argv; Args[0] is looked up in PATH from Env if it has no slash.
	Args []string
	// Env is the whole environment of the command.
	Env []string
	// Dir is the working directory ("" = the agent's).
	Dir string
	// UID, GID and Groups are the credentials the command runs with.
	UID, GID uint32
	Groups   []uint32
	// Stdin nil means /dev/null; Stdout and Stderr nil discard.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// NewNetwork gives the namespace a network of its own with only a
	// loopback interface (rootfs/netns_linux.go's design): nothing on the
	// host is reachable but what the caller serves inside with Listen.
	// The command then starts only at Release, so that those listeners
	// are there before it runs.
	NewNetwork bool
}

type pidnsConfig struct {
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	Dir    string   `json:"dir"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
	// WaitRelease: bring lo up, then wait for a byte on fd 3 before
	// starting the command.
	WaitRelease bool `json:"wait_release,omitempty"`
}

// Isolated is a running StartIsolated command.
type Isolated struct {
	cmd      *exec.Cmd
	release  *os.File // write end of the init's fd 3 (NewNetwork)
	waitDone chan struct{}
	waitErr  error
	killOnce sync.Once
}

// StartIsolated starts c in a new PID and mount namespace. It needs
// CAP_SYS_ADMIN (the agent runs as root).
func StartIsolated(c IsolatedCommand) (*Isolated, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("cannot start an isolated command: no argv")
	}
	cfg, err := json.Marshal(pidnsConfig{Args: c.Args, Env: c.Env, Dir: c.Dir, UID: c.UID, GID: c.GID, Groups: c.Groups, WaitRelease: c.NewNetwork})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"buildd-agent-pidns-init", c.Args[0]}
	cmd.Env = []string{pidnsInitEnv + "=" + string(cfg)}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	p := &Isolated{cmd: cmd, waitDone: make(chan struct{})}
	if c.NewNetwork {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("cannot start %s: %w", c.Args[0], err)
		}
		defer r.Close()
		cmd.ExtraFiles = []*os.File{r}
		p.release = w
	}
	// Pdeathsig fires when the thread that forked exits, not the process:
	// fork from a locked thread that stays until the init has exited.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.waitDone)
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.waitDone)
	}()
	if err := <-started; err != nil {
		if p.release != nil {
			p.release.Close()
		}
		return nil, fmt.Errorf("cannot start %s in a PID namespace: %w", c.Args[0], err)
	}
	return p, nil
}

// Listen opens a listening socket in the command's network namespace
// (NewNetwork); the command reaches it at that address.
func (p *Isolated) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if p.release == nil {
		return nil, errors.New("cannot listen: the isolated command shares the host's network")
	}
	return listenInNetns(ctx, p.Pid(), network, address)
}

// Release starts a NewNetwork command (a no-op otherwise, and when called
// again).
func (p *Isolated) Release() error {
	if p.release == nil {
		return nil
	}
	_, err := p.release.Write([]byte{1})
	p.release.Close()
	p.release = nil
	return err
}

// Pid is the init's pid on the host.
func (p *Isolated) Pid() int { return p.cmd.Process.Pid }

// Wait waits for the command and returns its exit status (128+signal when
// it was killed by a signal). err is set only when the status cannot be
// known.
func (p *Isolated) Wait() (int, error) {
	<-p.waitDone
	if ps := p.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return 128 + int(ws.Signal()), nil
			}
			return ws.ExitStatus(), nil
		}
	}
	if p.waitErr != nil {
		return -1, p.waitErr
	}
	return -1, errors.New("no exit status")
}

// Kill SIGKILLs the namespace's init, and so every process in it. It is
// safe to call at any time, more than once.
func (p *Isolated) Kill() {
	p.killOnce.Do(func() {
		if p.release != nil {
			p.release.Close()
		}
		select {
		case <-p.waitDone:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
	})
}

// Done is closed once the namespace's init has exited.
func (p *Isolated) Done() <-chan struct{} { return p.waitDone }

func init() {
	v := os.Getenv(pidnsInitEnv)
	if v == "" {
		return
	}
	os.Exit(pidnsInit(v))
}

// pidnsInit is pid 1 of the namespace: it returns the exit status.
func pidnsInit(raw string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "buildd-agent: isolated command: "+format+"\n", a...)
		return 125
	}
	var cfg pidnsConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil || len(cfg.Args) == 0 {
		return fail("bad configuration: %v", err)
	}
	if os.Getpid() != 1 {
		return fail("not the init of a PID namespace")
	}
	// Our mounts stay ours, and the host's never change under us.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("cannot make the mount namespace private: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail("cannot mount /proc: %v", err)
	}
	if cfg.WaitRelease {
		if err := bringUpLoopback(); err != nil {
			return fail("%v", err)
		}
		// A network of our own: the caller listens in it, then says go.
		// EOF without the byte means it gave up.
		rel := os.NewFile(3, "release")
		b := make([]byte, 1)
		if n, _ := rel.Read(b); n != 1 {
			return fail("released without a go")
		}
		rel.Close()
	}
	prog := cfg.Args[0]
	if !strings.Contains(prog, "/") {
		p, err := lookPathIn(prog, cfg.Env)
		if err != nil {
			return fail("%v", err)
		}
		prog = p
	}
	proc, err := os.StartProcess(prog, cfg.Args, &os.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups},
		},
	})
	if err != nil {
		return fail("cannot run %s: %v", cfg.Args[0], err)
	}
	// Reap everything; the namespace ends with the command (our exit
	// kills whatever it left behind).
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fail("wait: %v", err)
		}
		if pid != proc.Pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// lookPathIn finds prog in the PATH of env (the agent's PATH is not the
// command's).
func lookPathIn(prog string, env []string) (string, error) {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, prog)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", prog, path)
}

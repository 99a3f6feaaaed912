// Package target is the contract between build managers and the places
// builds run in: an LXD container (package lxd) or a chroot in a user
// namespace (package rootfs). It is shaped like launchpad-buildd's
// lpbuildd/target/backend.py Backend and holds no implementation, so that the
// target packages depend on nothing above them: builders import target, lxd
// and rootfs implement it, and the wiring happens in cmd/buildd-agent.
package target

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"time"
)

// Image says what a target is created from.
type Image struct {
	// Path of the image file on the host (usually in the file cache).
	Path string
	// SHA1 of the file, used as a cache key (e.g. the LXD image fingerprint alias).
	SHA1 string
	// Type is "chroot" (a Launchpad chroot tarball, optionally with a
	// "chroot-autobuild/" prefix, any compression) or "lxd" (a ready unified
	// LXD image tarball).
	Type string
}

// Spec identifies one build's target. Every field is set by the manager from
// the build's arguments and the agent's configuration.
type Spec struct {
	BuildID string
	Series  string
	// Arch is the Debian architecture tag (amd64, arm64, ...).
	Arch string
	// Privileged asks for a privileged container (loop devices); the default
	// is an unprivileged one.
	Privileged bool
	// Constraints from the build master (e.g. "gpu-nvidia").
	Constraints []string
	// FastCleanup: the machine is thrown away after the build, so the
	// target may skip teardown that only the machine's end would undo
	// anyway (the LXD target leaves its container). The manager still
	// calls Stop and Remove: no process of the build may outlive it, and
	// what would pile up on a long-lived builder (the chroot target's
	// build home) is still removed.
	FastCleanup bool
}

// Command is one process run inside a target.
type Command struct {
	// Args is the argv; Args[0] is looked up in the target's PATH.
	Args []string
	// Env is added to a minimal environment (the target's defaults). Each
	// entry is "KEY=VALUE"; values are passed raw, never through a shell.
	Env []string
	// Dir is the working directory inside the target ("" = the target's default).
	Dir string
	// Stdin, if non-nil, is copied to the process's standard input, which is
	// then closed; nil means /dev/null.
	Stdin io.Reader
	// Stdout and Stderr receive the output. Nil means the build log that the
	// target was given when it was created. Both may be the same writer.
	// Run returns only after all output has been written.
	Stdout io.Writer
	Stderr io.Writer
}

// FileInfo describes a path inside a target without following a final symlink.
type FileInfo struct {
	Name string
	Mode fs.FileMode // type bits + permissions, as lstat
	Size int64
}

// ErrNotExist is returned (wrapped) when a path does not exist in the target.
var ErrNotExist = fs.ErrNotExist

// ErrSymlink is returned (wrapped) when an operation refuses a symlink
// (copy out never follows links).
var ErrSymlink = errors.New("refusing to follow a symbolic link")

// Target is a place a build's commands run in. Implementations must be safe
// for one build at a time; KillProcesses may be called concurrently with Run
// (that is how abort works).
type Target interface {
	// Create makes the target from the image (import, unpack). It does not start it.
	Create(ctx context.Context, img Image) error
	// Start boots the target and waits until it is ready to run commands.
	Start(ctx context.Context) error
	// Run runs a command and returns its exit status. err is non-nil only
	// when the command could not be run or its status could not be learnt;
	// a process killed by a signal returns 128+signal and a nil error.
	Run(ctx context.Context, cmd Command) (exitCode int, err error)
	// CopyIn writes r to path inside the target with the given owner and mode,
	// replacing any file there. Parent directories must exist.
	CopyIn(ctx context.Context, r io.Reader, path string, uid, gid int, mode fs.FileMode) error
	// CopyOut streams the regular file at path to w. It refuses symlinks
	// (ErrSymlink) and never follows a link out of the target.
	CopyOut(ctx context.Context, path string, w io.Writer) error
	// CopyTreeIn copies the tree read from a tar stream under dir (created
	// if missing) inside the target; entries are owned by uid:gid. Symlinks are
	// created as symlinks; no entry may land outside dir.
	CopyTreeIn(ctx context.Context, tarStream io.Reader, dir string, uid, gid int) error
	// Stat lstats a path inside the target (ErrNotExist if missing).
	Stat(ctx context.Context, path string) (FileInfo, error)
	// ListDir lists a directory inside the target, sorted by name, without
	// following symlinks.
	ListDir(ctx context.Context, path string) ([]FileInfo, error)
	// KillProcesses kills every process in the target (SIGKILL), bounded.
	KillProcesses(ctx context.Context) error
	// Stop stops the target: no process and no mount of it remains.
	Stop(ctx context.Context) error
	// Remove deletes the target and everything the build left on the host.
	Remove(ctx context.Context) error
	// ProxyHost is the address of the host as seen from inside the target
	// (10.10.10.1 on the LXD bridge; 127.0.0.1 for a chroot, whose network
	// namespace is its own: see Listener), where the builder proxy listens
	// for it.
	ProxyHost() string
}

// Listener is implemented by a target whose network is its own and holds
// nothing of the host's (the chroot target: a network namespace with only
// loopback). Listen opens a listening socket inside that network, where
// the target's processes reach it at ProxyHost and nothing on the host
// can; the target closes it when it stops, at the latest. The builder
// proxy (and the apt archive gate) are served on such sockets.
//
// It is an optional interface, not a Target method, because it is what
// one backend needs to be isolated without a bridge: the LXD target is
// reached over its bridge (which the agent firewalls) and has nothing to
// offer here. Managers ask for it with a type assertion.
type Listener interface {
	Listen(ctx context.Context, network, address string) (net.Listener, error)
}

// Options are given to a Factory with every target it makes.
type Options struct {
	// Log receives the output of commands whose Command.Stdout/Stderr are nil,
	// and the target's own progress messages (one line each).
	Log io.Writer
	// ReadyTimeout bounds Start's wait for the target to be ready.
	ReadyTimeout time.Duration
}

// Factory makes a target for a build. One factory exists per backend name
// ("lxd", "chroot"); the agent passes the configured set to managers.
type Factory func(ctx context.Context, spec Spec, opts Options) (Target, error)

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// MountError says which step of a mount failed, on which path.
type MountError struct {
	Step string // "open_tree", "mount_setattr", "move_mount", "mount", "remount", "verify", "umount", ...
	Path string
	Err  error
}

func (e *MountError) Error() string {
	return fmt.Sprintf("cannot mount %q: %s: %v", e.Path, e.Step, e.Err)
}

func (e *MountError) Unwrap() error { return e.Err }

// Seams for tests (and kernels without the new mount API, Linux < 5.2, or
// mount_setattr, < 5.12).
var (
	sysOpenTree     = unix.OpenTree
	sysMoveMount    = unix.MoveMount
	sysMountSetattr = unix.MountSetattr
	sysMount        = unix.Mount
	hasNewMountAPI  = sync.OnceValue(func() bool {
		fd, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return false
		}
		unix.Close(fd)
		err = unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
		return err != unix.ENOSYS
	})
)

// MountFlags are the attributes a new mount is given.
type MountFlags struct {
	ReadOnly, NoSuid, NoDev, NoExec bool
	// Recursive binds the whole tree under the source (needed for a
	// source with submounts that a user namespace locked together).
	Recursive bool
}

// mountFlagBits is each MountFlags attribute in the three vocabularies
// the kernel speaks: mount_setattr, mount(2) and statfs.
var mountFlagBits = []struct {
	on   func(MountFlags) bool
	attr uint64
	ms   uintptr
	st   int64
}{
	{func(f MountFlags) bool { return f.ReadOnly }, unix.MOUNT_ATTR_RDONLY, unix.MS_RDONLY, unix.ST_RDONLY},
	{func(f MountFlags) bool { return f.NoSuid }, unix.MOUNT_ATTR_NOSUID, unix.MS_NOSUID, unix.ST_NOSUID},
	{func(f MountFlags) bool { return f.NoDev }, unix.MOUNT_ATTR_NODEV, unix.MS_NODEV, unix.ST_NODEV},
	{func(f MountFlags) bool { return f.NoExec }, unix.MOUNT_ATTR_NOEXEC, unix.MS_NOEXEC, unix.ST_NOEXEC},
}

// attrs, msFlags and stFlags are f for mount_setattr, mount(2) and statfs.
func (f MountFlags) attrs() (a uint64) {
	for _, b := range mountFlagBits {
		if b.on(f) {
			a |= b.attr
		}
	}
	return a
}

func (f MountFlags) msFlags() (m uintptr) {
	for _, b := range mountFlagBits {
		if b.on(f) {
			m |= b.ms
		}
	}
	return m
}

func (f MountFlags) stFlags() (m int64) {
	for _, b := range mountFlagBits {
		if b.on(f) {
			m |= b.st
		}
	}
	return m
}

// Mount is a mount made by BindMount or MountFS, held by a descriptor of
// its root.
type Mount struct {
	fd   int
	ID   uint64
	Path string
}

// Fd is an O_PATH descriptor of the mount's root.
func (m *Mount) Fd() int { return m.fd }

// Close releases the descriptor (the mount stays).
func (m *Mount) Close() error {
	if m.fd < 0 {
		return nil
	}
	err := unix.Close(m.fd)
	m.fd = -1
	return err
}

// mountID is the mount id of the mount fd is on (statx STATX_MNT_ID, Linux 5.8).
func mountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, err
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, errors.New("kernel gave no mount id")
	}
	return stx.Mnt_id, nil
}

// fdName is what the kernel calls fd (for errors only, never re-resolved).
func fdName(fd int) string {
	var name string
	_ = withProcFd(fd, func(p string) error {
		n, err := os.Readlink(p)
		if err != nil {
			name = p
		} else {
			name = n
		}
		return nil
	})
	return name
}

// BindMount bind-mounts the source descriptor onto the target descriptor
// (both usually from Root.OpenPath/OpenDir, so no path was re-resolved
// since they were checked) and applies flags to the new mount itself.
//
// With the new mount API the source is cloned into a detached tree
// (open_tree OPEN_TREE_CLONE), the attributes are set on that tree
// (mount_setattr) before it is attached with move_mount to the target
// descriptor: nothing is ever visible without its attributes, and no path
// is involved. Otherwise mount(2) binds /proc/thread-self/fd/SRC onto
// /proc/thread-self/fd/DST and remounts the new mount (reached from the
// target's parent descriptor and checked to be the new mount) read-only.
// Either way the result is verified: the new mount's id differs from the
// target's and its statfs flags carry the attributes.
func BindMount(src, dst int, flags MountFlags) (*Mount, error) {
	name := fdName(dst)
	before, err := mountID(dst)
	if err != nil {
		return nil, &MountError{Step: "statx target", Path: name, Err: err}
	}
	var m *Mount
	if hasNewMountAPI() {
		m, err = bindNewAPI(src, dst, flags, name)
	} else {
		m, err = bindClassic(src, dst, flags, name)
	}
	if err != nil {
		return nil, err
	}
	if err := verifyMount(m, before, flags); err != nil {
		_ = Unmount(m)
		m.Close()
		return nil, err
	}
	// The new mount must show the source: same inode.
	var a, b unix.Stat_t
	if err := unix.Fstat(src, &a); err != nil {
		return nil, &MountError{Step: "verify: fstat source", Path: name, Err: err}
	}
	if err := unix.Fstat(m.fd, &b); err != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		_ = Unmount(m)
		m.Close()
		return nil, &MountError{Step: "verify", Path: name, Err: fmt.Errorf("new mount does not show the source (%v)", err)}
	}
	return m, nil
}

func bindNewAPI(src, dst int, flags MountFlags, name string) (*Mount, error) {
	otFlags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
	if flags.Recursive {
		otFlags |= unix.AT_RECURSIVE
	}
	tree, err := sysOpenTree(src, "", otFlags)
	if err != nil {
		return nil, &MountError{Step: "open_tree(OPEN_TREE_CLONE)", Path: name, Err: err}
	}
	if a := flags.attrs(); a != 0 {
		saFlags := uint(unix.AT_EMPTY_PATH)
		if flags.Recursive {
			saFlags |= unix.AT_RECURSIVE
		}
		if err := sysMountSetattr(tree, "", saFlags, &unix.MountAttr{Attr_set: a}); err != nil {
			unix.Close(tree)
			return nil, &MountError{Step: "mount_setattr", Path: name, Err: err}
		}
	}
	if err := sysMoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		unix.Close(tree)
		return nil, &MountError{Step: "move_mount", Path: name, Err: err}
	}
	return &Mount{fd: tree, Path: name}, nil
}

func bindClassic(src, dst int, flags MountFlags, name string) (*Mount, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ms := uintptr(unix.MS_BIND)
	if flags.Recursive {
		ms |= unix.MS_REC
	}
	if err := sysMount(procFdPath(src), procFdPath(dst), "", ms, ""); err != nil {
		return nil, &MountError{Step: "mount(MS_BIND)", Path: name, Err: err}
	}
	m, err := reopenMounted(dst, name)
	if err != nil {
		return nil, err
	}
	if f := flags.msFlags(); f != 0 {
		err := sysMount("", procFdPath(m.fd), "", unix.MS_REMOUNT|unix.MS_BIND|f, "")
		if err != nil {
			_ = Unmount(m)
			m.Close()
			return nil, &MountError{Step: "remount", Path: name, Err: err}
		}
	}
	return m, nil
}

// reopenMounted returns a descriptor of the mount now on top of dst: dst
// itself still names the shadowed directory, so the name is looked up again
// relative to dst's parent (one component, no symlink), never as a path
// from "/". verifyMount then checks that it really is a new mount.
func reopenMounted(dst int, name string) (*Mount, error) {
	parent, err := unix.Openat(dst, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &MountError{Step: "open parent", Path: name, Err: err}
	}
	defer unix.Close(parent)
	fd, err := unix.Openat(parent, filepath.Base(name), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &MountError{Step: "reopen mounted target", Path: name, Err: err}
	}
	return &Mount{fd: fd, Path: name}, nil
}

func verifyMount(m *Mount, before uint64, flags MountFlags) error {
	id, err := mountID(m.fd)
	if err != nil {
		return &MountError{Step: "verify: statx", Path: m.Path, Err: err}
	}
	if id == before {
		return &MountError{Step: "verify", Path: m.Path, Err: fmt.Errorf("mount id %d did not change", id)}
	}
	m.ID = id
	if want := flags.stFlags(); want != 0 {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(m.fd, &sfs); err != nil {
			return &MountError{Step: "verify: fstatfs", Path: m.Path, Err: err}
		}
		if sfs.Flags&want != want {
			return &MountError{Step: "verify", Path: m.Path, Err: fmt.Errorf("mount flags %#x lack %#x", sfs.Flags, want)}
		}
	}
	return nil
}

// Unmount detaches the mount by its descriptor: umount2 of the
// /proc/thread-self/fd magic link with MNT_DETACH unmounts the very mount
// the descriptor is on, whatever path now leads to it. The magic link must
// be followed (it is a jump to the descriptor's mount and dentry, not a
// path walk): with UMOUNT_NOFOLLOW the kernel would act on the /proc link
// itself and fail with EINVAL. The descriptor must be the mount's root,
// which the kernel checks (EINVAL otherwise), so nothing else is detached.
func Unmount(m *Mount) error {
	err := withProcFd(m.fd, func(p string) error {
		return unix.Unmount(p, unix.MNT_DETACH)
	})
	if err != nil {
		return &MountError{Step: "umount2(MNT_DETACH)", Path: m.Path, Err: err}
	}
	return nil
}

// MountFS mounts a new filesystem instance (proc, sysfs, devpts, tmpfs)
// onto the target descriptor: fsopen/fsconfig/fsmount then move_mount to
// the descriptor, or mount(2) onto /proc/thread-self/fd/N. The flags are set
// on the new mount and verified like BindMount's.
func MountFS(fstype string, options map[string]string, dst int, flags MountFlags) (*Mount, error) {
	name := fdName(dst)
	before, err := mountID(dst)
	if err != nil {
		return nil, &MountError{Step: "statx target", Path: name, Err: err}
	}
	var m *Mount
	if hasNewMountAPI() {
		m, err = mountFSNewAPI(fstype, options, dst, flags, name)
	} else {
		m, err = mountFSClassic(fstype, options, dst, flags, name)
	}
	if err != nil {
		return nil, err
	}
	if err := verifyMount(m, before, flags); err != nil {
		_ = Unmount(m)
		m.Close()
		return nil, err
	}
	return m, nil
}

func mountFSNewAPI(fstype string, options map[string]string, dst int, flags MountFlags, name string) (*Mount, error) {
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, &MountError{Step: "fsopen(" + fstype + ")", Path: name, Err: err}
	}
	defer unix.Close(fsfd)
	for k, v := range options {
		if v == "" {
			err = unix.FsconfigSetFlag(fsfd, k)
		} else {
			err = unix.FsconfigSetString(fsfd, k, v)
		}
		if err != nil {
			return nil, &MountError{Step: "fsconfig " + k, Path: name, Err: err}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, &MountError{Step: "fsconfig create " + fstype, Path: name, Err: err}
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(flags.attrs()))
	if err != nil {
		return nil, &MountError{Step: "fsmount", Path: name, Err: err}
	}
	if err := sysMoveMount(mfd, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		unix.Close(mfd)
		return nil, &MountError{Step: "move_mount", Path: name, Err: err}
	}
	return &Mount{fd: mfd, Path: name}, nil
}

func mountFSClassic(fstype string, options map[string]string, dst int, flags MountFlags, name string) (*Mount, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	data := ""
	for k, v := range options {
		if data != "" {
			data += ","
		}
		data += k
		if v != "" {
			data += "=" + v
		}
	}
	if err := sysMount(fstype, procFdPath(dst), fstype, flags.msFlags(), data); err != nil {
		return nil, &MountError{Step: "mount(" + fstype + ")", Path: name, Err: err}
	}
	return reopenMounted(dst, name)
}

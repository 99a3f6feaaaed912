package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Seams for tests: the kernel code paths are swapped by replacing these
// (snapd's style), so every resolver test runs with and without openat2.
var (
	sysOpenat2 = unix.Openat2
	hasOpenat2 = sync.OnceValue(func() bool {
		fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
		if err != nil {
			return false
		}
		unix.Close(fd)
		return true
	})
)

// openat2Retries bounds the retries of openat2 on EAGAIN, which the kernel
// returns when a rename or mount races a lookup under RESOLVE_IN_ROOT
// (pathrs-lite retries 128 times, too).
const openat2Retries = 128

// ErrUnsafePath is wrapped when a path has an empty, "." or ".." segment.
var ErrUnsafePath = errors.New("path has an empty, \".\" or \"..\" segment")

// splitInRoot splits a path relative to a root into its segments. A leading
// "/" is allowed (the path is inside the root either way), as is a trailing
// "/"; every other empty segment, and "." and "..", are refused: a caller
// never needs them, and refusing them makes both resolvers agree.
func splitInRoot(path string) ([]string, error) {
	p := strings.TrimPrefix(path, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, nil
	}
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, fmt.Errorf("%q: %w", path, ErrUnsafePath)
		}
	}
	return segs, nil
}

// resolveNoSymlinks opens path inside the directory rootfd without following
// any symlink, and refuses it if the final component is one (unless
// allowFinalSymlink, used to lchown/utime a symlink). The result is an
// O_PATH descriptor; O_DIRECTORY in flags requires a directory.
//
// With openat2 this is one RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS lookup;
// without it a walk of O_PATH|O_NOFOLLOW|O_DIRECTORY opens, one component
// at a time, each fd-relative to the previous one.
func resolveNoSymlinks(rootfd int, path string, flags int, allowFinalSymlink bool) (int, error) {
	segs, err := splitInRoot(path)
	if err != nil {
		return -1, err
	}
	flags |= unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW
	var fd int
	if hasOpenat2() {
		rel := strings.Join(segs, "/")
		if rel == "" {
			rel = "."
		}
		fd, err = openat2Retry(rootfd, rel, &unix.OpenHow{
			Flags:   uint64(flags),
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.ELOOP) {
			err = errSymlink
		}
	} else {
		fd, err = walkNoSymlinks(rootfd, segs, flags)
	}
	if err != nil {
		return -1, &os.PathError{Op: "resolve in root", Path: path, Err: err}
	}
	if !allowFinalSymlink {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			return -1, &os.PathError{Op: "resolve in root", Path: path, Err: errSymlink}
		}
	}
	return fd, nil
}

func openat2Retry(dirfd int, path string, how *unix.OpenHow) (int, error) {
	var err error
	for range openat2Retries {
		var fd int
		fd, err = sysOpenat2(dirfd, path, how)
		if err == nil {
			return fd, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return -1, err
		}
	}
	return -1, err
}

// walkNoSymlinks is the fallback for kernels without openat2 (snapd's
// OpenPath): every intermediate component is opened with
// O_PATH|O_NOFOLLOW|O_DIRECTORY relative to the previous one, so a symlink
// anywhere fails the walk (ENOTDIR, told apart from a plain file by fstatat).
func walkNoSymlinks(rootfd int, segs []string, flags int) (int, error) {
	cur, err := unix.Openat(rootfd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for i, s := range segs {
		fl := unix.O_PATH | unix.O_NOFOLLOW | unix.O_DIRECTORY | unix.O_CLOEXEC
		if i == len(segs)-1 {
			fl = flags
		}
		next, err := unix.Openat(cur, s, fl, 0)
		if err != nil {
			if err == unix.ENOTDIR {
				var st unix.Stat_t
				if unix.Fstatat(cur, s, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					err = errSymlink
				}
			}
			unix.Close(cur)
			return -1, err
		}
		unix.Close(cur)
		cur = next
	}
	return cur, nil
}

// resolveFollow opens path inside rootfd following symlinks the way a
// chroot would (clamped to the root; magic links refused): the view a
// process in the target has. Without openat2, pathrs-lite's emulation of
// RESOLVE_IN_ROOT is used.
func resolveFollow(rootfd int, path string) (int, error) {
	segs, err := splitInRoot(path)
	if err != nil {
		return -1, err
	}
	rel := strings.Join(segs, "/")
	if rel == "" {
		rel = "."
	}
	if hasOpenat2() {
		fd, err := openat2Retry(rootfd, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return -1, &os.PathError{Op: "resolve in root", Path: path, Err: err}
		}
		return fd, nil
	}
	// An *os.File closes its descriptor when collected: give it a copy,
	// never the caller's rootfd.
	dup, err := unix.FcntlInt(uintptr(rootfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "resolve in root", Path: path, Err: err}
	}
	root := os.NewFile(uintptr(dup), "root")
	f, err := pathrs.OpenatInRoot(root, rel)
	root.Close()
	if err != nil {
		return -1, &os.PathError{Op: "resolve in root", Path: path, Err: err}
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

// Root is an open directory that paths are resolved inside of. It never
// lets a symlink or ".." in the tree lead outside it.
type Root struct {
	fd   int
	path string
}

// OpenRoot opens the directory path (a trusted host path) as a root.
func OpenRoot(path string) (*Root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot open root %q: %w", path, err)
	}
	return &Root{fd: fd, path: path}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Fd is the root's O_PATH descriptor.
func (r *Root) Fd() int { return r.fd }

// Path is the host path the root was opened from.
func (r *Root) Path() string { return r.path }

// OpenPath resolves path inside the root without following any symlink
// and returns an O_PATH file (a final symlink is refused with an error
// wrapping target.ErrSymlink's text).
func (r *Root) OpenPath(path string) (*os.File, error) {
	fd, err := resolveNoSymlinks(r.fd, path, 0, false)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.path+"/"+strings.TrimPrefix(path, "/")), nil
}

// OpenDir is OpenPath for a directory.
func (r *Root) OpenDir(path string) (*os.File, error) {
	fd, err := resolveNoSymlinks(r.fd, path, unix.O_DIRECTORY, false)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.path+"/"+strings.TrimPrefix(path, "/")), nil
}

// MkdirAll creates the directories of path inside the root that are
// missing (mode, owned by uid:gid on the host) and returns an O_PATH
// descriptor of the last one. No symlink is followed.
func (r *Root) MkdirAll(path string, mode uint32, uid, gid int) (*os.File, error) {
	segs, err := splitInRoot(path)
	if err != nil {
		return nil, err
	}
	cur, err := unix.Openat(r.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		next, err := unix.Openat(cur, s, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			if err := unix.Mkdirat(cur, s, mode); err != nil && err != unix.EEXIST {
				unix.Close(cur)
				return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
			}
			next, err = unix.Openat(cur, s, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil && uid >= 0 {
				err = unix.Fchownat(next, "", uid, gid, unix.AT_EMPTY_PATH)
			}
		}
		if err == unix.ENOTDIR {
			var st unix.Stat_t
			if unix.Fstatat(cur, s, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = errSymlink
			}
		}
		unix.Close(cur)
		if err != nil {
			if next >= 0 {
				unix.Close(next)
			}
			return nil, &os.PathError{Op: "mkdir in root", Path: path, Err: err}
		}
		cur = next
	}
	return os.NewFile(uintptr(cur), r.path+"/"+strings.Join(segs, "/")), nil
}

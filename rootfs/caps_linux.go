package rootfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// GetCaps reads the file capabilities of path without following a final
// symlink. ok is false when the file has none.
func GetCaps(path string) (c Caps, ok bool, err error) {
	fd, err := openPathNoFollow(path)
	if err != nil {
		return Caps{}, false, fmt.Errorf("cannot read file capabilities of %q: %w", path, err)
	}
	defer unix.Close(fd)
	raw, err := getCapsRaw(fd)
	if err != nil {
		return Caps{}, false, fmt.Errorf("cannot read file capabilities of %q: %w", path, err)
	}
	if raw == nil {
		return Caps{}, false, nil
	}
	c, err = DecodeCaps(raw)
	if err != nil {
		return Caps{}, false, fmt.Errorf("cannot read file capabilities of %q: %w", path, err)
	}
	return c, true, nil
}

// SetCaps writes c on path without following a final symlink: as v2 when
// rootid is nil (the capabilities apply in every namespace), else as v3
// owned by the user namespace whose root is host uid *rootid.
func SetCaps(path string, c Caps, rootid *uint32) error {
	fd, err := openPathNoFollow(path)
	if err != nil {
		return fmt.Errorf("cannot set file capabilities on %q: %w", path, err)
	}
	defer unix.Close(fd)
	raw := c.EncodeV2()
	if rootid != nil {
		raw = c.EncodeV3(*rootid)
	}
	if err := setCapsRaw(fd, raw); err != nil {
		return fmt.Errorf("cannot set file capabilities on %q: %w", path, err)
	}
	return nil
}

func openPathNoFollow(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		unix.Close(fd)
		return -1, &os.PathError{Op: "open", Path: path, Err: errSymlink}
	}
	return fd, nil
}

var errSymlink = errors.New("refusing to follow a symbolic link")

// getCapsRaw reads security.capability of an O_PATH (or any) descriptor
// through its /proc/thread-self/fd magic link: f*xattr refuse O_PATH
// descriptors, and the magic link names the very inode, so no path is
// re-resolved. It returns nil, nil when there is none.
func getCapsRaw(fd int) ([]byte, error) {
	var raw []byte
	err := withProcFd(fd, func(p string) error {
		buf := make([]byte, capsSizeV3)
		n, err := unix.Getxattr(p, CapsXattr, buf)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		if err != nil {
			return &os.PathError{Op: "getxattr " + CapsXattr, Path: p, Err: err}
		}
		raw = buf[:n]
		return nil
	})
	return raw, err
}

func setCapsRaw(fd int, raw []byte) error {
	return withProcFd(fd, func(p string) error {
		if err := unix.Setxattr(p, CapsXattr, raw, 0); err != nil {
			return &os.PathError{Op: "setxattr " + CapsXattr, Path: p, Err: err}
		}
		return nil
	})
}

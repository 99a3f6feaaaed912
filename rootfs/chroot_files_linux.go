package rootfs

// The chroot target's file operations: every path is resolved inside
// the root (no link followed out of it), in the agent or through the
// namespace helper.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"golang.org/x/sys/unix"
)

// CopyIn writes r to path inside the target, owned by uid:gid (target ids).
func (t *chrootTarget) CopyIn(ctx context.Context, r io.Reader, p string, uid, gid int, mode fs.FileMode) error {
	hu, hg, err := t.mapOwner(uid, gid)
	if err != nil {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	perm := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		perm |= unix.S_ISUID
	}
	if mode&fs.ModeSetgid != 0 {
		perm |= unix.S_ISGID
	}
	if mode&fs.ModeSticky != 0 {
		perm |= unix.S_ISVTX
	}
	if t.running() {
		return t.copyViaHelper(ctx, nsRequest{Op: "copyin", Path: p, UID: uid, GID: gid, Mode: perm}, r)
	}
	root, err := t.root()
	if err != nil {
		return err
	}
	defer root.Close()
	return writeInRoot(root, p, r, hu, hg, perm)
}

func (t *chrootTarget) running() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.helper != nil
}

// copyViaHelper streams r to the helper, which writes it inside the
// namespace (see nsCopy).
func (t *chrootTarget) copyViaHelper(ctx context.Context, req nsRequest, r io.Reader) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pw.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		pr.Close()
		return err
	}
	defer unix.Close(pair[0])
	msg, _ := json.Marshal(req)
	err = t.send(msg, pair[1], int(pr.Fd()))
	unix.Close(pair[1])
	pr.Close()
	if err != nil {
		return fmt.Errorf("cannot copy into %q: %w", req.Path, err)
	}
	_, cerr := io.Copy(pw, r)
	pw.Close()
	rep, err := t.readReply(ctx, pair[0], 0)
	if err == nil && rep.Error != "" {
		err = errors.New(rep.Error)
	}
	if err == nil && cerr != nil {
		err = fmt.Errorf("cannot copy into %q: %w", req.Path, cerr)
	}
	return err
}

// CopyOut streams the regular file at path inside the target to w.
func (t *chrootTarget) CopyOut(ctx context.Context, p string, w io.Writer) error {
	root, err := t.root()
	if err != nil {
		return err
	}
	defer root.Close()
	return copyOutRoot(root, p, w)
}

// CopyTreeIn unpacks a tar stream under dir inside the target, every
// entry owned by uid:gid, with Unpack's rules.
func (t *chrootTarget) CopyTreeIn(ctx context.Context, tarStream io.Reader, dir string, uid, gid int) error {
	if uid < 0 || gid < 0 {
		return fmt.Errorf("cannot copy a tree into %q: invalid owner %d:%d", dir, uid, gid)
	}
	if _, _, err := t.mapOwner(uid, gid); err != nil {
		return fmt.Errorf("cannot copy a tree into %q: %w", dir, err)
	}
	if t.running() {
		return t.copyViaHelper(ctx, nsRequest{Op: "copytree", Path: dir, UID: uid, GID: gid}, tarStream)
	}
	root, err := t.root()
	if err != nil {
		return err
	}
	defer root.Close()
	ru, rg := t.rootIDs()
	d, err := root.MkdirAll(dir, 0o755, ru, rg)
	if err != nil {
		return fmt.Errorf("cannot copy a tree into %q: %w", dir, err)
	}
	sub := &Root{fd: int(d.Fd()), path: root.path + dir}
	_, err = UnpackInRoot(ctx, tarStream, sub, UnpackOptions{
		IDs: t.ids, Privileged: t.spec.Privileged, KeepPrefix: true,
		Owner: &Owner{UID: uint32(uid), GID: uint32(gid)}, Log: t.opts.Log,
	})
	d.Close()
	if err != nil {
		return fmt.Errorf("cannot copy a tree into %q: %w", dir, err)
	}
	return nil
}

// Stat lstats path inside the target.
func (t *chrootTarget) Stat(ctx context.Context, p string) (target.FileInfo, error) {
	root, err := t.root()
	if err != nil {
		return target.FileInfo{}, err
	}
	defer root.Close()
	return statInRoot(root, p)
}

// ListDir lists a directory inside the target, sorted, without following
// symlinks.
func (t *chrootTarget) ListDir(ctx context.Context, p string) ([]target.FileInfo, error) {
	root, err := t.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return listInRoot(root, p)
}

// splitParent splits a target path into its parent (resolved following
// symlinks inside the root, as the target's processes would) and a final
// name that must be a plain name.
func splitParent(p string) (string, string, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return "", "", fmt.Errorf("%q: %w", p, ErrUnsafePath)
	}
	if _, err := splitInRoot(p); err != nil {
		return "", "", err
	}
	dir, base := path.Split(clean)
	return dir, base, nil
}

func openParent(root *Root, p string) (int, string, error) {
	dir, base, err := splitParent(p)
	if err != nil {
		return -1, "", err
	}
	pfd, err := resolveFollow(root.fd, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return -1, "", err
	}
	return pfd, base, nil
}

// writeInRoot replaces the file at p inside root with r's content.
func writeInRoot(root *Root, p string, r io.Reader, uid, gid int, perm uint32) error {
	pfd, base, err := openParent(root, p)
	if err != nil {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	defer unix.Close(pfd)
	// Unlink first: never write through a symlink or into another hard
	// link of the old file.
	if err := unix.Unlinkat(pfd, base, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	// After chown, which clears setuid/setgid.
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("cannot copy into %q: %w", p, err)
	}
	return f.Close()
}

func copyOutRoot(root *Root, p string, w io.Writer) error {
	pfd, base, err := openParent(root, p)
	if err != nil {
		return fmt.Errorf("cannot copy %q out: %w", p, err)
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot copy %q out: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("cannot copy %q out: %w", p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return fmt.Errorf("cannot copy %q out: %w", p, target.ErrSymlink)
	default:
		return fmt.Errorf("cannot copy %q out: not a regular file", p)
	}
	var rfd int
	err = withProcFd(fd, func(pp string) error {
		var err error
		rfd, err = unix.Open(pp, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == unix.ELOOP {
			// O_NOFOLLOW applies to the magic link itself on old
			// kernels: reopen without it (the link names our inode).
			rfd, err = unix.Open(pp, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("cannot copy %q out: %w", p, err)
	}
	f := os.NewFile(uintptr(rfd), p)
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("cannot copy %q out: %w", p, err)
	}
	return nil
}

func fileInfo(name string, st *unix.Stat_t) target.FileInfo {
	m := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return target.FileInfo{Name: name, Mode: m, Size: st.Size}
}

func statInRoot(root *Root, p string) (target.FileInfo, error) {
	var st unix.Stat_t
	if path.Clean("/"+p) == "/" {
		if err := unix.Fstat(root.fd, &st); err != nil {
			return target.FileInfo{}, err
		}
		return fileInfo("/", &st), nil
	}
	pfd, base, err := openParent(root, p)
	if err != nil {
		return target.FileInfo{}, fmt.Errorf("cannot stat %q: %w", p, err)
	}
	defer unix.Close(pfd)
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return target.FileInfo{}, fmt.Errorf("cannot stat %q: %w", p, err)
	}
	return fileInfo(base, &st), nil
}

func listInRoot(root *Root, p string) ([]target.FileInfo, error) {
	dfd, err := resolveFollow(root.fd, strings.TrimSuffix(path.Clean("/"+p), "/"))
	if err != nil {
		return nil, fmt.Errorf("cannot list %q: %w", p, err)
	}
	defer unix.Close(dfd)
	rfd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot list %q: %w", p, err)
	}
	f := os.NewFile(uintptr(rfd), p)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("cannot list %q: %w", p, err)
	}
	sort.Strings(names)
	out := make([]target.FileInfo, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(rfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return nil, fmt.Errorf("cannot list %q: %w", p, err)
		}
		out = append(out, fileInfo(n, &st))
	}
	return out, nil
}

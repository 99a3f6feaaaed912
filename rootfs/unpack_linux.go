package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ChrootPrefix is the top directory of a Launchpad chroot tarball.
const ChrootPrefix = "chroot-autobuild"

// UnpackOptions control Unpack.
type UnpackOptions struct {
	// IDs maps the archive's (namespace) uids and gids to host ids. Empty
	// maps are the identity. An id outside the maps fails the unpack.
	IDs IDMapping
	// Privileged writes file capabilities as v2 (effective in every user
	// namespace) instead of v3 owned by the namespace root.
	Privileged bool
	// Owner, if set, replaces every entry's owner (namespace ids, then
	// mapped by IDs): CopyTreeIn's "owned by uid:gid".
	Owner *Owner
	// KeepPrefix turns off the removal of a leading "chroot-autobuild/".
	KeepPrefix bool
	// Log receives one line per notable event (skipped device nodes).
	Log io.Writer
}

// Owner is a uid:gid pair.
type Owner struct{ UID, GID uint32 }

// UnpackStats counts what Unpack did.
type UnpackStats struct {
	Compression    Compression
	Entries        int
	Files          int
	Dirs           int
	Symlinks       int
	Hardlinks      int
	Fifos          int
	Caps           int   // files whose capabilities were restored
	SkippedDevices int   // device nodes (cannot exist in an unprivileged rootfs)
	Bytes          int64 // regular file content written
}

// Unpack extracts a (compressed) tarball into dir in one pass: ownership
// shifted by opts.IDs, setuid/setgid bits kept (chmod after chown), file
// capabilities from SCHILY.xattr.security.capability restored after chown
// (v3 owned by the mapped root, or v2 for a privileged target), hard links
// and symlinks kept as such, mtimes kept.
//
// Every entry is created relative to a descriptor of its parent directory,
// resolved inside dir without following any symlink, with
// O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, linkat and mknodat: no
// entry ("../x", "/abs", a path through a symlink the archive planted,
// a hard link to "/etc/shadow") can write or link outside dir. Absolute
// names are taken relative to dir (as GNU tar does); ".." segments fail the
// unpack, as does a path through a symlink.
func Unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) (UnpackStats, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return UnpackStats{}, fmt.Errorf("cannot unpack into %q: %w", dir, err)
	}
	root, err := OpenRoot(dir)
	if err != nil {
		return UnpackStats{}, fmt.Errorf("cannot unpack into %q: %w", dir, err)
	}
	defer root.Close()
	st, err := UnpackInRoot(ctx, r, root, opts)
	if err != nil {
		return st, fmt.Errorf("cannot unpack into %q: %w", dir, err)
	}
	return st, nil
}

// UnpackInRoot is Unpack into an open root (for example a directory of a
// running target, reached through /proc/PID/root).
func UnpackInRoot(ctx context.Context, r io.Reader, root *Root, opts UnpackOptions) (UnpackStats, error) {
	var st UnpackStats
	dr, comp, err := Decompress(r)
	if err != nil {
		return st, err
	}
	defer dr.Close()
	st.Compression = comp
	ahead := readAhead(dr)
	defer ahead.Close()
	u := &unpacker{
		ctx: ctx, root: root, opts: opts, st: &st,
		parentFd: -1, buf: make([]byte, 1<<20), umask: currentUmask(),
	}
	defer u.dropParent()
	if err := u.run(tar.NewReader(ahead)); err != nil {
		return st, err
	}
	if st.SkippedDevices > 0 && opts.Log != nil {
		fmt.Fprintf(opts.Log, "Skipped %d device nodes (an unprivileged root filesystem cannot hold them).\n", st.SkippedDevices)
	}
	return st, nil
}

// zeros is what a run of zeros is compared with; made on first use, not at
// start-up: a daemon that never unpacks should not hold (or scan) 1 MiB.
var zeros = sync.OnceValue(func() []byte { return make([]byte, 1<<20) })

type dirTime struct {
	path  string
	mtime time.Time
}

type unpacker struct {
	ctx   context.Context
	root  *Root
	opts  UnpackOptions
	st    *UnpackStats
	umask uint32
	buf   []byte

	prefixKnown, stripPrefix bool

	// The last parent directory resolved: consecutive entries usually
	// share it. It is dropped whenever an entry replaces another.
	parentPath string
	parentFd   int

	dirTimes []dirTime
}

func currentUmask() uint32 {
	f, err := os.Open("/proc/thread-self/status")
	if err != nil {
		return 0o022
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(n)
			}
		}
	}
	return 0o022
}

func (u *unpacker) dropParent() {
	if u.parentFd >= 0 {
		unix.Close(u.parentFd)
	}
	u.parentFd, u.parentPath = -1, ""
}

func (u *unpacker) parent(p string) (int, error) {
	if u.parentFd >= 0 && u.parentPath == p {
		return u.parentFd, nil
	}
	u.dropParent()
	fd, err := resolveNoSymlinks(u.root.fd, p, unix.O_DIRECTORY, false)
	if errors.Is(err, unix.ENOENT) {
		// Archives need not list every directory: make the missing ones
		// (no symlink followed), owned by the namespace root, as tar does.
		uid, _ := u.opts.IDs.UID(0)
		gid, _ := u.opts.IDs.GID(0)
		var f *os.File
		if f, err = u.root.MkdirAll(p, 0o755, int(uid), int(gid)); err == nil {
			fd = int(f.Fd())
			// f's finaliser must not close fd: detach it.
			fd, err = unix.Dup(fd)
			f.Close()
		}
	}
	if err != nil {
		return -1, err
	}
	u.parentFd, u.parentPath = fd, p
	return fd, nil
}

// entryName turns a member name into a clean path relative to the root
// ("" for the root itself).
func (u *unpacker) entryName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	for strings.HasPrefix(n, "./") {
		n = strings.TrimLeft(n[2:], "/")
	}
	if n == "." {
		n = ""
	}
	if !u.prefixKnown {
		u.prefixKnown = true
		first, _, _ := strings.Cut(n, "/")
		u.stripPrefix = first == ChrootPrefix && !u.opts.KeepPrefix
	}
	if u.stripPrefix {
		if n == ChrootPrefix {
			n = ""
		} else if rest, ok := strings.CutPrefix(n, ChrootPrefix+"/"); ok {
			n = rest
		}
	}
	for _, s := range strings.Split(n, "/") {
		if s == ".." {
			return "", fmt.Errorf("member %q: %w", name, ErrUnsafePath)
		}
	}
	if n == "" {
		return "", nil
	}
	n = path.Clean(n)
	if n == "." {
		return "", nil
	}
	return n, nil
}

func (u *unpacker) owner(h *tar.Header) (int, int, error) {
	uid, gid := uint32(h.Uid), uint32(h.Gid)
	if h.Uid < 0 || h.Gid < 0 || int64(h.Uid) > 1<<32-1 || int64(h.Gid) > 1<<32-1 {
		return 0, 0, fmt.Errorf("member %q: owner %d:%d out of range", h.Name, h.Uid, h.Gid)
	}
	if u.opts.Owner != nil {
		uid, gid = u.opts.Owner.UID, u.opts.Owner.GID
	}
	hu, ok := u.opts.IDs.UID(uid)
	if !ok {
		return 0, 0, fmt.Errorf("member %q: uid %d is not mapped", h.Name, uid)
	}
	hg, ok := u.opts.IDs.GID(gid)
	if !ok {
		return 0, 0, fmt.Errorf("member %q: gid %d is not mapped", h.Name, gid)
	}
	return int(hu), int(hg), nil
}

func (u *unpacker) run(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("cannot read tarball: %w", err)
		}
		u.st.Entries++
		if u.st.Entries%256 == 0 {
			if err := u.ctx.Err(); err != nil {
				return err
			}
		}
		if err := u.entry(tr, h); err != nil {
			return err
		}
	}
	// Directory mtimes last: creating entries inside changed them.
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		fd, err := resolveNoSymlinks(u.root.fd, d.path, unix.O_DIRECTORY, false)
		if err != nil {
			return fmt.Errorf("cannot set mtime of %q: %w", d.path, err)
		}
		err = unix.UtimesNanoAt(fd, "", times(d.mtime), unix.AT_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("cannot set mtime of %q: %w", d.path, err)
		}
	}
	return nil
}

func times(t time.Time) []unix.Timespec {
	ts := unix.NsecToTimespec(t.UnixNano())
	return []unix.Timespec{ts, ts}
}

func (u *unpacker) entry(tr *tar.Reader, h *tar.Header) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeChar, tar.TypeBlock:
		u.st.SkippedDevices++
		return nil
	}
	name, err := u.entryName(h.Name)
	if err != nil {
		return err
	}
	uid, gid, err := u.owner(h)
	if err != nil {
		return err
	}
	mode := uint32(h.Mode) & 0o7777
	if name == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("member %q: the root must be a directory", h.Name)
		}
		u.st.Dirs++
		return u.dirMeta(u.root.fd, ".", h, uid, gid, mode, "")
	}
	dirPart, base := path.Split(name)
	pfd, err := u.parent(strings.TrimSuffix(dirPart, "/"))
	if err != nil {
		return fmt.Errorf("member %q: %w", h.Name, err)
	}
	switch h.Typeflag {
	case tar.TypeDir:
		u.st.Dirs++
		err := unix.Mkdirat(pfd, base, 0o700)
		if err == unix.EEXIST {
			var sb unix.Stat_t
			if err := unix.Fstatat(pfd, base, &sb, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("member %q: %w", h.Name, err)
			}
			if sb.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := u.remove(pfd, base); err != nil {
					return fmt.Errorf("member %q: %w", h.Name, err)
				}
				pfd, _ = u.parent(strings.TrimSuffix(dirPart, "/"))
				err = unix.Mkdirat(pfd, base, 0o700)
			} else {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("member %q: mkdir: %w", h.Name, err)
		}
		return u.dirMeta(pfd, base, h, uid, gid, mode, name)
	case tar.TypeReg, tar.TypeGNUSparse:
		u.st.Files++
		return u.file(tr, h, pfd, base, uid, gid, mode)
	case tar.TypeSymlink:
		u.st.Symlinks++
		err := u.replace(pfd, dirPart, base, func(p int) error { return unix.Symlinkat(h.Linkname, p, base) })
		if err != nil {
			return fmt.Errorf("member %q: symlink: %w", h.Name, err)
		}
		pfd, _ = u.parent(strings.TrimSuffix(dirPart, "/"))
		if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("member %q: lchown: %w", h.Name, err)
		}
		if err := unix.UtimesNanoAt(pfd, base, times(h.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("member %q: utimes: %w", h.Name, err)
		}
		return nil
	case tar.TypeLink:
		u.st.Hardlinks++
		target, err := u.entryName(h.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("member %q: bad hard link target %q: %v", h.Name, h.Linkname, err)
		}
		tdir, tbase := path.Split(target)
		tfd, err := resolveNoSymlinks(u.root.fd, strings.TrimSuffix(tdir, "/"), unix.O_DIRECTORY, false)
		if err != nil {
			return fmt.Errorf("member %q: hard link target %q: %w", h.Name, h.Linkname, err)
		}
		defer unix.Close(tfd)
		err = u.replace(pfd, dirPart, base, func(p int) error { return unix.Linkat(tfd, tbase, p, base, 0) })
		if err != nil {
			return fmt.Errorf("member %q: link to %q: %w", h.Name, h.Linkname, err)
		}
		return nil
	case tar.TypeFifo:
		u.st.Fifos++
		err := u.replace(pfd, dirPart, base, func(p int) error { return unix.Mknodat(p, base, unix.S_IFIFO|0o600, 0) })
		if err != nil {
			return fmt.Errorf("member %q: mkfifo: %w", h.Name, err)
		}
		pfd, _ = u.parent(strings.TrimSuffix(dirPart, "/"))
		fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("member %q: %w", h.Name, err)
		}
		defer unix.Close(fd)
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("member %q: chown: %w", h.Name, err)
		}
		err = withProcFd(fd, func(p string) error { return unix.Chmod(p, mode) })
		if err == nil {
			err = unix.UtimesNanoAt(fd, "", times(h.ModTime), unix.AT_EMPTY_PATH)
		}
		if err != nil {
			return fmt.Errorf("member %q: %w", h.Name, err)
		}
		return nil
	}
	if u.opts.Log != nil {
		fmt.Fprintf(u.opts.Log, "Skipped tar member %q of unsupported type %q.\n", h.Name, h.Typeflag)
	}
	return nil
}

// replace runs create in the parent; if the name exists it is removed
// first (as tar does) and create is tried once more.
func (u *unpacker) replace(pfd int, dirPart, base string, create func(int) error) error {
	err := create(pfd)
	if err != unix.EEXIST {
		return err
	}
	if err := u.remove(pfd, base); err != nil {
		return err
	}
	pfd, err = u.parent(strings.TrimSuffix(dirPart, "/"))
	if err != nil {
		return err
	}
	return create(pfd)
}

// remove unlinks base in the parent (an empty directory too) and drops the
// parent cache, which could otherwise name a replaced directory.
func (u *unpacker) remove(pfd int, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	p := u.parentPath
	u.dropParent()
	if _, perr := u.parent(p); perr != nil && err == nil {
		err = perr
	}
	return err
}

func (u *unpacker) dirMeta(pfd int, base string, h *tar.Header, uid, gid int, mode uint32, name string) error {
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("member %q: %w", h.Name, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("member %q: chown: %w", h.Name, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("member %q: chmod: %w", h.Name, err)
	}
	u.dirTimes = append(u.dirTimes, dirTime{path: name, mtime: h.ModTime})
	return nil
}

func (u *unpacker) file(tr *tar.Reader, h *tar.Header, pfd int, base string, uid, gid int, mode uint32) error {
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, mode&0o777)
	if err == unix.EEXIST {
		if err := u.remove(pfd, base); err != nil {
			return fmt.Errorf("member %q: %w", h.Name, err)
		}
		pfd = u.parentFd
		fd, err = unix.Openat(pfd, base, flags, mode&0o777)
	}
	if err != nil {
		return fmt.Errorf("member %q: create: %w", h.Name, err)
	}
	defer unix.Close(fd)
	// Runs of zeros become holes (lseek) rather than writes: Go's tar
	// reader expands sparse members, and a hostile one may claim a huge
	// size. The context is checked as the copy goes.
	var off int64
	hole := false
	for i := 0; ; i++ {
		n, rerr := io.ReadFull(tr, u.buf)
		if n > 0 {
			if n >= 4096 && bytes.Equal(u.buf[:n], zeros()[:n]) {
				if _, err := unix.Seek(fd, int64(n), io.SeekCurrent); err != nil {
					return fmt.Errorf("member %q: seek: %w", h.Name, err)
				}
				hole = true
			} else {
				for w := 0; w < n; {
					k, err := unix.Write(fd, u.buf[w:n])
					if err != nil {
						if err == unix.EINTR {
							continue
						}
						return fmt.Errorf("member %q: write: %w", h.Name, err)
					}
					w += k
				}
				hole = false
			}
			off += int64(n)
			u.st.Bytes += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			// ReadFull says ErrUnexpectedEOF for a short last chunk too:
			// only a short member is an error.
			if off != h.Size {
				return fmt.Errorf("member %q: %d of %d bytes: %w", h.Name, off, h.Size, io.ErrUnexpectedEOF)
			}
			break
		}
		if rerr != nil {
			return fmt.Errorf("member %q: %w", h.Name, rerr)
		}
		if i%64 == 63 {
			if err := u.ctx.Err(); err != nil {
				return err
			}
		}
	}
	if hole {
		if err := unix.Ftruncate(fd, off); err != nil {
			return fmt.Errorf("member %q: truncate: %w", h.Name, err)
		}
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("member %q: chown: %w", h.Name, err)
	}
	// chown cleared setuid/setgid, and the umask may have cut bits at
	// create: chmod only then (one syscall less per ordinary file).
	if mode&0o7000 != 0 || mode&u.umask != 0 {
		if err := unix.Fchmod(fd, mode); err != nil {
			return fmt.Errorf("member %q: chmod: %w", h.Name, err)
		}
	}
	if v, ok := h.PAXRecords["SCHILY.xattr."+CapsXattr]; ok {
		c, err := DecodeCaps([]byte(v))
		if err != nil {
			return fmt.Errorf("member %q: %w", h.Name, err)
		}
		raw := c.EncodeV2()
		if !u.opts.Privileged && u.opts.IDs.UIDs != nil {
			if raw, err = c.ForNamespace(u.opts.IDs.UIDs); err != nil {
				return fmt.Errorf("member %q: %w", h.Name, err)
			}
		}
		// After chown, which clears security.capability.
		if err := unix.Fsetxattr(fd, CapsXattr, raw, 0); err != nil {
			return fmt.Errorf("member %q: set file capabilities: %w", h.Name, err)
		}
		u.st.Caps++
	}
	if err := unix.UtimesNanoAt(fd, "", times(h.ModTime), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("member %q: utimes: %w", h.Name, err)
	}
	return nil
}

package vcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"golang.org/x/sys/unix"
)

// We write the worktree ourselves instead of using go-git's
// Worktree.Checkout: every path is created relative to the checkout
// directory with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so that no
// symlink (whether the tree made it or not) is ever followed and nothing
// outside the directory can be touched; files are written in parallel;
// and the index is built from what was written, so `git status` in the
// build is clean.

// resolveBeneath: never leave the root, never follow any symlink.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

type wtEntry struct {
	path string // slash-separated, relative
	mode filemode.FileMode
	hash plumbing.Hash
}

// validName refuses tree entry names git itself refuses to check out
// (verify_path): empty, ".", "..", ".git" in any case, or with a slash or NUL.
func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.EqualFold(n, ".git") &&
		!strings.ContainsAny(n, "/\x00")
}

// collect lists the tree depth-first, parents before children, refusing
// unsafe names and duplicate names (a symlink "a" and a tree "a" in the
// same tree would otherwise let "a/x" be written through the link).
func collect(repo *git.Repository, h plumbing.Hash, prefix string, out *[]wtEntry, depth int) error {
	if depth > 256 {
		return fmt.Errorf("tree nested too deeply at %q: %w", prefix, ErrUnsafePath)
	}
	t, err := object.GetTree(repo.Storer, h)
	if err != nil {
		return fmt.Errorf("cannot read tree %s: %w", h, err)
	}
	seen := make(map[string]bool, len(t.Entries))
	for _, e := range t.Entries {
		if !validName(e.Name) {
			return fmt.Errorf("refusing path %q: %w", path.Join(prefix, e.Name), ErrUnsafePath)
		}
		if seen[e.Name] {
			return fmt.Errorf("refusing duplicate path %q: %w", path.Join(prefix, e.Name), ErrUnsafePath)
		}
		seen[e.Name] = true
		p := e.Name
		if prefix != "" {
			p = prefix + "/" + e.Name
		}
		switch e.Mode {
		case filemode.Dir:
			*out = append(*out, wtEntry{p, e.Mode, e.Hash})
			if err := collect(repo, e.Hash, p, out, depth+1); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated, filemode.Symlink, filemode.Submodule:
			*out = append(*out, wtEntry{p, e.Mode, e.Hash})
		default:
			return fmt.Errorf("refusing %q with mode %o: %w", p, uint32(e.Mode), ErrUnsafePath)
		}
	}
	return nil
}

func splitParent(p string) (string, string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return ".", p
}

// openParent opens the directory holding rel, beneath root, following no link.
func openParent(root int, rel string) (int, string, error) {
	dir, base := splitParent(rel)
	fd, err := unix.Openat2(root, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
	if err != nil {
		return -1, "", fmt.Errorf("cannot open %q: %w", dir, unsafeIfLoop(err))
	}
	return fd, base, nil
}

// unsafeIfLoop marks the errors RESOLVE_* flags return for a symlink or an
// escape as ErrUnsafePath.
func unsafeIfLoop(err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %w", err, ErrUnsafePath)
	}
	return err
}

func statEntry(e wtEntry, st *unix.Stat_t) *index.Entry {
	return &index.Entry{
		Hash:       e.hash,
		Name:       e.path,
		Mode:       e.mode,
		CreatedAt:  time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
		ModifiedAt: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Dev:        uint32(st.Dev),
		Inode:      uint32(st.Ino),
		UID:        st.Uid,
		GID:        st.Gid,
		Size:       uint32(st.Size),
	}
}

// materialise writes commit c's tree into dir (which holds only .git) and
// the matching index; it returns the number of entries written.
//
// Directories are made first, in order; then files and symlinks are
// written by several workers, each reading objects through its own object
// store (go-git's is not safe for concurrent use), so that both inflating
// deltas and creating files, which the kernel makes costly, run in parallel.
func materialise(ctx context.Context, repo *git.Repository, c *object.Commit, dir string) (int, error) {
	var entries []wtEntry
	if err := collect(repo, c.TreeHash, "", &entries, 0); err != nil {
		return 0, err
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("cannot open %s: %w", dir, err)
	}
	defer unix.Close(root)

	slots := make([]*index.Entry, len(entries))
	var files []int
	for i, e := range entries {
		switch e.mode {
		case filemode.Dir, filemode.Submodule:
			pfd, base, err := openParent(root, e.path)
			if err != nil {
				return 0, err
			}
			err = unix.Mkdirat(pfd, base, 0o755)
			unix.Close(pfd)
			if err != nil {
				return 0, fmt.Errorf("cannot create directory %q: %w", e.path, err)
			}
			if e.mode == filemode.Submodule {
				// git's index records a gitlink with no stat data of interest.
				slots[i] = &index.Entry{Hash: e.hash, Name: e.path, Mode: e.mode}
			}
		default:
			files = append(files, i)
		}
	}

	workers := 1
	if len(files) >= 512 {
		// More workers than CPUs: creating a file mostly waits on the
		// filesystem (journal, inode allocation).
		workers = min(8, 2*runtime.GOMAXPROCS(0))
	}
	const batch = 64
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err })
		failed.Store(true)
	}
	gitDir := filepath.Join(dir, ".git")
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := repo
			if w > 0 {
				st := filesystem.NewStorageWithOptions(osfs.New(gitDir), cache.NewObjectLRU(32*cache.MiByte),
					filesystem.Options{KeepDescriptors: true})
				defer st.Close()
				var err error
				if r, err = git.Open(st, nil); err != nil {
					fail(fmt.Errorf("cannot open the repository: %w", err))
					return
				}
			}
			for !failed.Load() {
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				lo := int(next.Add(batch)) - batch
				if lo >= len(files) {
					return
				}
				for _, i := range files[lo:min(lo+batch, len(files))] {
					if err := writeEntry(r, root, entries[i], &slots[i]); err != nil {
						fail(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}

	idx := &index.Index{Version: 2}
	for _, s := range slots {
		if s != nil {
			idx.Entries = append(idx.Entries, s)
		}
	}
	sort.Slice(idx.Entries, func(i, j int) bool { return idx.Entries[i].Name < idx.Entries[j].Name })
	if err := repo.Storer.SetIndex(idx); err != nil {
		return 0, fmt.Errorf("cannot write the index: %w", err)
	}
	return len(entries), nil
}

// writeEntry writes one file or symlink from its blob.
func writeEntry(r *git.Repository, root int, e wtEntry, slot **index.Entry) error {
	b, err := r.BlobObject(e.hash)
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", e.path, err)
	}
	if e.mode == filemode.Symlink {
		target, err := readAll(b, 1<<16)
		if err != nil {
			return fmt.Errorf("cannot read %q: %w", e.path, err)
		}
		return writeSymlink(root, e, string(target), slot)
	}
	rd, err := b.Reader()
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", e.path, err)
	}
	defer rd.Close()
	return writeFile(root, e, rd, slot)
}

var (
	umaskOnce sync.Once
	umask     uint32
)

// processUmask reads the umask without changing it (umask(2) would race
// with other goroutines creating files); unknown means "assume the worst".
func processUmask() uint32 {
	umaskOnce.Do(func() {
		umask = 0o777
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				var u uint32
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%o", &u); err == nil {
					umask = u
				}
			}
		}
	})
	return umask
}

func readAll(b *object.Blob, limit int64) ([]byte, error) {
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("object larger than %d bytes", limit)
	}
	return data, nil
}

// writeFile creates the regular file e (it must not exist) beneath root
// from rd, and records its index entry in slot.
func writeFile(root int, e wtEntry, rd io.Reader, slot **index.Entry) error {
	perm := uint32(0o644)
	if e.mode == filemode.Executable {
		perm = 0o755
	}
	fd, err := unix.Openat2(root, e.path, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    uint64(perm),
		Resolve: resolveBeneath,
	})
	if err != nil {
		return fmt.Errorf("cannot create %q: %w", e.path, unsafeIfLoop(err))
	}
	f := os.NewFile(uintptr(fd), e.path)
	defer f.Close()
	_, err = io.Copy(f, rd)
	if err == nil && perm&processUmask() != 0 {
		// The umask must not decide what the build sees.
		err = unix.Fchmod(fd, perm)
	}
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(fd, &st)
	}
	if err != nil {
		return fmt.Errorf("cannot write %q: %w", e.path, err)
	}
	*slot = statEntry(e, &st)
	return nil
}

func writeSymlink(root int, e wtEntry, target string, slot **index.Entry) error {
	pfd, base, err := openParent(root, e.path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return fmt.Errorf("cannot create symlink %q: %w", e.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("cannot stat symlink %q: %w", e.path, err)
	}
	*slot = statEntry(e, &st)
	return nil
}

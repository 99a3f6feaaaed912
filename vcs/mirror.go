package vcs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/sys/unix"
)

// The mirror cache: MirrorDir/<key>.git is a bare repository with the
// remote's branches and tags (refs/heads/*, refs/tags/*), MirrorDir/<key>.lock
// its flock(2) lock, whose mtime is the last use (for PruneMirrors). The
// key hashes the URL without credentials, so that builds given different
// tokens for one repository share it; every use still fetches from the
// server with the build's own credentials first, so a build only ever gets
// what the server let it see.

func mirrorKey(repoURL string) string {
	sum := sha256.Sum256([]byte(redactURL(repoURL)))
	return hex.EncodeToString(sum[:16])
}

// lockFile takes an exclusive flock on path, waiting while ctx allows.
// With wait false it fails at once if the lock is held.
func lockFile(ctx context.Context, path string, wait bool, waiting func()) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open mirror lock: %w", err)
	}
	for first := true; ; first = false {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || !wait {
			f.Close()
			return nil, fmt.Errorf("cannot lock mirror: %w", err)
		}
		if first && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the mirror lock: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// maxMirrorPacks bounds the packs a mirror accumulates (one per update);
// a variable for tests.
var maxMirrorPacks = 50

// mirrorRefSpecs make a mirror of branches and tags (pruned).
var mirrorRefSpecs = []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// fromMirror updates the mirror of repoURL, then makes dir/.git from it:
// the mirror's packs hard-linked (copied across filesystems) and its refs
// as origin's. The returned repository is open on dir/.git.
func (r *run) fromMirror(ctx context.Context, repoURL string, w want, also plumbing.Hash, dir string) (*git.Repository, func(), error) {
	if err := os.MkdirAll(r.opts.MirrorDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("cannot create mirror directory: %w", err)
	}
	key := mirrorKey(repoURL)
	lockPath := filepath.Join(r.opts.MirrorDir, key+".lock")
	unlock, err := lockFile(ctx, lockPath, true, func() { r.logf("Waiting for another build using the mirror of %s", redactURL(repoURL)) })
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	now := time.Now()
	_ = os.Chtimes(lockPath, now, now)

	mpath := filepath.Join(r.opts.MirrorDir, key+".git")
	if packs, _ := filepath.Glob(filepath.Join(mpath, "objects", "pack", "*.pack")); len(packs) > maxMirrorPacks {
		// Every update adds a pack, and each pack slows every object
		// lookup: start afresh with one pack, at the cost of one full fetch.
		r.logf("The mirror of %s has %d packs; refetching it whole", redactURL(repoURL), len(packs))
		if err := os.RemoveAll(mpath); err != nil {
			return nil, nil, fmt.Errorf("cannot remove mirror: %w", err)
		}
	}
	mrepo, closeMirror, fresh, err := openMirror(mpath)
	if err != nil {
		r.logf("Cannot open the mirror of %s (%v); recreating it", redactURL(repoURL), err)
		if rmErr := os.RemoveAll(mpath); rmErr != nil {
			return nil, nil, fmt.Errorf("cannot remove damaged mirror: %w", rmErr)
		}
		if mrepo, closeMirror, fresh, err = openMirror(mpath); err != nil {
			return nil, nil, err
		}
	}
	defer func() { closeMirror() }()
	if fresh {
		r.logf("Fetching %s of %s into a new mirror", w, redactURL(repoURL))
	} else {
		r.logf("Updating the mirror of %s for %s", redactURL(repoURL), w)
	}
	err = r.fetch(ctx, mrepo, repoURL, git.FetchOptions{RefSpecs: mirrorRefSpecs, Prune: true})
	if err != nil && !fresh && classify(err) == nil && ctx.Err() == nil {
		// Neither the network nor the server: the mirror itself may be
		// damaged. Start it again once.
		r.logf("The mirror of %s looks damaged (%v); recreating it", redactURL(repoURL), err)
		closeMirror()
		if rmErr := os.RemoveAll(mpath); rmErr != nil {
			return nil, nil, fmt.Errorf("cannot remove damaged mirror: %w", rmErr)
		}
		if mrepo, closeMirror, _, err = openMirror(mpath); err != nil {
			return nil, nil, err
		}
		err = r.fetch(ctx, mrepo, repoURL, git.FetchOptions{RefSpecs: mirrorRefSpecs, Prune: true})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot fetch %s from %s: %w", w, redactURL(repoURL), err)
	}
	if w.kind == kindCommit {
		if err := r.ensureCommit(ctx, mrepo, repoURL, w.hash); err != nil {
			return nil, nil, err
		}
	}

	// The checkout's repository: link the objects, then copy the refs.
	gitDir := filepath.Join(dir, ".git")
	if err := linkObjects(filepath.Join(mpath, "objects"), filepath.Join(gitDir, "objects")); err != nil {
		return nil, nil, fmt.Errorf("cannot copy objects from the mirror: %w", err)
	}
	repo, st, err := initCheckoutRepo(dir, repoURL)
	if err != nil {
		return nil, nil, err
	}
	if err := copyRefs(mrepo, gitDir); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("cannot copy refs from the mirror: %w", err)
	}
	return repo, func() { st.Close() }, nil
}

// openMirror opens or creates the bare mirror at path.
func openMirror(path string) (*git.Repository, func(), bool, error) {
	st := openStorage(path)
	repo, err := git.Open(st, nil)
	fresh := false
	if errors.Is(err, git.ErrRepositoryNotExists) {
		fresh = true
		repo, err = git.Init(st, nil)
	}
	if err != nil {
		st.Close()
		return nil, nil, false, fmt.Errorf("cannot open mirror %s: %w", path, err)
	}
	return repo, func() { st.Close() }, fresh, nil
}

// linkObjects hard-links (or copies, across filesystems) the object files
// of src into dst. Pack files never change once written, so sharing them
// is safe; the checkout keeps working if the mirror is pruned.
func linkObjects(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel == "info" {
				return filepath.SkipDir // alternates would point at the host
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || strings.HasSuffix(p, ".lock") || strings.HasPrefix(d.Name(), "tmp") {
			return nil
		}
		target := filepath.Join(dst, rel)
		if err := os.Link(p, target); err == nil || errors.Is(err, os.ErrExist) {
			return nil
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyRefs writes the mirror's branches as refs/remotes/origin/* and its
// tags as refs/tags/* into a packed-refs file (one file, however many tags).
func copyRefs(mrepo *git.Repository, gitDir string) error {
	iter, err := mrepo.Storer.IterReferences()
	if err != nil {
		return err
	}
	var lines []string
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference {
			return nil
		}
		switch {
		case ref.Name().IsBranch():
			lines = append(lines, ref.Hash().String()+" "+plumbing.NewRemoteReferenceName("origin", ref.Name().Short()).String())
		case ref.Name().IsTag():
			lines = append(lines, ref.Hash().String()+" "+ref.Name().String())
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][41:] < lines[j][41:] })
	content := "# pack-refs with: sorted \n" + strings.Join(lines, "\n")
	if len(lines) > 0 {
		content += "\n"
	}
	return os.WriteFile(filepath.Join(gitDir, "packed-refs"), []byte(content), 0o644)
}

// PruneMirrors deletes the least recently used mirrors in dir until the
// mirrors there take at most maxBytes. A mirror in use is skipped.
func PruneMirrors(dir string, maxBytes int64) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot list mirrors: %w", err)
	}
	type mirror struct {
		key  string
		size int64
		used time.Time
	}
	var ms []mirror
	var total int64
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".git") {
			continue
		}
		key := strings.TrimSuffix(e.Name(), ".git")
		m := mirror{key: key, size: dirSize(filepath.Join(dir, e.Name()))}
		if fi, err := os.Stat(filepath.Join(dir, key+".lock")); err == nil {
			m.used = fi.ModTime()
		} else if fi, err := e.Info(); err == nil {
			m.used = fi.ModTime()
		}
		ms = append(ms, m)
		total += m.size
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].used.Before(ms[j].used) })
	var errs []error
	for _, m := range ms {
		if total <= maxBytes {
			break
		}
		unlock, err := lockFile(context.Background(), filepath.Join(dir, m.key+".lock"), false, nil)
		if err != nil {
			continue // in use
		}
		if err := os.RemoveAll(filepath.Join(dir, m.key+".git")); err != nil {
			errs = append(errs, fmt.Errorf("cannot remove mirror %s: %w", m.key, err))
		} else {
			total -= m.size
		}
		unlock()
	}
	return errors.Join(errs...)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

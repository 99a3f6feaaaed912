package builders

// Result gathering: results stream from the target straight into the file
// cache, regular files only, within the builder's size limits.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// errNotRegular: a result path that is not a regular file (a FIFO, a
// device, a socket, a directory or a symlink) is never opened.
var errNotRegular = errors.New("not a regular file")

// AddWaitingFileFromTarget streams a result from the target straight into
// the file cache (no temporary copy), under its base name.
//
// Only a regular file is ever opened: the path is lstat'ed first, because
// opening a FIFO blocks until someone writes to it (in LXD's file API as in
// any plain open), and a device could stream for ever. A file over
// [limits] result_file_bytes by its apparent size (a sparse file counts in
// full) is refused before a byte is read. The backends' CopyOut checks the
// type of what it opens again, as a process left in the build may swap the
// file meanwhile; and whatever a backend does, the copy ends when ctx does.
func (b *ContainerBuild) AddWaitingFileFromTarget(ctx context.Context, p string) error {
	_, err := b.AddWaitingFileFromTargetAs(ctx, p, path.Base(p))
	return err
}

// AddWaitingFileFromTargetAs is AddWaitingFileFromTarget under the file
// cache name name (the ci manager's "<job>:<index>/<file>"), returning
// the file's SHA-1.
func (b *ContainerBuild) AddWaitingFileFromTargetAs(ctx context.Context, p, name string) (string, error) {
	info, err := b.Target.Stat(ctx, p)
	if err != nil {
		return "", fmt.Errorf("cannot store %s: %w", p, err)
	}
	if !info.Mode.IsRegular() {
		return "", fmt.Errorf("cannot store %s: %w", p, errNotRegular)
	}
	if lim := b.Env.Config.ResultFileBytes; lim > 0 && info.Size > lim {
		b.Logf("Result %s is %d bytes, over this builder's limit of %d bytes ([limits] result_file_bytes); it is not stored.", p, info.Size, lim)
		return "", fmt.Errorf("cannot store %s: %w: %d bytes, [limits] result_file_bytes is %d", p, ErrResultTooLarge, info.Size, lim)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr, pw := io.Pipe()
	// A copy that delivers nothing for ResultStallTimeout is stopped: a
	// process left in the build may have swapped the file for a FIFO
	// after the lstat, and a backend's open of it blocks.
	stall := time.AfterFunc(ResultStallTimeout, func() {
		cancel(fmt.Errorf("no data for %s", ResultStallTimeout))
	})
	defer stall.Stop()
	go func() {
		pw.CloseWithError(b.Target.CopyOut(ctx, p, stallWriter{pw, stall}))
	}()
	// A backend blocked in CopyOut despite ctx must not hold the store.
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(context.Cause(ctx)) })
	defer stop()
	sum, err := b.Env.AddWaitingFile(name, pr)
	pr.CloseWithError(errors.New("result stored"))
	if err != nil {
		return "", fmt.Errorf("cannot store %s: %w", p, err)
	}
	return sum, nil
}

// ResultStallTimeout bounds how long copying a result out of a target may
// go without a byte (a variable for tests).
var ResultStallTimeout = 5 * time.Minute

// stallWriter re-arms the stall timer on every write.
type stallWriter struct {
	w     io.Writer
	timer *time.Timer
}

func (s stallWriter) Write(p []byte) (int, error) {
	s.timer.Reset(ResultStallTimeout)
	return s.w.Write(p)
}

// GatherResults adds every regular file in dir (sorted, symlinks skipped as
// the reference does) whose name match accepts, then the extra paths that
// exist. A failure is the reference's "Failed to gather results" →
// PACKAGEFAIL; so is a result over the builder's size limits.
func (b *ContainerBuild) GatherResults(ctx context.Context, dir string, match func(name string) bool, extra ...string) *Failure {
	add := func(p string) error {
		err := b.AddWaitingFileFromTarget(ctx, p)
		if errors.Is(err, errNotRegular) {
			// Listed as a regular file, something else by the time it
			// was to be read: skipped, as it would have been.
			b.Logf("Not gathering %s: not a regular file", p)
			return nil
		}
		return err
	}
	err := func() error {
		if _, err := b.Target.Stat(ctx, dir); err == nil {
			entries, err := b.Target.ListDir(ctx, dir)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.Mode&fs.ModeSymlink != 0 || !match(e.Name) {
					continue
				}
				if !e.Mode.IsRegular() {
					b.Logf("Not gathering %s: not a regular file", path.Join(dir, e.Name))
					continue
				}
				if err := add(path.Join(dir, e.Name)); err != nil {
					return err
				}
			}
		} else if !errors.Is(err, target.ErrNotExist) {
			return err
		}
		for _, p := range extra {
			info, err := b.Target.Stat(ctx, p)
			if errors.Is(err, target.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if !info.Mode.IsRegular() {
				b.Logf("Not gathering %s: not a regular file", p)
				continue
			}
			if err := add(p); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
	}
	return nil
}

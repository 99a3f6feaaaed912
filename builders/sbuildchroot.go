package builders

// The sbuild chroot cache: each chroot tarball from the file cache is
// repacked once (rootfs.Repack) into <state_dir>/sbuild-chroots/<sha1>.tar
// and reused by every build on it, as the LXD target caches its images.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/rootfs"
)

var sha1Name = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{40}$`) })

func init() { RegisterSweeper("sbuild-chroots", sweepSbuildChroots) }

// sweepSbuildChroots removes the temporary file of a repack that a killed
// agent did not finish (the cache itself holds only renamed, whole files).
func sweepSbuildChroots(_ context.Context, stateDir, _ string) error {
	if stateDir == "" {
		return nil
	}
	tmps, err := filepath.Glob(filepath.Join(SbuildChrootDir(stateDir), ".*.tmp"))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range tmps {
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SbuildChrootDir is where repacked chroots are kept.
func SbuildChrootDir(stateDir string) string { return filepath.Join(stateDir, "sbuild-chroots") }

// ensureSbuildChroot returns the repacked tarball of img, making it if
// needed. Concurrent callers for the same chroot wait for one repack.
func ensureSbuildChroot(ctx context.Context, cfg ManagerConfig, img target.Image, log io.Writer) (string, error) {
	if !sha1Name().MatchString(img.SHA1) {
		return "", fmt.Errorf("cannot use chroot %q: not a SHA-1", img.SHA1)
	}
	if cfg.StateDir == "" {
		return "", fmt.Errorf("cannot repack the chroot: no state directory configured")
	}
	dir := SbuildChrootDir(cfg.StateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cannot create %s: %w", dir, err)
	}
	// Readable by the build user: sbuild reads the tarball as that user.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, img.SHA1+".tar")
	lock, err := os.OpenFile(filepath.Join(dir, img.SHA1+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("cannot lock the chroot cache: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("cannot lock the chroot cache: %w", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
		now := time.Now()
		_ = os.Chtimes(out, now, now) // last use, for pruning
		return out, nil
	}
	in, err := os.Open(img.Path)
	if err != nil {
		return "", fmt.Errorf("cannot open the chroot: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "."+img.SHA1+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("cannot repack the chroot: %w", err)
	}
	defer os.Remove(tmp.Name())
	start := time.Now()
	fmt.Fprintf(log, "Repacking chroot %s for sbuild\n", img.SHA1)
	st, err := rootfs.Repack(ctx, in, tmp, rootfs.RepackOptions{ExtraDirs: []string{SbuildSetupMount}})
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("cannot repack the chroot (is it a chroot tarball?): %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("cannot repack the chroot: %w", err)
	}
	fmt.Fprintf(log, "Repacked %d entries (%d device nodes left out) in %.1fs\n", st.Entries, st.DevicesDropped, time.Since(start).Seconds())
	return out, nil
}

// pruneSbuildChroots removes repacked chroots unused for ImageMaxAge and
// the least recently used past ImageMaxCount. Errors are not the build's.
func pruneSbuildChroots(cfg ManagerConfig) {
	if cfg.StateDir == "" {
		return
	}
	dir := SbuildChrootDir(cfg.StateDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type cached struct {
		path string
		used time.Time
	}
	var all []cached
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".tar") || !sha1Name().MatchString(strings.TrimSuffix(name, ".tar")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, cached{filepath.Join(dir, name), info.ModTime()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.After(all[j].used) })
	for i, c := range all {
		old := cfg.ImageMaxAge > 0 && time.Since(c.used) > cfg.ImageMaxAge
		over := cfg.ImageMaxCount > 0 && i >= cfg.ImageMaxCount
		if old || over {
			os.Remove(c.path)
			os.Remove(strings.TrimSuffix(c.path, ".tar") + ".lock")
		}
	}
}

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/buildd-agent/buildd-agent/builders"
)

// reopenBuildLog opens the log of a build restored in WAITING without
// truncating it: the log was flushed when the build finished, and is
// served again as /filecache/buildlog until clean(). Its tail is reloaded
// so that status() would answer as before.
func reopenBuildLog(path string, maxBytes int64) (*BuildLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open build log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot open build log: %w", err)
	}
	l := &BuildLog{path: path, maxBytes: maxBytes, f: f, written: fi.Size()}
	if maxBytes > 0 && l.written >= maxBytes {
		l.truncated = true
	}
	if r, err := os.Open(path); err == nil {
		off := max(fi.Size()-TailSize, 0)
		buf := make([]byte, fi.Size()-off)
		n, _ := r.ReadAt(buf, off)
		r.Close()
		l.tail.write(buf[:n])
		if n > 0 {
			l.lastByte = buf[n-1]
		}
	}
	return l, nil
}

// Sweep removes what builds left when the agent was killed in the middle
// of one: every <build_home>/build-* directory (chroot trees, LXD build
// directories), the host work directories under <state_dir>/work, and
// whatever the registered builders.Sweeper functions own. It must run
// before the agent accepts a build(): at that point no build runs, so all
// of it is stale, including the home of a build restored in WAITING (its
// results are in the file cache). The LXD backend removes its labelled
// containers itself when it starts; a chroot build's helper processes
// die with the agent (parent-death signal) and its mounts with their
// private mount namespace, but a mount still visible here under a swept
// tree is detached first, and a tree that still has one is left alone
// (removing through a bind mount would delete host files).
func (a *Agent) Sweep(ctx context.Context) error {
	start := time.Now()
	var errs []error
	removed := 0
	b := a.cfg.Builder
	dirs := []string{b.BuildHome}
	if b.StateDir != "" {
		dirs = append(dirs, filepath.Join(b.StateDir, "work"))
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot sweep %s: %w", dir, err))
			continue
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "build-") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if err := removeTree(p); err != nil {
				errs = append(errs, err)
				continue
			}
			removed++
			a.logger.Info("swept what a killed build left", "path", p)
		}
	}
	for _, s := range builders.Sweepers() {
		if err := s.Sweep(ctx, b.StateDir, b.BuildHome); err != nil {
			errs = append(errs, fmt.Errorf("sweeper %s: %w", s.Name, err))
		}
	}
	removeStaleJournalTemps(b.StateDir)
	if removed > 0 {
		a.logger.Info("start-up sweep done", "removed", removed, "duration", time.Since(start).String())
	}
	return errors.Join(errs...)
}

// removeTree removes dir after detaching any mount under it.
func removeTree(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return fmt.Errorf("cannot sweep %s: %w", dir, err)
	}
	if len(mounts) > 0 {
		// Deepest first.
		sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
		for _, m := range mounts {
			unix.Unmount(m, unix.MNT_DETACH)
		}
		if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
			return fmt.Errorf("cannot sweep %s: still mounted under it: %s", dir, strings.Join(left, ", "))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cannot sweep %s: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir in this mount
// namespace (/proc/self/mountinfo, field 5, octal escapes decoded).
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountsUnder(f, filepath.Clean(dir))
}

func parseMountsUnder(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountPath decodes mountinfo's \ooo escapes (space, tab, newline,
// backslash).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

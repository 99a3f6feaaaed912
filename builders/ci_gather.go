package builders

// The ci manager's files: gathering a job's outputs (ci.py's
// gatherResults), the secrets file, appending to a file in the target.
// Everything a job left under /build/output is the build's, so hostile:
// only regular files are read, never through a symlink, and every name
// in the file cache is the job id and a base name.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// CIOutputFileName names a job's output file in the file cache: the
// reference's "<job>:<index>/<file>", which buildd-manager downloads. The
// local command (`buildd-agent build ci`), whose output directory takes
// plain file names only, sets it to a flat name.
var CIOutputFileName = func(jobID, base string) string { return jobID + "/" + base }

// ciMaxDepth bounds how deep gathering walks a job's files/ (lpci copies
// the job's output paths, which are never this deep).
const ciMaxDepth = 32

// gatherJob adds the job's log, properties and every regular file under
// files/ to the file cache as "<id>.log", "<id>.properties" and
// "<id>/<base name>" (a base name found twice: the later path in sorted
// order wins, as in the reference), and returns the job's status entry
// ({log, properties, output: {base name: sha1}}, keys only when present).
// A failure is "Failed to gather results: …" → PACKAGEFAIL.
func (m *CIManager) gatherJob(ctx context.Context, b *ContainerBuild, job CIJob) (map[string]any, *Failure) {
	id := job.ID()
	dir := ciJobDir(job)
	entry := map[string]any{}
	// The job (as buildd) owns /build/output: it may have swapped its
	// directories for symlinks, which would lead the reads elsewhere.
	for _, d := range []string{ciOutputDir, path.Dir(dir), dir} {
		ok, err := ciRealDir(ctx, b, d)
		if err != nil {
			return entry, b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
		}
		if !ok {
			return entry, nil
		}
	}
	err := func() error {
		for _, item := range []string{"log", "properties"} {
			sum, ok, err := ciGatherFile(ctx, b, path.Join(dir, item), id+"."+item)
			if err != nil {
				return err
			}
			if ok {
				entry[item] = sum
			}
		}
		filesDir := path.Join(dir, "files")
		files, err := ciListFiles(ctx, b, filesDir)
		if err != nil {
			return err
		}
		output := map[string]any{}
		for _, rel := range files {
			base := path.Base(rel)
			sum, ok, err := ciGatherFile(ctx, b, path.Join(filesDir, rel), CIOutputFileName(id, base))
			if err != nil {
				return err
			}
			if ok {
				output[base] = sum
			}
		}
		if len(output) > 0 {
			entry["output"] = output
		}
		return nil
	}()
	if err != nil {
		return entry, b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
	}
	return entry, nil
}

// ciGatherFile stores the file at p as name if it is a regular file; ok is
// false when it is missing or something else (logged).
func ciGatherFile(ctx context.Context, b *ContainerBuild, p, name string) (sum string, ok bool, err error) {
	info, err := b.Target.Stat(ctx, p)
	if errors.Is(err, target.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if !info.Mode.IsRegular() {
		b.Logf("Not gathering %s: not a regular file", p)
		return "", false, nil
	}
	sum, err = b.AddWaitingFileFromTargetAs(ctx, p, name)
	if errors.Is(err, errNotRegular) {
		// Swapped since the lstat.
		b.Logf("Not gathering %s: not a regular file", p)
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return sum, true, nil
}

// ciListFiles lists the regular files under dir (relative paths, sorted
// as strings like the reference's sorted(find …)), walking directories
// without following symlinks. Symlinks are skipped as the reference
// skips them; other non-regular files are skipped and logged (the
// reference would try to copy a FIFO and hang). A missing dir has none.
func ciListFiles(ctx context.Context, b *ContainerBuild, dir string) ([]string, error) {
	if ok, err := ciRealDir(ctx, b, dir); err != nil || !ok {
		return nil, err
	}
	var out []string
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		entries, err := b.Target.ListDir(ctx, path.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsRune(e.Name, '/') {
				return fmt.Errorf("listing %s gave the name %q", path.Join(dir, rel), e.Name)
			}
			r := path.Join(rel, e.Name)
			switch {
			case e.Mode&fs.ModeSymlink != 0:
			case e.Mode.IsDir():
				if depth >= ciMaxDepth {
					b.Logf("Not gathering under %s: more than %d directories deep", path.Join(dir, r), ciMaxDepth)
					continue
				}
				if err := walk(r, depth+1); err != nil {
					return err
				}
			case e.Mode.IsRegular():
				out = append(out, r)
			default:
				b.Logf("Not gathering %s: not a regular file", path.Join(dir, r))
			}
		}
		return nil
	}
	if err := walk("", 0); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

// ciRealDir reports whether p is a directory, not a symlink to one; a
// missing p is not (and is not logged), anything else is logged.
func ciRealDir(ctx context.Context, b *ContainerBuild, p string) (bool, error) {
	info, err := b.Target.Stat(ctx, p)
	switch {
	case errors.Is(err, target.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !info.Mode.IsDir():
		b.Logf("Not gathering under %s: not a directory", p)
		return false, nil
	}
	return true, nil
}

// ciSecretsYAML is the secrets as YAML for lpci: keys sorted, as
// yaml.dump sorts them, every scalar double-quoted (always valid YAML,
// whatever a value holds; the reference lets PyYAML pick a style).
func ciSecretsYAML(secrets map[string]string) string {
	if len(secrets) == 0 {
		return "{}\n"
	}
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		sb.WriteString(yamlDoubleQuoted(k))
		sb.WriteString(": ")
		sb.WriteString(yamlDoubleQuoted(secrets[k]))
		sb.WriteByte('\n')
	}
	return sb.String()
}

// yamlDoubleQuoted quotes s as a YAML double-quoted scalar with only
// printable ASCII left as is: YAML 1.1 readers (PyYAML) take NEL and the
// Unicode line separators in a quoted scalar for line breaks, and read
// each \u escape alone (so characters above the BMP get \U).
func yamlDoubleQuoted(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r >= 0x20 && r < 0x7f:
			sb.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			fmt.Fprintf(&sb, `\U%08x`, r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// ciAppendFileMax bounds a file appendFile reads back (a configuration file).
const ciAppendFileMax = 16 << 20

// ciAppendFile appends to a file in the target as the reference's
// backend.open(path, mode="a"): the file is read back (a regular file
// only), extended and written again owned by root with its mode kept
// (0644 for a new one).
func ciAppendFile(b *ContainerBuild) func(ctx context.Context, p string, data []byte) error {
	return func(ctx context.Context, p string, data []byte) error {
		var buf bytes.Buffer
		mode := fs.FileMode(0o644)
		info, err := b.Target.Stat(ctx, p)
		switch {
		case err == nil:
			if !info.Mode.IsRegular() {
				return fmt.Errorf("cannot append to %s: %w", p, errNotRegular)
			}
			if info.Size > ciAppendFileMax {
				return fmt.Errorf("cannot append to %s: it is %d bytes", p, info.Size)
			}
			if err := b.Target.CopyOut(ctx, p, &limitedBuffer{buf: &buf, left: ciAppendFileMax}); err != nil {
				return fmt.Errorf("cannot read %s: %w", p, err)
			}
			mode = info.Mode.Perm()
		case errors.Is(err, target.ErrNotExist):
		default:
			return fmt.Errorf("cannot append to %s: %w", p, err)
		}
		buf.Write(data)
		if err := b.Target.CopyIn(ctx, &buf, p, 0, 0, mode); err != nil {
			return fmt.Errorf("cannot write %s: %w", p, err)
		}
		return nil
	}
}

// limitedBuffer fails a write past its limit.
type limitedBuffer struct {
	buf  *bytes.Buffer
	left int64
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, io.ErrShortWrite
	}
	l.left -= int64(len(p))
	return l.buf.Write(p)
}

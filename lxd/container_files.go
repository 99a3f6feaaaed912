package lxd

// The container's files: LXD's file API (push, pull, stat by type) for
// CopyIn, CopyOut, Stat and ListDir, and the checks that keep each path
// inside the container.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	lxdclient "github.com/canonical/lxd/client"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// fileType asks LXD what is at p: "file", "directory", "symlink" or "" when
// nothing is there.
func (c *Container) fileType(p string) (string, error) {
	rc, resp, err := c.h.srv.GetInstanceFile(c.name, p)
	if isNotFound(err) || (err != nil && strings.Contains(err.Error(), "no such file")) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot inspect %q in container %q: %w", p, c.name, err)
	}
	if rc != nil {
		rc.Close()
	}
	return resp.Type, nil
}

// readFile reads a regular file; a symlink is refused.
func (c *Container) readFile(p string) ([]byte, error) {
	var b bytes.Buffer
	if err := c.copyOut(p, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mkdirAll creates p and its missing parents (root-owned, 0755).
func (c *Container) mkdirAll(p string) error {
	if p == "/" || p == "." {
		return nil
	}
	t, err := c.fileType(p)
	if err != nil {
		return err
	}
	switch t {
	case "directory":
		return nil
	case "":
	default:
		return fmt.Errorf("cannot create directory %q in container %q: a %s is in the way", p, c.name, t)
	}
	if err := c.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	err = c.h.srv.CreateInstanceFile(c.name, p, lxdclient.InstanceFileArgs{Type: "directory", UID: 0, GID: 0, Mode: 0o755})
	if err != nil && !isConflict(err) {
		return fmt.Errorf("cannot create directory %q in container %q: %w", p, c.name, err)
	}
	return nil
}

// replaceEntry removes a symlink or file at p, so that writing p never
// writes through a link the image put there.
func (c *Container) replaceEntry(p string) error {
	t, err := c.fileType(p)
	if err != nil {
		return err
	}
	switch t {
	case "":
		return nil
	case "directory":
		return fmt.Errorf("cannot replace %q in container %q: it is a directory", p, c.name)
	}
	if err := c.h.srv.DeleteInstanceFile(c.name, p); err != nil && !isNotFound(err) {
		return fmt.Errorf("cannot replace %q in container %q: %w", p, c.name, err)
	}
	return nil
}

// unixMode converts a Go file mode's permission and special bits to the
// numeric mode LXD's file API takes.
func unixMode(m fs.FileMode) int {
	u := int(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// readSeeker adapts a plain reader to the client's ReadSeeker field: the
// client only reads the body, never seeks.
type readSeeker struct{ io.Reader }

func (readSeeker) Seek(int64, int) (int64, error) {
	return 0, errors.New("cannot seek a streamed file")
}

func (c *Container) push(p string, r io.Reader, uid, gid int, mode fs.FileMode) error {
	if err := c.replaceEntry(p); err != nil {
		return err
	}
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		rs = readSeeker{r}
	}
	err := c.h.srv.CreateInstanceFile(c.name, p, lxdclient.InstanceFileArgs{
		Content:   rs,
		UID:       int64(uid),
		GID:       int64(gid),
		Mode:      unixMode(mode),
		Type:      "file",
		WriteMode: "overwrite",
	})
	if err != nil {
		return fmt.Errorf("cannot push %q into container %q: %w", p, c.name, err)
	}
	return nil
}

func checkPath(p string) error {
	if !path.IsAbs(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("invalid path %q: not absolute", p)
	}
	return nil
}

// CopyIn writes r to p in the container with the given owner and mode,
// replacing what is there (a symlink is replaced, never written through).
func (c *Container) CopyIn(ctx context.Context, r io.Reader, p string, uid, gid int, mode fs.FileMode) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return c.push(path.Clean(p), r, uid, gid, mode)
}

// CopyOut streams the regular file at p out of the container; a symlink is
// refused (target.ErrSymlink).
func (c *Container) CopyOut(ctx context.Context, p string, w io.Writer) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return c.copyOut(path.Clean(p), w)
}

func (c *Container) copyOut(p string, w io.Writer) error {
	rc, resp, err := c.h.srv.GetInstanceFile(c.name, p)
	if isNotFound(err) || (err != nil && strings.Contains(err.Error(), "no such file")) {
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, target.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, err)
	}
	defer rc.Close()
	switch resp.Type {
	case "file":
	case "symlink":
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, target.ErrSymlink)
	default:
		return fmt.Errorf("cannot pull %q from container %q: it is a %s", p, c.name, resp.Type)
	}
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("cannot pull %q from container %q: %w", p, c.name, err)
	}
	return nil
}

// Stat lstats p in the container.
func (c *Container) Stat(ctx context.Context, p string) (target.FileInfo, error) {
	if err := checkPath(p); err != nil {
		return target.FileInfo{}, err
	}
	p = path.Clean(p)
	out, err := c.find(ctx, p, `[ -e "$1" ] || [ -L "$1" ] || exit 3
exec find "$1" -maxdepth 0 -printf '%y %m %s %f\0'`)
	if err != nil {
		return target.FileInfo{}, err
	}
	infos, err := parseFindOutput(out)
	if err != nil || len(infos) != 1 {
		return target.FileInfo{}, fmt.Errorf("cannot stat %q in container %q: unexpected answer %q", p, c.name, out)
	}
	infos[0].Name = path.Base(p)
	return infos[0], nil
}

// ListDir lists a directory in the container, sorted by name, without
// following symlinks (a symlink to a directory is refused).
func (c *Container) ListDir(ctx context.Context, p string) ([]target.FileInfo, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	p = path.Clean(p)
	out, err := c.find(ctx, p, `[ -e "$1" ] || [ -L "$1" ] || exit 3
[ -L "$1" ] && exit 4
[ -d "$1" ] || exit 5
exec find "$1" -mindepth 1 -maxdepth 1 -printf '%y %m %s %f\0'`)
	if err != nil {
		return nil, err
	}
	infos, err := parseFindOutput(out)
	if err != nil {
		return nil, fmt.Errorf("cannot list %q in container %q: %w", p, c.name, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos, nil
}

func (c *Container) find(ctx context.Context, p, script string) ([]byte, error) {
	var out, errb bytes.Buffer
	code, err := c.run(ctx, target.Command{Args: []string{"sh", "-c", script, "sh", p}, Stdout: &out, Stderr: &errb}, runOpts{})
	if err != nil {
		return nil, err
	}
	switch code {
	case 0:
		return out.Bytes(), nil
	case 3:
		return nil, fmt.Errorf("cannot inspect %q in container %q: %w", p, c.name, target.ErrNotExist)
	case 4:
		return nil, fmt.Errorf("cannot list %q in container %q: %w", p, c.name, target.ErrSymlink)
	case 5:
		return nil, fmt.Errorf("cannot list %q in container %q: not a directory", p, c.name)
	}
	return nil, fmt.Errorf("cannot inspect %q in container %q: find exited %d: %s", p, c.name, code, strings.TrimSpace(errb.String()))
}

// parseFindOutput parses NUL-terminated `find -printf '%y %m %s %f\0'`
// records.
func parseFindOutput(out []byte) ([]target.FileInfo, error) {
	var infos []target.FileInfo
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			return nil, errors.New("truncated find output")
		}
		rec := string(out[:i])
		out = out[i+1:]
		typ, rest, ok1 := strings.Cut(rec, " ")
		perm, rest, ok2 := strings.Cut(rest, " ")
		size, name, ok3 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || !ok3 || len(typ) != 1 || name == "" {
			return nil, fmt.Errorf("invalid find record %q", rec)
		}
		m, err := strconv.ParseUint(perm, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, fmt.Errorf("invalid mode in find record %q", rec)
		}
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid size in find record %q", rec)
		}
		mode := fs.FileMode(m & 0o777)
		if m&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if m&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
		if m&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch typ[0] {
		case 'f':
		case 'd':
			mode |= fs.ModeDir
		case 'l':
			mode |= fs.ModeSymlink
		case 'b':
			mode |= fs.ModeDevice
		case 'c':
			mode |= fs.ModeDevice | fs.ModeCharDevice
		case 'p':
			mode |= fs.ModeNamedPipe
		case 's':
			mode |= fs.ModeSocket
		default:
			return nil, fmt.Errorf("invalid type in find record %q", rec)
		}
		infos = append(infos, target.FileInfo{Name: name, Mode: mode, Size: n})
	}
	return infos, nil
}

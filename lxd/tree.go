package lxd

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// CopyTreeIn copies a tar stream's tree under dir in the container. Two
// layers keep every entry inside dir:
//   - on the host, each entry is checked while it streams (no absolute
//     names, no "..", no hard link out, nothing under a symlink the archive
//     itself made, no device nodes) and re-serialised, so what reaches the
//     container is only what was checked;
//   - in the container, GNU tar extracts it as uid:gid (not root, unless
//     uid is 0), so even a missed trick cannot write where that user cannot.
func (c *Container) CopyTreeIn(ctx context.Context, tarStream io.Reader, dir string, uid, gid int) error {
	if err := checkPath(dir); err != nil {
		return err
	}
	if uid < 0 || gid < 0 {
		return fmt.Errorf("cannot copy a tree into %q: invalid owner %d:%d", dir, uid, gid)
	}
	dir = path.Clean(dir)
	var errb bytes.Buffer
	// The directory is made by root and handed to the owner, who then extracts.
	code, err := c.run(ctx, target.Command{
		Args:   []string{"sh", "-c", `mkdir -p -- "$1" && chown -h "$2:$3" -- "$1"`, "sh", dir, strconv.Itoa(uid), strconv.Itoa(gid)},
		Stdout: &errb, Stderr: &errb,
	}, runOpts{})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d: %s", code, strings.TrimSpace(errb.String()))
	}
	if err != nil {
		return fmt.Errorf("cannot create %q in container %q: %w", dir, c.name, err)
	}
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		err := checkTree(pw, tarStream)
		checked <- err
		_ = pw.CloseWithError(err)
	}()
	errb.Reset()
	code, err = c.run(ctx, target.Command{
		Args:  []string{"tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", dir},
		Stdin: pr, Stdout: &errb, Stderr: &errb,
	}, runOpts{uid: uint32(uid), gid: uint32(gid)})
	_ = pr.CloseWithError(errors.New("extraction finished"))
	if cerr := <-checked; cerr != nil {
		return fmt.Errorf("cannot copy a tree into %q in container %q: %w", dir, c.name, cerr)
	}
	if err == nil && code != 0 {
		err = fmt.Errorf("tar exited %d: %s", code, strings.TrimSpace(errb.String()))
	}
	if err != nil {
		return fmt.Errorf("cannot copy a tree into %q in container %q: %w", dir, c.name, err)
	}
	return nil
}

// treeEntryName cleans a tree entry's name, refusing anything that would
// land outside the tree.
func treeEntryName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || path.IsAbs(name) {
		return "", fmt.Errorf("invalid entry %q: absolute or empty", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid entry %q: it climbs out of the tree", name)
		}
	}
	return path.Clean(name), nil
}

// underSymlink returns the first ancestor of name that is a symlink made
// by the archive, or "".
func underSymlink(symlinks map[string]bool, name string) string {
	for p := path.Dir(name); p != "." && p != "/"; p = path.Dir(p) {
		if symlinks[p] {
			return p
		}
	}
	return ""
}

// checkTree copies the tar stream src to dst, entry by entry, refusing
// entries that would escape the directory they are extracted into.
func checkTree(dst io.Writer, src io.Reader) error {
	tr := tar.NewReader(src)
	tw := tar.NewWriter(dst)
	symlinks := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("cannot read tree: %w", err)
		}
		name, err := treeEntryName(h.Name)
		if err != nil {
			return err
		}
		// Nothing may be written through a symlink the archive made.
		if p := underSymlink(symlinks, name); p != "" {
			return fmt.Errorf("invalid entry %q: it is under the symbolic link %q", h.Name, p)
		}
		if name == "." && h.Typeflag != tar.TypeDir {
			return fmt.Errorf("invalid entry %q: the tree's top must be a directory", h.Name)
		}
		out := &tar.Header{Name: name, Mode: h.Mode & 0o7777, ModTime: h.ModTime, Typeflag: h.Typeflag}
		switch h.Typeflag {
		case tar.TypeReg:
			out.Size = h.Size
		case tar.TypeDir:
			out.Name += "/"
		case tar.TypeSymlink:
			if h.Linkname == "" || strings.ContainsRune(h.Linkname, 0) {
				return fmt.Errorf("invalid symbolic link %q", h.Name)
			}
			out.Linkname = h.Linkname
			symlinks[name] = true
		case tar.TypeLink:
			if out.Linkname, err = treeEntryName(h.Linkname); err != nil {
				return fmt.Errorf("invalid hard link %q: %w", h.Name, err)
			}
			if p := underSymlink(symlinks, out.Linkname); p != "" || symlinks[out.Linkname] {
				return fmt.Errorf("invalid hard link %q: it goes through a symbolic link", h.Name)
			}
		case tar.TypeFifo:
		default:
			return fmt.Errorf("invalid entry %q: type %q is not allowed", h.Name, h.Typeflag)
		}
		if symlinks[name] && h.Typeflag != tar.TypeSymlink {
			// Replacing a link by a directory depends on tar's options:
			// refuse rather than guess.
			return fmt.Errorf("invalid entry %q: it replaces a symbolic link", h.Name)
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("cannot copy entry %q: %w", h.Name, err)
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("cannot copy entry %q: %w", h.Name, err)
			}
		}
	}
	return tw.Close()
}

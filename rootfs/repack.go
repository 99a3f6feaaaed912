package rootfs

// Repacking a Launchpad chroot tarball for sbuild's unshare mode.
//
// sbuild --chroot-mode=unshare extracts the chroot tarball itself, as an
// unprivileged user in a user namespace, with
// `tar --exclude=./dev/null … --extract`: it cannot create device nodes,
// and its excludes only match "./"-relative member names. A Launchpad
// chroot has every member under "chroot-autobuild/" and carries /dev
// nodes, so it fails at create-session ("Cannot mknod"). Repack rewrites
// the stream once per chroot: prefix stripped, "./" names, device nodes
// dropped (sbuild bind-mounts the host's), hard link targets renamed to
// match, everything else (owners, modes, times, xattrs, symlinks) as it
// was. The output is an uncompressed tar: it is read once per build, and
// an uncompressed read is the fastest (managers-feasibility.md §2: 0.4 s
// against 2.9 s for zstd and 37 s for gzip).

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// RepackOptions tune Repack.
type RepackOptions struct {
	// ExtraDirs are directories (absolute paths inside the root, e.g.
	// "/srv/buildd-agent") appended to the tarball, mode 0755, owned by
	// root: mount points a build binds something onto.
	ExtraDirs []string
}

// RepackStats says what Repack did.
type RepackStats struct {
	Entries        int   // members written
	DevicesDropped int   // character and block devices left out
	Bytes          int64 // file content bytes copied
	Compression    Compression
}

// Repack reads a chroot tarball (any compression Decompress knows, with or
// without the "chroot-autobuild/" prefix) from r and writes sbuild's
// unshare-mode tarball to w. A member that would land outside the root
// (an absolute ".." path, a hard link out of it) is an error: the
// chroot is then unusable, and saying so is better than guessing.
func Repack(ctx context.Context, r io.Reader, w io.Writer, opts RepackOptions) (RepackStats, error) {
	var st RepackStats
	dr, c, err := Decompress(r)
	if err != nil {
		return st, err
	}
	defer dr.Close()
	st.Compression = c
	ahead := readAhead(dr)
	defer ahead.Close()
	tr := tar.NewReader(ahead)
	tw := tar.NewWriter(w)
	rn := repackNamer{}
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("cannot read the chroot tarball: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeChar, tar.TypeBlock:
			st.DevicesDropped++
			continue
		case tar.TypeXGlobalHeader:
			continue
		}
		name, err := rn.name(h.Name)
		if err != nil {
			return st, err
		}
		if name == "./" && h.Typeflag != tar.TypeDir {
			return st, fmt.Errorf("member %q: the root is not a directory: %w", h.Name, ErrUnsafePath)
		}
		h.Name = name
		if h.Typeflag == tar.TypeLink {
			ln, err := rn.name(h.Linkname)
			if err != nil {
				return st, fmt.Errorf("hard link %q: %w", h.Name, err)
			}
			if ln == "./" {
				return st, fmt.Errorf("hard link %q to the root: %w", h.Name, ErrUnsafePath)
			}
			h.Linkname = ln
		}
		// Let the writer pick the format: a name that grew by "./" may
		// no longer fit the one it was read in.
		h.Format = tar.FormatUnknown
		if err := tw.WriteHeader(h); err != nil {
			return st, fmt.Errorf("cannot write member %q: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			n, err := io.Copy(tw, tr)
			st.Bytes += n
			if err != nil {
				return st, fmt.Errorf("cannot copy member %q: %w", h.Name, err)
			}
		}
		st.Entries++
	}
	if st.Entries == 0 {
		return st, errors.New("cannot repack the chroot: the tarball has no members")
	}
	for _, d := range opts.ExtraDirs {
		clean := path.Clean("/" + d)
		if clean == "/" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "." + clean + "/", Mode: 0o755}); err != nil {
			return st, fmt.Errorf("cannot write member %q: %w", d, err)
		}
		st.Entries++
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("cannot finish the tarball: %w", err)
	}
	return st, nil
}

// repackNamer maps member names to "./"-relative ones, stripping the
// "chroot-autobuild/" prefix when the first member has it (as Unpack does).
type repackNamer struct {
	prefixKnown, strip bool
}

func (n *repackNamer) name(raw string) (string, error) {
	s := raw
	for strings.HasPrefix(s, "./") {
		s = strings.TrimLeft(s[2:], "/")
	}
	if strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("member %q: absolute name: %w", raw, ErrUnsafePath)
	}
	if !n.prefixKnown {
		n.prefixKnown = true
		first, _, _ := strings.Cut(s, "/")
		n.strip = first == ChrootPrefix
	}
	if n.strip {
		if s == ChrootPrefix || s == ChrootPrefix+"/" {
			s = ""
		} else if rest, ok := strings.CutPrefix(s, ChrootPrefix+"/"); ok {
			s = rest
		} else {
			return "", fmt.Errorf("member %q is outside %s/: %w", raw, ChrootPrefix, ErrUnsafePath)
		}
	}
	dir := strings.HasSuffix(s, "/")
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." {
			return "", fmt.Errorf("member %q: %w", raw, ErrUnsafePath)
		}
	}
	s = path.Clean(s)
	if s == "." || s == "" {
		return "./", nil
	}
	if dir {
		return "./" + s + "/", nil
	}
	return "./" + s, nil
}

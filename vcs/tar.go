package vcs

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// vcsNames are what GNU tar's --exclude-vcs leaves out (tar 1.34,
// src/names.c vcs_file_table), which launchpad-buildd uses for source
// tarballs.
var vcsNames = map[string]bool{
	"CVS": true, ".cvsignore": true, "RCS": true, "SCCS": true,
	".git": true, ".gitignore": true, ".gitattributes": true, ".gitmodules": true,
	".arch-ids": true, "{arch}": true, "=RELEASE-ID": true, "=meta-update": true, "=update": true,
	".bzr": true, ".bzrignore": true, ".bzrtags": true,
	".hg": true, ".hgignore": true, ".hgtags": true,
	"_darcs": true, ".svn": true,
}

// WriteTar streams the tree under dir as a tar: directories, regular files
// and symlinks (as symlinks, targets unchanged), permission bits kept,
// owned by opts.UID:GID, entries named relative to dir ("a/b"), sorted.
// Other file types (devices, fifos, sockets) are left out. It walks with
// directory file descriptors and O_NOFOLLOW, so it never follows a symlink
// and never reads outside dir, even if the tree changes while it runs.
func WriteTar(w io.Writer, dir string, opts TarOptions) error {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", dir, err)
	}
	tw := tar.NewWriter(w)
	if err := tarDir(tw, root, "", opts); err != nil {
		return fmt.Errorf("cannot archive %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("cannot archive %s: %w", dir, err)
	}
	return nil
}

// tarDir archives the contents of the directory open as dfd (which it
// closes), named prefix in the archive.
func tarDir(tw *tar.Writer, dfd int, prefix string, opts TarOptions) error {
	d := os.NewFile(uintptr(dfd), prefix)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("cannot list %q: %w", prefix, err)
	}
	sort.Strings(names)
	for _, name := range names {
		if opts.ExcludeVCS && vcsNames[name] {
			continue
		}
		rel := prefix + name
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("cannot stat %q: %w", rel, err)
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     opts.UID,
			Gid:     opts.GID,
			ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			sub, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("cannot open %q: %w", rel, err)
			}
			if err := tarDir(tw, sub, hdr.Name, opts); err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := readlinkat(dfd, name)
			if err != nil {
				return fmt.Errorf("cannot read symlink %q: %w", rel, err)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
			hdr.Mode = 0o777
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case unix.S_IFREG:
			if err := tarFile(tw, dfd, name, hdr); err != nil {
				return err
			}
		}
	}
	return nil
}

func tarFile(tw *tar.Writer, dfd int, name string, hdr *tar.Header) error {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("cannot open %q: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	// Stat what was opened: the entry may have been replaced since the lstat.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("cannot stat %q: %w", hdr.Name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%q changed type while archiving", hdr.Name)
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = st.Size
	hdr.Mode = int64(st.Mode & 0o7777)
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, st.Size))
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", hdr.Name, err)
	}
	if n != st.Size {
		return fmt.Errorf("%q shrank while archiving", hdr.Name)
	}
	return nil
}

func readlinkat(dfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

package standins

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// The ci build's stand-ins (see their headers): lpci, and lxd for
// run-ci-prepare's `lxd init --auto`.
var (
	//go:embed lpci
	LPCI []byte
	//go:embed lxd
	LXD []byte
)

// builddUID is the buildd account's uid and gid in the test image.
const builddUID = 2001

// builddAccount adds to files the base chroot's etc/passwd and etc/group
// with the buildd user and group that Launchpad's build chroots have (the
// ci build chowns its checkout to buildd:buildd and runs lpci as buildd);
// the debootstrap chroot has no such account. Appended after the base's
// members, these replace them on unpacking.
func builddAccount(base string, files map[string][]byte) error {
	f, err := os.Open(base)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	want := map[string]string{
		"etc/passwd": fmt.Sprintf("buildd:x:%d:%d:buildd (tests/standins):/home/buildd:/bin/sh\n", builddUID, builddUID),
		"etc/group":  fmt.Sprintf("buildd:x:%d:\n", builddUID),
	}
	tr := tar.NewReader(zr)
	for len(want) > 0 {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s lacks %v", base, want)
		}
		if err != nil {
			return fmt.Errorf("cannot read %s: %w", base, err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(h.Name, "chroot-autobuild/"), "./")
		line, ok := want[name]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte("\nbuildd:")) && !bytes.HasPrefix(data, []byte("buildd:")) {
			if len(data) > 0 && data[len(data)-1] != '\n' {
				data = append(data, '\n')
			}
			data = append(data, line...)
		}
		files[name] = data
		delete(want, name)
	}
	return nil
}

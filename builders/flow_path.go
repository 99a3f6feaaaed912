package builders

// build_path safety: launchpad-buildd's check_path_escape
// (lpbuildd/target/backend.py), done properly. The reference takes
// os.path.realpath of <base>/<build_path> on the host (where the target's
// symlinks mean something else) and compares string prefixes, so
// /home/buildd/foo2 passes for /home/buildd/foo. Here the path is resolved
// one component at a time in the checkout itself, symlinks followed the
// way the target would follow them, and refused as soon as it leaves the
// tree.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// maxSymlinkHops is Linux's limit (ELOOP) on symlinks followed in one lookup.
const maxSymlinkHops = 40

// ErrInvalidBuildPath is wrapped by every ResolveBuildPath refusal.
var ErrInvalidBuildPath = errors.New("invalid build file path")

// ResolveBuildPath resolves rel (a build_path) inside the source tree
// checked out at hostTree, which the target has at targetDir. It returns
// the path relative to the tree with every symlink resolved ("." for the
// tree itself), which must be a directory. It refuses, with an error
// wrapping ErrInvalidBuildPath, an absolute rel, a ".." above the tree,
// and a symlink pointing outside it (an absolute link is read as the
// target reads it: inside the tree only if under targetDir). It never
// looks outside hostTree.
func ResolveBuildPath(hostTree, targetDir, rel string) (string, error) {
	host := func(r string) string { return filepath.Join(hostTree, filepath.FromSlash(r)) }
	return resolveBuildPath(targetDir, rel,
		func(r string) (fs.FileMode, error) {
			fi, err := os.Lstat(host(r))
			if err != nil {
				return 0, err
			}
			return fi.Mode(), nil
		},
		func(r string) (string, error) { return os.Readlink(host(r)) })
}

// ResolveBuildPathInTarget is ResolveBuildPath for a tree that is only in
// the target (a Bazaar branch): the target cannot read links, so a
// symlink anywhere on the way is refused.
func ResolveBuildPathInTarget(ctx context.Context, t target.Target, targetDir, rel string) (string, error) {
	return resolveBuildPath(targetDir, rel, func(r string) (fs.FileMode, error) {
		fi, err := t.Stat(ctx, path.Join(targetDir, r))
		if err != nil {
			return 0, err
		}
		return fi.Mode, nil
	}, nil)
}

// resolveBuildPath walks rel below targetDir with lstat and readlink
// (paths relative to the tree; readlink nil refuses every symlink).
func resolveBuildPath(targetDir, rel string, lstat func(string) (fs.FileMode, error), readlink func(string) (string, error)) (string, error) {
	if rel == "" || rel == "." {
		return ".", nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: build_path %q %s", ErrInvalidBuildPath, rel, fmt.Sprintf(format, a...))
	}
	if strings.IndexByte(rel, 0) >= 0 {
		return "", bad("contains a NUL byte")
	}
	if path.IsAbs(rel) {
		return "", bad("is an absolute path; it must be relative to the source tree %s", targetDir)
	}
	pending := strings.Split(rel, "/")
	var cur []string
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", bad("leaves the source tree %s (\"..\")", targetDir)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := append(append([]string(nil), cur...), c)
		name := path.Join(next...)
		mode, err := lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return "", bad("does not exist in the source tree (%s is missing)", name)
		}
		if err != nil {
			return "", fmt.Errorf("%w: build_path %q: cannot look at %s: %v", ErrInvalidBuildPath, rel, name, err)
		}
		if mode&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if readlink == nil {
			return "", bad("goes through the symlink %s, which is not followed here", name)
		}
		hops++
		if hops > maxSymlinkHops {
			return "", bad("has too many levels of symbolic links")
		}
		link, err := readlink(name)
		if err != nil {
			return "", fmt.Errorf("%w: build_path %q: cannot read the symlink %s: %v", ErrInvalidBuildPath, rel, name, err)
		}
		if path.IsAbs(link) {
			clean := path.Clean(link)
			if clean != targetDir && !strings.HasPrefix(clean, targetDir+"/") {
				return "", bad("leaves the source tree %s: %s is a symlink to %s", targetDir, name, link)
			}
			cur = nil
			link = strings.TrimPrefix(strings.TrimPrefix(clean, targetDir), "/")
		}
		// A relative link is read from the directory holding it (cur).
		pending = append(strings.Split(link, "/"), pending...)
	}
	if len(cur) == 0 {
		return ".", nil
	}
	res := path.Join(cur...)
	if mode, err := lstat(res); err != nil || !mode.IsDir() {
		return "", bad("is not a directory in the source tree")
	}
	return res, nil
}

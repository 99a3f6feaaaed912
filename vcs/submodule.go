package vcs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// submodules checks out the submodules of commit c, recursively, like
// `git submodule update --init --recursive`: each at the commit its gitlink
// records, from its URL in .gitmodules (relative URLs resolved against the
// superproject's). A failure is logged and the build goes on, as in
// launchpad-buildd.
func (r *run) submodules(ctx context.Context, repo *git.Repository, c *object.Commit, superURL, dir string, depth int) {
	f, err := c.File(".gitmodules")
	if err != nil {
		return
	}
	content, err := f.Contents()
	if err != nil {
		r.logf("Cannot read .gitmodules: %v (build may fail later)", err)
		return
	}
	mods := config.NewModules()
	if err := mods.Unmarshal([]byte(content)); err != nil {
		r.logf("Cannot parse .gitmodules: %v (build may fail later)", err)
		return
	}
	tree, err := c.Tree()
	if err != nil {
		r.logf("Cannot read the tree for submodules: %v (build may fail later)", err)
		return
	}
	names := make([]string, 0, len(mods.Submodules))
	for n := range mods.Submodules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		sm := mods.Submodules[name]
		p, ok := cleanSubmodulePath(sm.Path)
		if !ok {
			r.logf("Submodule %q has an unsafe path %q; skipped (build may fail later)", name, sm.Path)
			continue
		}
		e, err := tree.FindEntry(p)
		if err != nil || e.Mode != filemode.Submodule {
			// git ignores a .gitmodules entry without a gitlink too.
			continue
		}
		subURL, err := resolveSubmoduleURL(superURL, sm.URL)
		if err != nil {
			r.logf("Submodule %s: %v; skipped (build may fail later)", p, err)
			continue
		}
		r.san.addURL(subURL)
		subdir := filepath.Join(dir, filepath.FromSlash(p))
		rev, err := r.checkout(ctx, Source{Repository: subURL, Path: e.Hash.String()}, subdir, depth+1)
		if err != nil {
			r.logf("Submodule %s (%s) failed: %v (build may fail later)", p, redactURL(subURL), err)
			// Leave an empty directory, as git does for a submodule it could not get.
			if rmErr := os.RemoveAll(subdir); rmErr == nil {
				_ = os.Mkdir(subdir, 0o755)
			}
			continue
		}
		r.logf("Submodule %s (%s) at %s", p, redactURL(subURL), rev)
	}
}

// cleanSubmodulePath accepts a relative path made of valid names.
func cleanSubmodulePath(p string) (string, bool) {
	p = strings.TrimSuffix(p, "/")
	if p == "" || strings.HasPrefix(p, "/") {
		return "", false
	}
	for _, n := range strings.Split(p, "/") {
		if !validName(n) {
			return "", false
		}
	}
	return p, true
}

// resolveSubmoduleURL resolves a .gitmodules URL as git does: "./x" and
// "../x" are relative to the superproject's URL taken as a directory
// (so "../lib.git" next to "https://host/app.git" is "https://host/lib.git").
func resolveSubmoduleURL(super, rel string) (string, error) {
	if !strings.HasPrefix(rel, "./") && !strings.HasPrefix(rel, "../") {
		return rel, nil
	}
	base := strings.TrimRight(super, "/")
	hostStart := strings.Index(base, "://")
	if hostStart < 0 {
		return "", fmt.Errorf("cannot resolve relative URL %q against %q", rel, redactURL(super))
	}
	hostStart += 3
	for {
		switch {
		case strings.HasPrefix(rel, "./"):
			rel = rel[2:]
		case strings.HasPrefix(rel, "../"):
			rel = rel[3:]
			i := strings.LastIndexByte(base, '/')
			if i < hostStart {
				return "", fmt.Errorf("relative URL goes above the host of %s", redactURL(super))
			}
			base = base[:i]
		default:
			return base + "/" + rel, nil
		}
	}
}

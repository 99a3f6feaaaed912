package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/rootfs"
)

// hostProblems is what `config check` finds wrong with this machine for
// cfg, beyond the file itself. Errors are what would fail builds with a
// bare "permission denied": a directory above the build home that other
// users cannot search, while chroot builds run as idmap_user's
// subordinate ids and binary package builds as the sbuild user and its
// subordinate ids, all of them "other" to a root-owned directory. Warnings
// are what refuses one kind of build only (the sbuild user missing).
func hostProblems(cfg *agent.Config) (errs, warns []agent.Problem) {
	who := fmt.Sprintf("chroot builds run as %s's subordinate ids%s and binary package builds as the build user %q",
		cfg.Chroot.IDMapUser, firstSubID(cfg.Chroot.IDMapUser), cfg.Sbuild.User)
	seen := map[string]bool{}
	for _, d := range []struct{ key, dir string }{
		{"builder.build_home", cfg.Builder.BuildHome},
		{"builder.state_dir", cfg.Builder.StateDir},
	} {
		if d.dir == "" {
			continue
		}
		blocked, mode := unsearchableAncestor(d.dir)
		if blocked == "" || seen[blocked] {
			continue
		}
		seen[blocked] = true
		errs = append(errs, agent.Problem{Key: d.key, Msg: fmt.Sprintf(
			"%s is under %s (mode %04o), which other users cannot search: %s, and they could not reach %s (chmod o+x %s, or choose a directory outside it)",
			d.dir, blocked, mode, who, d.dir, blocked)})
	}
	if _, err := builders.LookupSbuildUser(cfg.Sbuild.User); err != nil {
		warns = append(warns, agent.Problem{Key: "sbuild.user", Msg: fmt.Sprintf("%v; binarypackage builds will be refused", err)})
	}
	return errs, warns
}

// unsearchableAncestor returns the first existing directory from dir up
// to / that lacks the other-users execute bit, and its mode; "" if none.
func unsearchableAncestor(dir string) (string, os.FileMode) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", 0
	}
	for {
		if st, err := os.Stat(d); err == nil && st.IsDir() && st.Mode().Perm()&0o001 == 0 {
			return d, st.Mode().Perm()
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", 0
		}
		d = parent
	}
}

// firstSubID names the host id a chroot's root maps to, when known.
func firstSubID(user string) string {
	f, err := os.Open("/etc/subuid")
	if err != nil {
		return ""
	}
	defer f.Close()
	m, err := rootfs.ParseSubID(f, user)
	if err != nil || len(m) == 0 {
		return ""
	}
	return fmt.Sprintf(" (from %d)", m[0].HostID)
}

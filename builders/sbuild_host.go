package builders

// The host side of binary package builds: the unprivileged build user,
// its subordinate id ranges, and what the host must have for sbuild's
// unshare mode. Checked at start, before every build() and by each build.

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/buildd-agent/buildd-agent/rootfs"
)

// LookupSbuildUser finds name and its subordinate ranges, with an error
// that says how to fix the host.
func LookupSbuildUser(name string) (SbuildUser, error) {
	if name == "" {
		return SbuildUser{}, errors.New("no build user configured ([sbuild] user)")
	}
	uid, gid, err := lookupBuildUser(name)
	if err != nil {
		return SbuildUser{}, err
	}
	su := SbuildUser{Name: name, UID: uid, GID: gid}
	for _, f := range []struct {
		path string
		dst  *uint32
		flag string
	}{{subUIDFile, &su.SubUID, "--add-subuids"}, {subGIDFile, &su.SubGID, "--add-subgids"}} {
		start, err := firstSubIDRange(f.path, name)
		if err != nil {
			return SbuildUser{}, fmt.Errorf("build user %q: %w (add one with: usermod %s 10000000-10065535 %s)", name, err, f.flag, name)
		}
		*f.dst = start
	}
	return su, nil
}

// lookupBuildUser finds the build user's ids; it must not be root (no
// build tool, host-side or sbuild, runs as root on the host).
func lookupBuildUser(name string) (uid, gid uint32, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("build user %q: %w (create it with: useradd --create-home %s)", name, err, name)
	}
	uid64, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid64, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("build user %q has ids %q:%q, which are not numbers", name, u.Uid, u.Gid)
	}
	if uid64 == 0 {
		return 0, 0, fmt.Errorf("build user %q is root: build tools must not run as root on the host; configure an unprivileged user", name)
	}
	return uint32(uid64), uint32(gid64), nil
}

// firstSubIDRange is the start of the user's first range in path, as
// sbuild reads it; it must hold at least 65536 ids.
func firstSubIDRange(path, name string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	m, err := rootfs.ParseSubID(f, name)
	if err != nil {
		return 0, err
	}
	if len(m) == 0 {
		return 0, fmt.Errorf("no subordinate id range in %s", path)
	}
	if m[0].Size < sbuildMinSubIDs {
		return 0, fmt.Errorf("the first subordinate id range in %s has %d ids; sbuild needs %d", path, m[0].Size, sbuildMinSubIDs)
	}
	return m[0].HostID, nil
}

// CheckSbuildHost is the binarypackage manager's host check: sbuild and
// newuidmap/newgidmap installed, the build user and its ranges present.
func CheckSbuildHost(cfg ManagerConfig) error {
	for _, prog := range []string{"sbuild", "newuidmap", "newgidmap"} {
		if _, err := lookPath(prog); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install sbuild uidmap)", prog)
		}
	}
	if cfg.BuildHome == "" {
		return errors.New("no build home configured")
	}
	if err := checkSearchable(cfg.BuildHome); err != nil {
		return err
	}
	_, err := lookupSbuildUser(cfg.SbuildUser)
	return err
}

// checkSearchable: sbuild runs as the build user, and its build root as
// that user's subordinate ids, inside <build_home>/build-<id>: every
// directory above it must let others through.
func checkSearchable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %v) is not searchable by other users, so the build user cannot reach the build home %s (chmod o+x %s)", d, st.Mode().Perm(), dir, d)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

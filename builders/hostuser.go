package builders

// Host-side tools of a build (git-build-recipe, brz) read what the build's
// sources hold; they run as the unprivileged build user ([sbuild] user),
// never as the agent's root, as the reference runs buildrecipe as buildd.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// hostTool is who a host-side tool runs as and where it may write.
type hostTool struct {
	// Cred is nil when the agent is not root or no build user is
	// configured (unit tests): the tool then runs as the agent.
	Cred *syscall.Credential
	// Dir is the tool's private directory (its HOME), owned by Cred's user.
	Dir string
}

// NewHostTool makes the private directory a host tool works in: under
// the build home (which the build user can reach, see checkSearchable)
// as build-<id>.host-*, swept with the other build-* at agent start, and
// owned by the build user.
func (b *ContainerBuild) NewHostTool() (*hostTool, error) {
	cfg := b.Env.Config
	if os.Geteuid() != 0 || cfg.SbuildUser == "" {
		dir, err := b.HostWorkDir()
		if err != nil {
			return nil, err
		}
		return &hostTool{Dir: dir}, nil
	}
	uid, gid, err := lookupBuildUser(cfg.SbuildUser)
	if err != nil {
		return nil, err
	}
	base := cfg.BuildHome
	if base == "" {
		return nil, fmt.Errorf("no build home configured")
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the build home %q: %w", base, err)
	}
	if err := checkSearchable(base); err != nil {
		return nil, err
	}
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, b.Spec.BuildID)
	if len(id) > 64 {
		id = id[:64]
	}
	dir, err := os.MkdirTemp(base, "build-"+id+".host-")
	if err != nil {
		return nil, fmt.Errorf("cannot create a work directory in %q: %w", base, err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cannot hand %q to the build user: %w", dir, err)
	}
	return &hostTool{Cred: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, Dir: dir}, nil
}

// Remove deletes the tool's directory.
func (h *hostTool) Remove() { os.RemoveAll(h.Dir) }

// Path is a path in the tool's directory.
func (h *hostTool) Path(elem ...string) string {
	return filepath.Join(append([]string{h.Dir}, elem...)...)
}

func init() {
	RegisterCheck("sourcepackagerecipe", func(cfg ManagerConfig) error {
		if _, err := exec.LookPath(GitBuildRecipeCommand); err != nil {
			return fmt.Errorf("git-build-recipe is not installed (apt-get install git-build-recipe)")
		}
		return checkHostToolUser(cfg)
	})
	RegisterCheck("translation-templates", func(cfg ManagerConfig) error {
		// buildd-manager sends Bazaar branches (branch_url).
		if _, err := exec.LookPath(BzrCommand); err != nil {
			return fmt.Errorf("brz (Breezy) is not installed (apt-get install brz)")
		}
		return checkHostToolUser(cfg)
	})
}

// checkHostToolUser: when the agent is root, the build user host tools
// run as must exist and not be root.
func checkHostToolUser(cfg ManagerConfig) error {
	if os.Geteuid() != 0 || cfg.SbuildUser == "" {
		return nil
	}
	_, _, err := lookupBuildUser(cfg.SbuildUser)
	return err
}

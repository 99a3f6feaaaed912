package builders

// What an sbuild run produced: its status (launchpad-buildd's
// iterate_SBUILD, through builders/debian) and its results (the .changes
// and the files it lists). Everything here was written by the build.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/buildd-agent/buildd-agent/builders/debian"
)

// sbuildSetupStages are sbuild's Fail-Stage values for making and
// setting up the build root: in the reference these happen before sbuild
// (unpack, mount, sources, keys, update) and fail as CHROOTFAIL.
var sbuildSetupStages = map[string]bool{
	"create-session":            true,
	"run-chroot-setup-commands": true,
	"apt-get-update":            true,
	"apt-get-upgrade":           true,
	"apt-get-distupgrade":       true,
	"chroot-check":              true,
}

// analyse turns sbuild-package's exit status into the build's status
// (iterate_SBUILD): nil means gather the results.
func (b *sbuildBuild) analyse(ctx context.Context, code int) *Failure {
	if code == 0 {
		return nil
	}
	logPath := filepath.Join(b.dir, "sbuild.log")
	lf, err := os.Open(logPath)
	if err != nil {
		return Fail(BuildBuilderFail, "cannot read the sbuild log: %w", err)
	}
	defer lf.Close()
	st, err := lf.Stat()
	if err != nil {
		return Fail(BuildBuilderFail, "cannot read the sbuild log: %w", err)
	}
	if stage := lastFailStage(lf, st.Size()); sbuildSetupStages[stage] {
		b.logf("Returning build status: CHROOTFAIL")
		return Fail(BuildChrootFail, "sbuild could not set up the build root (Fail-Stage: %s)", stage)
	}
	an := debian.AnalyseSbuild(code, lf, st.Size(),
		func() (debian.Relations, error) { return b.m.dsc.BuildDependencies(b.m.args.ArchIndep) },
		b.availablePackages, b.arch)
	for _, n := range an.Notes {
		b.logf("%s", strings.TrimRight(n, "\n"))
	}
	switch an.Status {
	case debian.StatusOK:
		return nil
	case debian.StatusDepFail:
		b.logf("Returning build status: DEPFAIL")
		b.logf("Dependencies: %s", an.Dependencies)
		return &Failure{Status: BuildDepFail, Err: &depWait{deps: an.Dependencies}}
	case debian.StatusGivenBack:
		b.logf("Returning build status: GIVENBACK")
		return Fail(BuildGivenBack, "sbuild gave the build back (exit %d)", code)
	case debian.StatusBuilderFail:
		b.logf("Returning build status: BUILDERFAIL")
		return Fail(BuildBuilderFail, "sbuild failed (exit %d)", code)
	default:
		b.logf("Returning build status: PACKAGEFAIL")
		return Fail(BuildPackageFail, "sbuild failed (exit %d)", code)
	}
}

// lastFailStage is the last "Fail-Stage: X" in the last 4 KiB of the
// log: sbuild's summary, which nothing the package prints can follow.
func lastFailStage(r io.ReaderAt, size int64) string {
	const tail = 4096
	off := max(size-tail, 0)
	buf := make([]byte, size-off)
	n, _ := r.ReadAt(buf, off)
	stage := ""
	for _, line := range bytes.Split(buf[:n], []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Fail-Stage: ")); ok {
			stage = string(bytes.TrimSpace(v))
		}
	}
	return stage
}

// maxAptLists bounds what the dep-wait analysis reads of the lists the
// build root left (they are written by code from the archives).
const maxAptLists = 1 << 30

// availablePackages reads the Packages lists the build-deps-failed hook
// left in agent/lists/ (regular files only, never through a link).
func (b *sbuildBuild) availablePackages() (*debian.Available, error) {
	root, err := os.OpenRoot(filepath.Join(b.dir, "agent", "lists"))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := openRegular(root, "Packages")
	if err != nil {
		return nil, fmt.Errorf("no apt lists from the build root: %w", err)
	}
	defer f.Close()
	return debian.AvailablePackages(io.LimitReader(f, maxAptLists))
}

// openRegular opens name in root for reading only if it is a regular file:
// no link is followed and a FIFO never blocks the open.
func openRegular(root *os.Root, name string) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s)", name, st.Mode().Type())
	}
	return f, nil
}

// maxChangesBytes bounds the .changes the build wrote.
const maxChangesBytes = 16 << 20

// gather stores <dsc without .dsc>_<arch>.changes and every file its
// Files field lists (launchpad-buildd's gatherResults). The build wrote
// them all: names are checked, links and non-regular files refused.
func (b *sbuildBuild) gather(ctx context.Context) *Failure {
	changesName := strings.TrimSuffix(b.m.dscName, ".dsc") + "_" + b.arch + ".changes"
	root, err := os.OpenRoot(b.dir)
	if err != nil {
		return Fail(BuildBuilderFail, "cannot open the build directory: %w", err)
	}
	defer root.Close()
	cf, err := openRegular(root, changesName)
	if err != nil {
		return Fail(BuildPackageFail, "Failed to gather results: cannot open %s: %w", changesName, err)
	}
	data, err := io.ReadAll(io.LimitReader(cf, maxChangesBytes+1))
	cf.Close()
	if err != nil {
		return Fail(BuildPackageFail, "Failed to gather results: cannot read %s: %w", changesName, err)
	}
	if len(data) > maxChangesBytes {
		return Fail(BuildPackageFail, "Failed to gather results: %s is over %d bytes", changesName, maxChangesBytes)
	}
	ch, err := debian.ParseChanges(bytes.NewReader(data))
	if err != nil {
		return Fail(BuildPackageFail, "Failed to gather results: %s: %w", changesName, err)
	}
	if _, err := b.env.AddWaitingFile(changesName, bytes.NewReader(data)); err != nil {
		return b.fail(ctx, BuildPackageFail, "Failed to gather results: %s: %w", changesName, err)
	}
	for _, f := range ch.Files {
		if ctx.Err() != nil {
			return b.fail(ctx, BuildAborted, "aborted")
		}
		if err := b.addResult(root, f.Name); err != nil {
			return b.fail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
		}
	}
	return nil
}

func (b *sbuildBuild) addResult(root *os.Root, name string) error {
	f, err := openRegular(root, name)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", name, err)
	}
	defer f.Close()
	if _, err := b.env.AddWaitingFile(name, f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

package builders

// The binarypackage manager: launchpad-buildd's BinaryPackageBuildManager
// (lpbuildd/binarypackage.py) and bin/sbuild-package in one.
//
// Where the reference runs sbuild in a schroot of an unpacked chroot, as
// a user with passwordless sudo, this manager runs Debian's sbuild in its
// unshare mode: the build root is unpacked by sbuild itself in a user
// namespace mapped to the build user's subordinate ids, so no process that
// runs package code is root on the host, and no schroot configuration or
// sudo is involved. The chroot tarball is repacked once per SHA-1 into the
// form unshare mode reads (sbuildchroot.go); the per-build setup (sources,
// keys, /CurrentlyBuilding) reaches the root through a bind mount and
// sbuild's chroot-setup-commands (sbuild.go).
//
//	what happened                                  reference              status
//	---------------------------------------------------------------------------------
//	the .dsc's files differ from the filemap's     (dpkg-source fails)    PACKAGEFAIL
//	  (checksums checked before sbuild runs)
//	no build user / subuid range, sbuild missing   sbuild-package exit 4  BUILDERFAIL
//	the chroot cannot be repacked (not a tarball)  unpack-chroot ≠ 0      CHROOTFAIL
//	sbuild fails to create or set up the root,     mount-chroot, sources, CHROOTFAIL
//	  or apt-get update/upgrade fails               update ≠ 0
//	  (Fail-Stage create-session, run-chroot-
//	  setup-commands, apt-get-*)
//	sbuild exit 0 (and no implicit pointer         0                      gather → OK
//	  function warning, or warn-only)
//	implicit pointer function warnings             check-… exit 2         PACKAGEFAIL
//	sbuild exit 1, 2                               FAILED/ATTEMPTED       PACKAGEFAIL
//	sbuild exit 3                                  GIVENBACK              log analysis:
//	                                                                      GIVENBACK, DEPFAIL
//	                                                                      or PACKAGEFAIL
//	sbuild exit ≥ 4, killed by a signal            BUILDERFAIL            BUILDERFAIL
//	no .changes, a listed file missing             "Failed to gather…"    PACKAGEFAIL
//	abort                                          reaped                 ABORTED

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/buildd-agent/buildd-agent/builders/debian"
)

var (
	suiteName   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]{0,63}$`) })
	controlWord = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })
)

func init() {
	Register("binarypackage", NewBinaryPackageManager)
	RegisterCheck("binarypackage", CheckSbuildHost)
}

// BinaryPackageArgs are the binarypackage manager's build arguments
// (buildd-manager-args.md §4.1).
type BinaryPackageArgs struct {
	Common            CommonArgs
	Suite             string
	Component         string // ogrecomponent
	ArchivePurpose    string
	ArchIndep         bool
	BuildDebugSymbols bool
	Distribution      string
}

// ParseBinaryPackageArgs validates a binarypackage build's arguments.
func ParseBinaryPackageArgs(args map[string]any) (BinaryPackageArgs, error) {
	p := NewArgParser(args)
	var a BinaryPackageArgs
	a.Common = ParseCommonArgs(p)
	a.Suite = p.RequiredString("suite")
	a.Component = p.RequiredString("ogrecomponent")
	a.ArchivePurpose = p.String("archive_purpose")
	a.ArchIndep = p.Bool("arch_indep")
	a.BuildDebugSymbols = p.Bool("build_debug_symbols")
	a.Distribution = p.String("distribution")
	// Launchpad sends these with every build; they do not change what
	// sbuild does.
	p.String("launchpad_instance")
	p.String("launchpad_server_url")
	if a.Suite != "" && !suiteName().MatchString(a.Suite) {
		p.Fail("suite", "must be a suite name like \"noble-updates\"")
	}
	for name, v := range map[string]string{"ogrecomponent": a.Component, "archive_purpose": a.ArchivePurpose} {
		if v != "" && !controlWord().MatchString(v) {
			p.Fail(name, "must be one word of letters, digits, '-', '_' or '.', not %q", v)
		}
	}
	if a.Common.ImageType != "chroot" {
		p.Fail("image_type", "binarypackage builds need a chroot tarball, not an %q image", a.Common.ImageType)
	}
	if err := p.Err(); err != nil {
		return BinaryPackageArgs{}, err
	}
	return a, nil
}

// BinaryPackageManager runs one binary package build.
type BinaryPackageManager struct {
	req      Request
	args     BinaryPackageArgs
	dscName  string
	dsc      debian.Dsc
	progress ProgressFunc
}

// NewBinaryPackageManager is the binarypackage Factory. A filemap without
// exactly one .dsc, or whose .dsc names a file the filemap lacks or gives
// a size the cached file does not have, is refused here (Fault, builder
// stays IDLE): the request is malformed and no build could come of it.
// The reference raises ValueError for a missing .dsc, which also reaches
// the master as a Fault. Checksums are compared when the build runs
// (hashing large sources would hold up the build() call).
func NewBinaryPackageManager(req Request) (Manager, error) {
	a, err := ParseBinaryPackageArgs(req.Args)
	if err != nil {
		return nil, err
	}
	var dscs []string
	for name := range req.Files {
		if strings.HasSuffix(name, ".dsc") {
			dscs = append(dscs, name)
		}
	}
	sort.Strings(dscs)
	switch len(dscs) {
	case 0:
		return nil, &ArgError{Arg: "filemap", Reason: "has no .dsc file: a binary package build needs a source package"}
	case 1:
	default:
		return nil, &ArgError{Arg: "filemap", Reason: fmt.Sprintf("has %d .dsc files (%s): give one source package per build", len(dscs), strings.Join(dscs, ", "))}
	}
	name := dscs[0]
	if err := debian.CheckFileName(name); err != nil || !strings.Contains(name, "_") {
		return nil, &ArgError{Arg: "filemap", Reason: fmt.Sprintf("%q is not a .dsc file name like <source>_<version>.dsc", name)}
	}
	dsc, err := readDsc(req.Files[name])
	if err != nil {
		return nil, &ArgError{Arg: "filemap", Reason: fmt.Sprintf("%s: %v", name, err)}
	}
	for _, f := range dscSourceFiles(dsc) {
		path, ok := req.Files[f.Name]
		if !ok {
			return nil, &ArgError{Arg: "filemap", Reason: fmt.Sprintf("%s lists %s, which the filemap does not have", name, f.Name)}
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s from the file cache: %w", f.Name, err)
		}
		if st.Size() != f.Size {
			return nil, &ArgError{Arg: "filemap", Reason: fmt.Sprintf("%s says %s has %d bytes; the file sent has %d", name, f.Name, f.Size, st.Size())}
		}
	}
	return &BinaryPackageManager{req: req, args: a, dscName: name, dsc: dsc}, nil
}

func readDsc(path string) (debian.Dsc, error) {
	f, err := os.Open(path)
	if err != nil {
		return debian.Dsc{}, fmt.Errorf("cannot open: %w", err)
	}
	defer f.Close()
	d, err := debian.ParseDsc(f)
	if err != nil {
		return debian.Dsc{}, err
	}
	if len(d.Files) == 0 && len(d.ChecksumsSha256) == 0 {
		return debian.Dsc{}, fmt.Errorf("lists no files")
	}
	return d, nil
}

// Args are the validated arguments.
func (m *BinaryPackageManager) Args() BinaryPackageArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *BinaryPackageManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager: binary package builds have no builder proxy.
func (m *BinaryPackageManager) ProxyInfo() (bool, string) { return false, "" }

// binaryPackagePhases are the phases SetProgress is told about.
var binaryPackagePhases = []string{"prepare", "sbuild", "gather results", "clean up"}

// Run implements Manager.
func (m *BinaryPackageManager) Run(ctx context.Context, env *Env) Result {
	b := newSbuildBuild(env, m)
	return b.run(ctx)
}

// CurrentlyBuilding is /CurrentlyBuilding as the reference writes it.
func (m *BinaryPackageManager) CurrentlyBuilding() string {
	var sb strings.Builder
	pkg, _, _ := strings.Cut(m.dscName, "_")
	fmt.Fprintf(&sb, "Package: %s\nComponent: %s\nSuite: %s\nPurpose: %s\n", pkg, m.args.Component, m.args.Suite, m.args.ArchivePurpose)
	if m.args.BuildDebugSymbols {
		sb.WriteString("Build-Debug-Symbols: yes\n")
	}
	return sb.String()
}

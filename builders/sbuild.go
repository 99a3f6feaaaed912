package builders

// Running sbuild for the binarypackage manager: the build directory, the
// per-build sbuildrc, the chroot setup, the process, the status.
//
// Layout of <build_home>/build-<id> (the reference's build directory):
//
//	./                  the build user's (0711): sbuild's cwd and $HOME;
//	                    the .dsc and its files (copied from the file cache,
//	                    checksums checked); sbuild writes results here
//	.sbuildrc           launchpad-buildd's sbuildrc plus unshare mode
//	tmp/                sbuild's temporary root (unshare_tmpdir_template)
//	sbuild.log          what went into the build log, unsanitised, for the
//	                    dep-wait analysis (the reference reads its log file)
//	agent/              bind-mounted read-only at /srv/buildd-agent in the
//	                    root: setup.sh and the files it installs (sources,
//	                    keys, /CurrentlyBuilding), root:<build root's gid>
//	                    0750 so that only the build root can read them (a
//	                    private archive's sources carry a macaroon)
//	agent/lists/        where the build-deps-failed hook leaves apt's
//	                    Packages lists for the dep-wait analysis

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/buildd-agent/buildd-agent/builders/debian"
	"github.com/buildd-agent/buildd-agent/proxy"
	"github.com/buildd-agent/buildd-agent/rootfs"
)

// SbuildSetupMount is where the per-build setup directory appears in the
// build root. Repacking adds the directory to every chroot, because a
// bind mount needs an existing mount point.
const SbuildSetupMount = "/srv/buildd-agent"

// sbuildStalledTimeout is the reference's $stalled_pkg_timeout (minutes
// without output before sbuild kills the build).
const sbuildStalledTimeout = 150

// SbuildUser is the unprivileged user sbuild runs as, and the subordinate
// id ranges its build roots are mapped to.
type SbuildUser struct {
	Name     string
	UID, GID uint32
	// SubUID and SubGID are the first host ids of the user's first
	// subordinate ranges: the build root's root is mapped to them.
	SubUID, SubGID uint32
}

// sbuildMinSubIDs is what sbuild's unshare mode needs (a whole 16-bit
// id space for the build root).
const sbuildMinSubIDs = 65536

// Seams for tests.
var (
	subUIDFile = "/etc/subuid"
	subGIDFile = "/etc/subgid"
	lookPath   = exec.LookPath
	// lookupSbuildUser finds the build user and its ranges.
	lookupSbuildUser = LookupSbuildUser
	// startSbuild starts the sbuild process tree.
	startSbuild = func(c rootfs.IsolatedCommand) (sbuildProcess, error) { return rootfs.StartIsolated(c) }
)

// sbuildProcess is a running sbuild (rootfs.Isolated).
type sbuildProcess interface {
	Wait() (int, error)
	Kill()
	// Listen and Release: see rootfs.Isolated (a network of its own).
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	Release() error
}

// sbuildGateAddr is where the archive gate listens inside sbuild's own
// network: the namespace is the build's alone, so a fixed port is free,
// and the build root's apt configuration can name it before sbuild starts.
const sbuildGateAddr = "127.0.0.1:3142"

// sbuildBuild is one binarypackage build's run-time state.
type sbuildBuild struct {
	env      *Env
	m        *BinaryPackageManager
	log      io.Writer
	arch     string
	dir      string
	user     SbuildUser
	progress ProgressFunc
	step     int
	// ownNetwork: sbuild runs in a network namespace of its own and apt
	// reaches the archives through the archive gate (proxy/archivegate.go).
	ownNetwork bool
}

func newSbuildBuild(env *Env, m *BinaryPackageManager) *sbuildBuild {
	arch := m.args.Common.ArchTag
	if arch == "" {
		arch = env.Config.Arch
	}
	return &sbuildBuild{env: env, m: m, log: env.Log, arch: arch, progress: m.progress}
}

func (b *sbuildBuild) logf(format string, a ...any) {
	fmt.Fprintf(b.log, format+"\n", a...)
}

func (b *sbuildBuild) phase(name string) {
	b.step++
	if b.progress != nil {
		b.progress(b.step, len(binaryPackagePhases), name)
	}
}

// fail ends the build with status; an abort wins over anything else.
func (b *sbuildBuild) fail(ctx context.Context, status BuildStatus, format string, a ...any) *Failure {
	if ctx.Err() != nil {
		return &Failure{Status: BuildAborted, Err: ctx.Err()}
	}
	return Fail(status, format, a...)
}

func (b *sbuildBuild) run(ctx context.Context) Result {
	f := b.build(ctx)
	b.phase("clean up")
	if f != nil && f.Status != BuildAborted {
		b.logf("%s", f.Err)
	}
	// The build directory goes whatever fast_cleanup says: it is small
	// unless sbuild was killed with its unpacked root inside, and a
	// long-lived builder must not collect those.
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			b.logf("cannot remove %s: %v", b.dir, err)
			if f == nil {
				f = Fail(BuildBuilderFail, "cannot remove the build directory: %w", err)
			}
		}
	}
	pruneSbuildChroots(b.env.Config)
	if ctx.Err() != nil {
		return Result{Status: BuildAborted}
	}
	if f == nil {
		return Result{Status: BuildOK}
	}
	res := Result{Status: f.Status}
	var dep *depWait
	if errors.As(f.Err, &dep) {
		res.Dependencies = dep.deps
	}
	return res
}

// depWait carries DEPFAIL's dependencies through a Failure.
type depWait struct{ deps string }

func (d *depWait) Error() string { return "Dependencies: " + d.deps }

func (b *sbuildBuild) build(ctx context.Context) *Failure {
	b.phase("prepare")
	u, err := lookupSbuildUser(b.env.Config.SbuildUser)
	if err != nil {
		return Fail(BuildBuilderFail, "cannot build: %w", err)
	}
	b.user = u
	if f := b.makeDir(ctx); f != nil {
		return f
	}
	if f := b.copySources(ctx); f != nil {
		return f
	}
	chroot, err := ensureSbuildChroot(ctx, b.env.Config, b.m.req.Chroot, b.log)
	if err != nil {
		return b.fail(ctx, BuildChrootFail, "%w", err)
	}
	if f := b.writeSetup(); f != nil {
		return f
	}
	if err := b.writeSbuildrc(); err != nil {
		return Fail(BuildBuilderFail, "cannot write .sbuildrc: %w", err)
	}

	b.phase("sbuild")
	code, f := b.runSbuild(ctx, chroot)
	if f != nil {
		return f
	}
	if f := b.analyse(ctx, code); f != nil {
		return f
	}
	b.phase("gather results")
	return b.gather(ctx)
}

// makeDir creates the build directory (leftovers of a crashed run of the
// same build id are removed first: the retried build must not fail on them).
func (b *sbuildBuild) makeDir(ctx context.Context) *Failure {
	home := b.env.Config.BuildHome
	if home == "" {
		return Fail(BuildBuilderFail, "cannot build: no build home configured")
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return Fail(BuildBuilderFail, "cannot create the build home: %w", err)
	}
	if err := checkSearchable(home); err != nil {
		return Fail(BuildBuilderFail, "cannot build: %w", err)
	}
	dir := filepath.Join(home, "build-"+b.m.req.BuildID)
	if _, err := os.Lstat(dir); err == nil {
		b.logf("Removing what an earlier run of build-%s left", b.m.req.BuildID)
		if err := os.RemoveAll(dir); err != nil {
			return Fail(BuildBuilderFail, "cannot remove %s: %w", dir, err)
		}
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		return Fail(BuildBuilderFail, "cannot create the build directory: %w", err)
	}
	b.dir = dir
	// The mode again: Mkdir's is filtered by the umask.
	mk := []struct {
		path     string
		mode     fs.FileMode
		uid, gid uint32
	}{
		{dir, 0o711, b.user.UID, b.user.GID},
		{filepath.Join(dir, "tmp"), 0o770, b.user.UID, b.user.SubGID},
		{filepath.Join(dir, "agent"), 0o750, 0, b.user.SubGID},
		{filepath.Join(dir, "agent", "files"), 0o750, 0, b.user.SubGID},
		{filepath.Join(dir, "agent", "lists"), 0o700, b.user.SubUID, b.user.SubGID},
	}
	for _, d := range mk {
		if d.path != dir {
			if err := os.Mkdir(d.path, d.mode); err != nil {
				return Fail(BuildBuilderFail, "cannot create %s: %w", d.path, err)
			}
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return Fail(BuildBuilderFail, "cannot set the mode of %s: %w", d.path, err)
		}
		if err := os.Lchown(d.path, int(d.uid), int(d.gid)); err != nil {
			return Fail(BuildBuilderFail, "cannot set the owner of %s: %w", d.path, err)
		}
	}
	return nil
}

// sourceFile is one file of the source package with the checksum the
// .dsc gives for it.
type sourceFile struct {
	Name string
	Size int64
	Hash string
	New  func() hash.Hash
	Algo string
}

// dscSourceFiles lists the .dsc's files with their strongest checksum.
func dscSourceFiles(d debian.Dsc) []sourceFile {
	var out []sourceFile
	if len(d.ChecksumsSha256) > 0 {
		for _, e := range d.ChecksumsSha256 {
			out = append(out, sourceFile{Name: e.Name, Size: e.Size, Hash: e.Hash, New: sha256.New, Algo: "SHA-256"})
		}
		return out
	}
	for _, e := range d.Files {
		out = append(out, sourceFile{Name: e.Name, Size: e.Size, Hash: e.Hash, New: md5.New, Algo: "MD5"})
	}
	return out
}

// copySources copies the .dsc and its files from the file cache into the
// build directory, owned by the build user, checking each checksum on the
// way (one read per file).
func (b *sbuildBuild) copySources(ctx context.Context) *Failure {
	files := append([]sourceFile{{Name: b.m.dscName}}, dscSourceFiles(b.m.dsc)...)
	for _, sf := range files {
		if ctx.Err() != nil {
			return b.fail(ctx, BuildAborted, "aborted")
		}
		src := b.m.req.Files[sf.Name]
		dst := filepath.Join(b.dir, sf.Name)
		sum, err := copyFileHashed(src, dst, sf.New, int(b.user.UID), int(b.user.GID))
		if err != nil {
			return Fail(BuildBuilderFail, "cannot copy %s into the build directory: %w", sf.Name, err)
		}
		if sf.New != nil && !strings.EqualFold(sum, sf.Hash) {
			return Fail(BuildPackageFail, "%s does not match %s: its %s is %s, the .dsc says %s", sf.Name, b.m.dscName, sf.Algo, sum, sf.Hash)
		}
	}
	return nil
}

func copyFileHashed(src, dst string, newHash func() hash.Hash, uid, gid int) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return "", err
	}
	var w io.Writer = out
	var h hash.Hash
	if newHash != nil {
		h = newHash()
		w = io.MultiWriter(out, h)
	}
	_, err = io.Copy(w, in)
	if err == nil {
		err = out.Chown(uid, gid)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if h == nil {
		return "", nil
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeSetup writes the agent/ directory that the chroot-setup-commands
// read: the archives and keys (launchpad-buildd's SOURCES and KEYS
// states) and /CurrentlyBuilding.
func (b *sbuildBuild) writeSetup() *Failure {
	a := b.m.args
	aptProxy := b.env.Config.AptProxyURL
	// With archives given (buildd-manager always sends them), sbuild gets
	// a network of its own: apt reaches those archives, and only them,
	// through the archive gate; nothing the build root runs (maintainer
	// scripts of build-dependencies included) reaches the agent or any
	// other host service. The build itself is offline anyway (sbuild's
	// own empty network namespace).
	b.ownNetwork = len(a.Common.Archives) > 0
	if b.ownNetwork {
		aptProxy = "http://" + sbuildGateAddr + "/"
	} else {
		b.logf("No archives given: the build root uses the chroot's own sources, on the host's network")
	}
	setup, err := NewAptSetup(b.m.req.BuildID, a.Common.Series, a.Common.Archives, a.Common.TrustedKeys, aptProxy)
	if err != nil {
		return Fail(BuildChrootFail, "%w", err)
	}
	if b.ownNetwork {
		setup.Files = append(setup.Files, AptFile{Path: "/etc/apt/apt.conf.d/99proxy-https",
			Data: []byte(fmt.Sprintf("Acquire::https::Proxy \"%s\";\n", aptProxy))})
	}
	for _, n := range setup.Notes {
		b.logf("%s", n)
	}
	setup.Files = append(setup.Files,
		AptFile{Path: "/CurrentlyBuilding", Data: []byte(b.m.CurrentlyBuilding())},
		// The build root is thrown away when sbuild exits: dpkg's fsyncs
		// while it installs the build-dependencies protect nothing, and
		// cost about half of the install time on this class of machine.
		AptFile{Path: "/etc/dpkg/dpkg.cfg.d/buildd-agent-unsafe-io", Data: []byte("force-unsafe-io\n")})
	script := sbuildSetupScript(setup)
	write := func(name string, data []byte) error {
		p := filepath.Join(b.dir, "agent", name)
		if err := os.WriteFile(p, data, 0o640); err != nil {
			return err
		}
		return os.Lchown(p, 0, int(b.user.SubGID))
	}
	for i, f := range setup.Files {
		if err := write(filepath.Join("files", strconv.Itoa(i)), f.Data); err != nil {
			return Fail(BuildBuilderFail, "cannot write the chroot setup: %w", err)
		}
	}
	if err := write("setup.sh", []byte(script)); err != nil {
		return Fail(BuildBuilderFail, "cannot write the chroot setup: %w", err)
	}
	if err := write("dep-lists.sh", []byte(sbuildDepListsScript)); err != nil {
		return Fail(BuildBuilderFail, "cannot write the chroot setup: %w", err)
	}
	return nil
}

// sbuildSetupScript is the chroot-setup command: it runs in the build
// root as its root, before sbuild's apt-get update. Every path in it is
// the agent's own (NewAptSetup's constants and file indexes), so no
// quoting of build input is needed.
func sbuildSetupScript(s AptSetup) string {
	var sb strings.Builder
	sb.WriteString("set -e\n")
	for _, p := range s.Remove {
		fmt.Fprintf(&sb, "rm -f %s\n", ShellQuote(p))
	}
	for i, f := range s.Files {
		fmt.Fprintf(&sb, "install -m 0644 %s/files/%d %s\n", SbuildSetupMount, i, ShellQuote(f.Path))
	}
	return sb.String()
}

// sbuildDepListsScript runs when the build dependencies cannot be
// installed: it leaves apt's Packages lists where the agent can read them
// for the dep-wait analysis (the reference reads them from the chroot,
// which sbuild's unshare mode deletes when it exits).
const sbuildDepListsScript = `for f in $(apt-get indextargets --format '$(FILENAME)' 'Created-By: Packages'); do
	/usr/lib/apt/apt-helper cat-file "$f"
	echo
done > ` + SbuildSetupMount + `/lists/Packages || true
`

// writeSbuildrc writes launchpad-buildd's sbuildrc with what unshare mode
// needs: sbuild must update the fresh root itself ($apt_update and
// $apt_distupgrade, the reference's UPDATE state), and the setup runs
// from the bind-mounted agent/ directory.
func (b *sbuildBuild) writeSbuildrc() error {
	fqdn := hostFQDN()
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Written by buildd-agent for build-%s.\n", b.m.req.BuildID)
	fmt.Fprintf(&sb, "$maintainer_name = %s;\n", perlQuote("Launchpad Build Daemon <buildd@"+fqdn+">"))
	sb.WriteString(`$build_arch_all = 0;
$apt_update = 1;
$apt_distupgrade = 1;
$apt_allow_unauthenticated = 1;
$resolve_alternatives = 1;
$build_environment = {
    'LANG' => 'C.UTF-8',
    'TERM' => 'unknown',
    'V' => '1',
};
$environment_filter = [
    '^DEB_BUILD_OPTIONS$',
];
$purge_build_deps = 'never';
`)
	fmt.Fprintf(&sb, "$stalled_pkg_timeout = %d;\n", sbuildStalledTimeout)
	sb.WriteString(`$run_lintian = 0;
$run_piuparts = 0;
$run_autopkgtest = 0;
$bd_uninstallable_explainer = '';
$sbuild_mode = 'buildd';
$check_space = 0;
$chroot_mode = 'unshare';
`)
	fmt.Fprintf(&sb, "$unshare_tmpdir_template = %s;\n", perlQuote(filepath.Join(b.dir, "tmp", "tmp.sbuild.XXXXXXXXXX")))
	fmt.Fprintf(&sb, "$unshare_bind_mounts = [ { directory => %s, mountpoint => %s } ];\n",
		perlQuote(filepath.Join(b.dir, "agent")), perlQuote(SbuildSetupMount))
	fmt.Fprintf(&sb, "$external_commands = {\n    'chroot-setup-commands' => [ ['sh', %s] ],\n    'build-deps-failed-commands' => [ ['sh', %s] ],\n};\n",
		perlQuote(SbuildSetupMount+"/setup.sh"), perlQuote(SbuildSetupMount+"/dep-lists.sh"))
	sb.WriteString("1;\n")
	p := filepath.Join(b.dir, ".sbuildrc")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		return err
	}
	return os.Lchown(p, int(b.user.UID), int(b.user.GID))
}

// perlQuote is a single-quoted Perl string.
func perlQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// hostFQDN is what `hostname --fqdn` says (the reference's sbuildrc runs
// it), or the host name.
func hostFQDN() string {
	if out, err := exec.Command("hostname", "--fqdn").Output(); err == nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			return s
		}
	}
	h, _ := os.Hostname()
	return h
}

// sbuildArgv is the sbuild command line: sbuild-package's, with unshare
// mode's chroot tarball instead of a schroot name.
func (b *sbuildBuild) sbuildArgv(chroot string) []string {
	var argv []string
	if p := debian.Personality(b.arch); p != "" {
		argv = append(argv, p)
	}
	argv = append(argv, "sbuild", "--chroot-mode=unshare", "-c", chroot,
		"--arch="+b.arch, "--dist="+b.m.args.Suite, "--nolog")
	if b.m.args.ArchIndep {
		argv = append(argv, "-A")
	}
	return append(argv, b.m.dscName)
}

// debBuildOptions is DEB_BUILD_OPTIONS as binarypackage.py and
// sbuild-package set it ("" = unset).
func debBuildOptions(debugSymbols bool, cpus int) string {
	var opts []string
	if !debugSymbols {
		opts = append(opts, "noautodbgsym")
	}
	if cpus > 1 {
		opts = append(opts, "parallel="+strconv.Itoa(cpus))
	}
	return strings.Join(opts, " ")
}

func (b *sbuildBuild) sbuildEnv() []string {
	env := []string{
		"HOME=" + b.dir,
		"USER=" + b.user.Name,
		"LOGNAME=" + b.user.Name,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"TMPDIR=" + filepath.Join(b.dir, "tmp"),
	}
	if o := debBuildOptions(b.m.args.BuildDebugSymbols, runtime.NumCPU()); o != "" {
		env = append(env, "DEB_BUILD_OPTIONS="+o)
	}
	return env
}

// runSbuild runs sbuild through the implicit-pointer-function filter into
// the build log and returns sbuild-package's exit status (the pipeline's,
// with pipefail).
func (b *sbuildBuild) runSbuild(ctx context.Context, chroot string) (int, *Failure) {
	cpus := runtime.NumCPU()
	b.logf("Initiating build %s with %d jobs across %d processor cores.", b.m.req.BuildID, cpus, cpus)
	b.logf("Kernel reported to sbuild: %s", kernelReport(debian.Personality(b.arch)))
	raw, err := os.OpenFile(filepath.Join(b.dir, "sbuild.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, Fail(BuildBuilderFail, "cannot create the sbuild log: %w", err)
	}
	defer raw.Close()
	warnOnly := debian.ImplicitPointerWarnOnly(b.arch, b.m.args.Suite)
	filter := debian.NewImplicitPointerFilter(io.MultiWriter(b.log, raw), true)
	argv := b.sbuildArgv(chroot)
	fmt.Fprintf(b.log, "[%s]\nRUN: %s\n", now().Format(CtimeLayout), QuoteArgs(argv))
	p, err := startSbuild(rootfs.IsolatedCommand{
		Args:       argv,
		Env:        b.sbuildEnv(),
		Dir:        b.dir,
		UID:        b.user.UID,
		GID:        b.user.GID,
		Stdout:     filter,
		Stderr:     filter,
		NewNetwork: b.ownNetwork,
	})
	if err != nil {
		return 0, b.fail(ctx, BuildBuilderFail, "cannot run sbuild: %w", err)
	}
	if b.ownNetwork {
		ln, err := p.Listen(ctx, "tcp", sbuildGateAddr)
		if err == nil {
			var g *proxy.ArchiveGate
			g, err = proxy.StartArchiveGate(ln, proxy.ArchiveGateConfig{Archives: b.m.args.Common.Archives, Upstream: b.env.Config.AptProxyURL, Log: b.log})
			if err == nil {
				defer g.Stop()
			} else {
				ln.Close()
			}
		}
		if err == nil {
			err = p.Release()
		}
		if err != nil {
			p.Kill()
			p.Wait()
			return 0, b.fail(ctx, BuildBuilderFail, "cannot give sbuild its archives: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, p.Kill)
	code, werr := p.Wait()
	stop()
	filter.Close()
	if ctx.Err() != nil {
		return 0, &Failure{Status: BuildAborted, Err: ctx.Err()}
	}
	if werr != nil {
		return 0, Fail(BuildBuilderFail, "cannot learn sbuild's exit status: %w", werr)
	}
	if filter.Problems() > 0 && !warnOnly {
		return 2, nil
	}
	return code, nil
}

// kernelReport is `$LINUX32 uname -rvm`.
func kernelReport(personality string) string {
	argv := []string{"uname", "-rvm"}
	if personality != "" {
		argv = append([]string{personality}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

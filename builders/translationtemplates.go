package builders

// The translation-templates manager: launchpad-buildd's
// TranslationTemplatesBuildManager (lpbuildd/translationtemplates.py) and
// its in-target generate-translation-templates operation
// (lpbuildd/target/generate_translation_templates.py, lpbuildd/pottery).
//
// It runs in the reference's chroot backend (an unprivileged user-namespace
// chroot made from the job's chroot tarball). The branch is checked out on
// the host (git with go-git, Bazaar with Breezy) and streamed in, as the
// target has no way out; intltool runs inside.
//
//	what failed                                   reference              status
//	----------------------------------------------------------------------------------
//	making, creating or starting the target       unpack/mount-chroot ≠0 CHROOTFAIL
//	archives, trusted_keys, apt-get update        sources/keys/update ≠0 CHROOTFAIL
//	apt-get install intltool                      exit 200               CHROOTFAIL
//	the checkout (vcs error, bad ref), find,      exit 201               PACKAGEFAIL
//	  tar of the templates
//	a command cannot be run at all, copying the   operation dies ≠200/1  BUILDERFAIL
//	  tree into the target fails
//	no template found                             exit 0, no tarball     OK, empty filemap
//	everything succeeded                          exit 0                 OK, the tarball

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() { Register("translation-templates", NewTranslationTemplatesManager) }

// DefaultTranslationTemplatesResult is the reference's
// [translationtemplatesmanager] resultarchive, the only file
// buildd-manager fetches from such a build.
const DefaultTranslationTemplatesResult = "translation-templates.tar.gz"

// ttWorkDir is the build's directory in the target (the reference's $HOME
// of the build user); the tree goes to ttWorkDir/source-tree.
const ttWorkDir = "/build"

// potConfigMaxBytes bounds what is read of one build file for its domain.
const potConfigMaxBytes = 4 << 20

// TranslationTemplatesArgs are the manager's build arguments.
type TranslationTemplatesArgs struct {
	Common CommonArgs
	// Branch is a Bazaar branch (branch, or the legacy branch_url that
	// buildd-manager sends); GitRepository/GitPath a git one.
	Branch        string
	GitRepository string
	GitPath       string
}

// ParseTranslationTemplatesArgs validates the arguments: one of branch,
// branch_url or git_repository (the reference's --branch XOR
// --git-repository); git_path only with git_repository.
func ParseTranslationTemplatesArgs(args map[string]any) (TranslationTemplatesArgs, error) {
	p := NewArgParser(args)
	var a TranslationTemplatesArgs
	a.Common = ParseCommonArgs(p)
	a.Branch = p.String("branch")
	if a.Branch == "" {
		a.Branch = p.String("branch_url")
	}
	a.GitRepository = p.String("git_repository")
	a.GitPath = p.String("git_path")
	parseVCSSource(p, a.Branch, a.GitRepository, a.GitPath)
	if err := p.Err(); err != nil {
		return TranslationTemplatesArgs{}, err
	}
	return a, nil
}

// parseVCSSource checks the reference's VCSOperationMixin rules.
func parseVCSSource(p *ArgParser, branch, gitRepository, gitPath string) {
	switch {
	case branch != "" && gitRepository != "":
		p.Fail("git_repository", "give either branch or git_repository, not both")
	case branch == "" && gitRepository == "":
		p.Fail("branch", "is required (or git_repository)")
	case gitPath != "" && gitRepository == "":
		p.Fail("git_path", "requires git_repository")
	}
	if branch != "" && !bzrBranchURL(branch) {
		// Breezy runs on the host: no file:// or sftp:// reads of it.
		p.Fail("branch", "must be an http, https or bzr URL, or lp:")
	}
	for name, v := range map[string]string{"branch": branch, "git_repository": gitRepository, "git_path": gitPath} {
		if strings.HasPrefix(v, "-") {
			p.Fail(name, "must not start with '-'")
		}
		if strings.ContainsAny(v, "\n\r") {
			p.Fail(name, "must be one line")
		}
	}
}

// bzrBranchURL says whether a Bazaar branch location is one Breezy may
// read from the network on the host: http(s)://, bzr:// with a host, or
// Launchpad's lp: shorthand.
func bzrBranchURL(s string) bool {
	if strings.HasPrefix(s, "lp:") && len(s) > 3 && !strings.ContainsAny(s, " \t") {
		return true
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "http", "https", "bzr":
		return true
	}
	return false
}

// TranslationTemplatesManager runs one translation-templates build.
type TranslationTemplatesManager struct {
	req      Request
	args     TranslationTemplatesArgs
	progress ProgressFunc
}

// NewTranslationTemplatesManager is the manager's Factory.
func NewTranslationTemplatesManager(req Request) (Manager, error) {
	a, err := ParseTranslationTemplatesArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &TranslationTemplatesManager{req: req, args: a}, nil
}

// Args are the validated arguments.
func (m *TranslationTemplatesManager) Args() TranslationTemplatesArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *TranslationTemplatesManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager: these builds have no proxy.
func (m *TranslationTemplatesManager) ProxyInfo() (bool, string) { return false, "" }

var ttPhases = []string{"start target", "install", "fetch source", "generate templates", "gather results", "clean up"}

func (m *TranslationTemplatesManager) resultName(env *Env) string {
	if n := env.Config.TranslationTemplatesResult; n != "" {
		return n
	}
	return DefaultTranslationTemplatesResult
}

// Run implements Manager.
func (m *TranslationTemplatesManager) Run(ctx context.Context, env *Env) Result {
	b := NewContainerBuild(env, m.req, m.args.Common, m.progress, ttPhases)
	b.AddURLSecrets(m.args.GitRepository)
	b.AddURLSecrets(m.args.Branch)
	result := m.resultName(env)
	f := m.build(ctx, b, result)
	if f == nil {
		b.Phase("gather results")
		f = b.GatherResults(ctx, ttWorkDir, func(name string) bool { return name == result })
	}
	return b.Finish(ctx, f)
}

func (m *TranslationTemplatesManager) build(ctx context.Context, b *ContainerBuild, result string) *Failure {
	a := m.args
	b.Phase("start target")
	if f := b.StartTarget(ctx, "chroot", m.req.Chroot); f != nil {
		return f
	}
	archives := a.Common.Archives
	if len(archives) == 0 && len(a.Common.TrustedKeys) == 0 {
		// buildd-manager sends none (chrootsources.go).
		own, err := b.ChrootOwnArchives(ctx)
		if err != nil {
			return b.ctxFail(ctx, BuildChrootFail, "cannot read the chroot's apt sources: %w", err)
		}
		if len(own) > 0 {
			b.Logf("No archives given: updating from the chroot's own apt sources, as launchpad-buildd's update-debian-chroot does")
			archives = own
		}
	}
	if f := b.ConfigureArchives(ctx, archives, a.Common.TrustedKeys, b.Env.Config.AptProxyURL); f != nil {
		return f
	}

	b.Phase("install")
	b.Logf("Installing dependencies...")
	// The reference installs bzr or git as well; the checkout is made on
	// the host here, so the target needs neither.
	if f := b.Run(ctx, BuildChrootFail, target.Command{Args: []string{"apt-get", "-y", "install", "intltool"},
		Env: []string{"DEBIAN_FRONTEND=noninteractive"}}); f != nil {
		return prefixFailure(f, "Install failed")
	}

	b.Phase("fetch source")
	tree := path.Join(ttWorkDir, "source-tree")
	if a.Branch != "" {
		b.Logf("Fetching %s...", describeSource(a.Branch, ""))
		revno, f := b.FetchBzr(ctx, a.Branch, tree)
		if f != nil {
			return prefixFailure(f, "Build failed")
		}
		b.Logf("Fetched revno %s", revno)
	} else {
		desc := describeSource(a.GitRepository, "")
		if a.GitPath != "" {
			desc += " " + a.GitPath
		}
		b.Logf("Fetching %s...", desc)
		if _, f := b.FetchGit(ctx, a.GitRepository, a.GitPath, tree, ""); f != nil {
			return prefixFailure(f, "Build failed")
		}
	}

	b.Phase("generate templates")
	b.Logf("Generating templates...")
	pots, f := generatePots(ctx, b, tree)
	if f != nil {
		return prefixFailure(f, "Build failed")
	}
	b.Logf("Generated %d templates.", len(pots))
	if len(pots) == 0 {
		return nil
	}
	tarname := path.Join(ttWorkDir, result)
	b.Logf("Making tarball with templates in %s...", tarname)
	cmd := []string{"tar", "-C", tree, "-czf", tarname, "--"}
	for _, p := range pots {
		b.Logf("Adding template %s...", path.Join(tree, p))
		cmd = append(cmd, p)
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: cmd}); f != nil {
		return prefixFailure(f, "Build failed")
	}
	b.Logf("Tarball generated.")
	return nil
}

// generatePots is the reference's generate_pots: every directory holding
// a POTFILES.in whose listed files all exist, sorted, gets a template named
// after its domain. It returns the templates' paths relative to tree.
func generatePots(ctx context.Context, b *ContainerBuild, tree string) ([]string, *Failure) {
	out, code, err := b.Output(ctx, target.Command{Args: []string{"find", tree, "-mindepth", "1",
		"!", "-type", "d", "-name", "POTFILES.in", "-printf", `%P\0`}})
	if err != nil {
		return nil, b.ctxFail(ctx, BuildBuilderFail, "cannot run find: %w", err)
	}
	if code != 0 {
		return nil, b.ctxFail(ctx, BuildPackageFail, "find failed with exit status %d", code)
	}
	var dirs []string
	for _, p := range splitNUL(out) {
		podir := path.Dir(p)
		if podir == "." {
			podir = ""
		}
		ok, f := checkPotfilesIn(ctx, b, path.Join(tree, podir))
		if f != nil {
			return nil, f
		}
		if ok {
			dirs = append(dirs, podir)
		}
	}
	sort.Strings(dirs)
	var pots []string
	for _, podir := range dirs {
		full := path.Join(tree, podir)
		domain, found := PotDomain(func(name string) ([]byte, bool) { return readPotConfig(ctx, b, path.Join(full, name)) })
		effective := EffectivePotDomain(domain, found)
		code, err := Run(ctx, b.Target, b.Log, target.Command{
			Args: []string{"/usr/bin/intltool-update", "-p", "-g", effective}, Dir: full,
			Stdout: io.Discard, Stderr: io.Discard,
		})
		if err != nil {
			return nil, b.ctxFail(ctx, BuildBuilderFail, "cannot run intltool-update: %w", err)
		}
		if ctx.Err() != nil {
			return nil, &Failure{Status: BuildAborted, Err: ctx.Err()}
		}
		if code == 0 {
			pots = append(pots, path.Join(podir, effective+".pot"))
		}
	}
	return pots, nil
}

// splitNUL splits find's -printf '%P\0' output, dropping the empty tail.
func splitNUL(s string) []string {
	parts := strings.Split(s, "\x00")
	return parts[:len(parts)-1]
}

// checkPotfilesIn is the reference's check_potfiles_in: the directory
// exists, `intltool-update -m` succeeds there and leaves no "notexist".
func checkPotfilesIn(ctx context.Context, b *ContainerBuild, dir string) (bool, *Failure) {
	info, err := b.Target.Stat(ctx, dir)
	if err != nil || !info.Mode.IsDir() {
		return false, nil
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"rm", "-f", path.Join(dir, "missing"), path.Join(dir, "notexist")}}); f != nil {
		return false, f
	}
	code, err := Run(ctx, b.Target, b.Log, target.Command{Args: []string{"/usr/bin/intltool-update", "-m"},
		Dir: dir, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		return false, b.ctxFail(ctx, BuildBuilderFail, "cannot run intltool-update: %w", err)
	}
	if ctx.Err() != nil {
		return false, &Failure{Status: BuildAborted, Err: ctx.Err()}
	}
	if code != 0 {
		return false, nil
	}
	_, err = b.Target.Stat(ctx, path.Join(dir, "notexist"))
	return errors.Is(err, target.ErrNotExist), nil
}

// readPotConfig reads a build file from the target, at most
// potConfigMaxBytes of it; a missing file, or one that is not a regular
// file (the target never follows a symlink out), counts as absent.
func readPotConfig(ctx context.Context, b *ContainerBuild, p string) ([]byte, bool) {
	info, err := b.Target.Stat(ctx, p)
	if err != nil || !info.Mode.IsRegular() {
		return nil, false
	}
	w := &cappedBuffer{max: potConfigMaxBytes}
	if err := b.Target.CopyOut(ctx, p, w); err != nil && !errors.Is(err, errCapped) {
		b.Logf("Cannot read %s: %v", p, err)
		return nil, false
	}
	return w.buf.Bytes(), true
}

var errCapped = errors.New("capped")

// cappedBuffer keeps the first max bytes written and then refuses more.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	room := c.max - c.buf.Len()
	if len(p) > room {
		c.buf.Write(p[:room])
		return room, errCapped
	}
	return c.buf.Write(p)
}

// String is what was kept.
func (c *cappedBuffer) String() string { return c.buf.String() }

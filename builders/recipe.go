package builders

// The sourcepackagerecipe manager: launchpad-buildd's
// SourcePackageRecipeBuildManager (lpbuildd/sourcepackagerecipe.py) and
// its host script bin/buildrecipe, run from the agent against the chroot
// backend (an unprivileged user-namespace chroot from the job's tarball).
//
// As in the reference, git-build-recipe assembles the tree on the host;
// the tree is then streamed into the target, where the build-dependencies
// are installed from the build's archives and dpkg-buildpackage -S makes
// the source package. bzr-builder recipes (git false) need bzr-builder,
// which Debian does not ship: such a build ends at once as PACKAGEFAIL
// with a line saying so (never a Fault at dispatch).
//
//	what failed                                   buildrecipe exit       status
//	----------------------------------------------------------------------------------
//	making, creating or starting the target,      unpack/mount ≠ 0       CHROOTFAIL
//	  archives, trusted_keys, apt-get update
//	apt-get install lsb-release                   200                    PACKAGEFAIL
//	git-build-recipe (bad recipe, unknown ref)    201                    PACKAGEFAIL
//	apt-get build-dep                             202                    DEPFAIL with the missing
//	                                                                     dependency from the log,
//	                                                                     else PACKAGEFAIL
//	dpkg-buildpackage -S                          203                    PACKAGEFAIL
//	a bzr-builder recipe                          (201: no bzr dailydeb) PACKAGEFAIL
//	a command cannot be run, lsb_release fails,   other                  BUILDERFAIL
//	  the tree is not one directory
//	everything succeeded                          0                      OK: the _source.changes,
//	                                                                     its files, manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/buildd-agent/buildd-agent/builders/debian"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() {
	Register("sourcepackagerecipe", NewRecipeManager)
}

// GitBuildRecipeCommand is git-build-recipe on the host (a seam for tests).
var GitBuildRecipeCommand = "git-build-recipe"

// recipeWorkDir is the build's work directory in the target (the
// reference's $HOME/work); the tree is recipeWorkDir/tree.
const recipeWorkDir = "/build/work"

// recipeLogMaxBytes bounds what of apt-get build-dep's output is kept for
// the dep-wait analysis.
const recipeLogMaxBytes = 1 << 20

// RecipeArgs are the manager's build arguments (buildd-manager-args §4.2).
type RecipeArgs struct {
	Common           CommonArgs
	RecipeText       string
	Suite            string
	Component        string
	AuthorName       string
	AuthorEmail      string
	ArchivePurpose   string
	DistroSeriesName string
	Git              bool
}

// recipeToken: what goes into /CurrentlyBuilding and the changelog's
// distribution must be one plain word.
var recipeToken = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$`) })

// ParseRecipeArgs validates a recipe build's arguments.
func ParseRecipeArgs(args map[string]any) (RecipeArgs, error) {
	p := NewArgParser(args)
	var a RecipeArgs
	a.Common = ParseCommonArgs(p)
	a.RecipeText = p.RequiredString("recipe_text")
	a.Suite = p.RequiredString("suite")
	a.Component = p.RequiredString("ogrecomponent")
	a.AuthorName = p.RequiredString("author_name")
	a.AuthorEmail = p.RequiredString("author_email")
	a.ArchivePurpose = p.RequiredString("archive_purpose")
	a.DistroSeriesName = p.String("distroseries_name")
	if a.DistroSeriesName == "" {
		// The reference passes the build's series as DISTROSERIES-NAME.
		a.DistroSeriesName = a.Common.Series
	}
	a.Git = p.Bool("git")
	for name, v := range map[string]string{"suite": a.Suite, "ogrecomponent": a.Component,
		"archive_purpose": a.ArchivePurpose, "distroseries_name": a.DistroSeriesName} {
		if v != "" && !recipeToken().MatchString(v) {
			p.Fail(name, "must be one word of letters, digits and .+_-")
		}
	}
	for name, v := range map[string]string{"author_name": a.AuthorName, "author_email": a.AuthorEmail} {
		if strings.ContainsAny(v, "\n\r") {
			p.Fail(name, "must be one line")
		}
	}
	if len(a.RecipeText) > 1<<20 {
		p.Fail("recipe_text", "is over 1 MiB")
	}
	if err := p.Err(); err != nil {
		return RecipeArgs{}, err
	}
	return a, nil
}

// RecipeManager runs one source package recipe build.
type RecipeManager struct {
	req      Request
	args     RecipeArgs
	progress ProgressFunc
}

// NewRecipeManager is the manager's Factory.
func NewRecipeManager(req Request) (Manager, error) {
	a, err := ParseRecipeArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &RecipeManager{req: req, args: a}, nil
}

// Args are the validated arguments.
func (m *RecipeManager) Args() RecipeArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *RecipeManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager: recipe builds have no proxy.
func (m *RecipeManager) ProxyInfo() (bool, string) { return false, "" }

var recipePhases = []string{"start target", "install", "build tree", "install build-dependencies",
	"build source package", "gather results", "clean up"}

// Run implements Manager.
func (m *RecipeManager) Run(ctx context.Context, env *Env) Result {
	b := NewContainerBuild(env, m.req, m.args.Common, m.progress, recipePhases)
	// A recipe names its branches by URL, which may carry credentials.
	for _, field := range strings.Fields(m.args.RecipeText) {
		if strings.Contains(field, "://") {
			b.AddURLSecrets(field)
		}
	}
	if !m.args.Git {
		b.Logf("This builder cannot build bzr-builder recipes: they need bzr-builder (bzr dailydeb), which Debian does not package. Use a git-build-recipe recipe (git) instead.")
		b.Logf("Returning build status: Build failed.")
		return b.Finish(ctx, Fail(BuildPackageFail, "bzr-builder recipe not supported"))
	}
	var res recipeOutcome
	f := m.build(ctx, b, &res)
	if f == nil {
		b.Phase("gather results")
		f = m.gather(ctx, b)
	}
	r := b.Finish(ctx, f)
	if r.Status == BuildDepFail {
		r.Dependencies = res.missing
		b.Logf("Returning build status: DEPFAIL")
		b.Logf("Dependencies: %s", res.missing)
	}
	return r
}

type recipeOutcome struct {
	missing string
}

// recipeDepWait is the reference's dep-wait pattern over the build log.
var recipeDepWait = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)The following packages have unmet dependencies:\n.*: Depends: ([^ ]*( \([^)]*\))?)`)
})

// RecipeMissingDependency finds the missing dependency in apt-get
// build-dep's output, as the reference does in the build log.
func RecipeMissingDependency(log []byte) (string, bool) {
	m := recipeDepWait().FindSubmatch(log)
	if m == nil {
		return "", false
	}
	return strings.ToValidUTF8(string(m[1]), "\uFFFD"), true
}

func (m *RecipeManager) build(ctx context.Context, b *ContainerBuild, res *recipeOutcome) *Failure {
	a := m.args
	b.Phase("start target")
	if f := b.StartTarget(ctx, "chroot", m.req.Chroot); f != nil {
		return f
	}
	if f := b.ConfigureArchives(ctx, a.Common.Archives, a.Common.TrustedKeys, b.Env.Config.AptProxyURL); f != nil {
		return f
	}
	aptEnv := []string{"DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}

	b.Phase("install")
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"apt-get", "install", "-y", "lsb-release"}, Env: aptEnv}); f != nil {
		return f
	}
	out, code, err := b.Output(ctx, target.Command{Args: []string{"lsb_release", "-r", "-s"}})
	if err != nil || code != 0 {
		return b.ctxFail(ctx, BuildBuilderFail, "lsb_release -r -s failed (exit status %d): %v", code, err)
	}
	version := strings.TrimRight(out, "\n")
	if !recipeToken().MatchString(version) {
		return Fail(BuildBuilderFail, "lsb_release -r -s printed %q, not a release number", version)
	}

	b.Phase("build tree")
	tool, err := b.NewHostTool()
	if err != nil {
		return Fail(BuildBuilderFail, "%w", err)
	}
	defer tool.Remove()
	source, f := m.buildTree(ctx, b, tool, version)
	if f != nil {
		return f
	}
	tree := path.Join(recipeWorkDir, "tree")
	if f := b.CopyHostTreeIn(ctx, tool.Path("tree"), tree); f != nil {
		return f
	}
	srcDir := path.Join(tree, source)

	b.Phase("install build-dependencies")
	// Read in the target, where no symlink of the tree leads out.
	pkg, err := recipePackageName(ctx, b, srcDir)
	if err != nil {
		return Fail(BuildPackageFail, "%w", err)
	}
	cb := fmt.Sprintf("Package: %s\nSuite: %s\nComponent: %s\nPurpose: %s\nBuild-Debug-Symbols: no\n",
		pkg, a.Suite, a.Component, a.ArchivePurpose)
	if err := b.Target.CopyIn(ctx, strings.NewReader(cb), "/CurrentlyBuilding", 0, 0, 0o644); err != nil {
		return b.ctxFail(ctx, BuildBuilderFail, "cannot write /CurrentlyBuilding: %w", err)
	}
	// The reference publishes a dummy source of the tree's build
	// relations in a local archive and runs build-dep on it; apt reads
	// the same relations from the unpacked tree directly.
	depLog := &cappedBuffer{max: recipeLogMaxBytes}
	cmd := target.Command{Args: []string{"apt-get", "build-dep", "-y", srcDir}, Env: aptEnv,
		Stdout: io.MultiWriter(b.Log, keepGoing{depLog}), Stderr: io.MultiWriter(b.Log, keepGoing{depLog})}
	if f := b.Run(ctx, BuildPackageFail, cmd); f != nil {
		if f.Status == BuildPackageFail {
			if dep, ok := RecipeMissingDependency(depLog.buf.Bytes()); ok {
				res.missing = dep
				return &Failure{Status: BuildDepFail, Err: f.Err}
			}
			b.Logf("Returning build status: Build failed")
		}
		return f
	}

	b.Phase("build source package")
	if f := b.Run(ctx, BuildPackageFail, target.Command{
		Args: []string{"/usr/bin/dpkg-buildpackage", "-i", "-I.bzr", "-I.git", "-us", "-uc", "-S", "-sa"},
		Env:  []string{"LANG=C.UTF-8", "DEBEMAIL=" + a.AuthorEmail, "DEBFULLNAME=" + a.AuthorName},
		Dir:  srcDir,
	}); f != nil {
		return f
	}
	return nil
}

// keepGoing hides a capped buffer's refusal from io.MultiWriter, which
// would otherwise stop writing to the build log too.
type keepGoing struct{ w io.Writer }

func (k keepGoing) Write(p []byte) (int, error) {
	_, _ = k.w.Write(p)
	return len(p), nil
}

// buildTree is buildrecipe's buildTree: git-build-recipe on the host with
// the reference's arguments. It returns the source directory's name.
func (m *RecipeManager) buildTree(ctx context.Context, b *ContainerBuild, tool *hostTool, version string) (string, *Failure) {
	a := m.args
	work := tool.Dir
	recipe := tool.Path("recipe")
	tree := tool.Path("tree")
	// Readable by the tool's user, in its own 0700 directory.
	if err := os.WriteFile(recipe, []byte(a.RecipeText), 0o644); err != nil {
		return "", Fail(BuildBuilderFail, "cannot write the recipe: %w", err)
	}
	hostname, _ := os.Hostname()
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + work,
		"DEBEMAIL=" + a.AuthorEmail,
		"DEBFULLNAME=" + a.AuthorName,
		"EMAIL=buildd@" + hostname,
		"LANG=C.UTF-8",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
	}
	b.Logf("Git version:")
	_ = runHost(ctx, b.Log, env, work, tool.Cred, "git", "--version")
	var q bytes.Buffer
	if err := runHost(ctx, &limitWriter{w: &q, n: 4096}, env, work, tool.Cred, "dpkg-query", "-W", "git-build-recipe"); err == nil {
		b.Logf("%s", strings.ReplaceAll(strings.TrimRight(q.String(), "\n"), "\t", " "))
	}
	b.Logf("Building recipe:")
	b.Logf("%s", a.RecipeText)
	argv := []string{GitBuildRecipeCommand, "--safe", "--no-build", "--manifest", filepath.Join(tree, "manifest"),
		"--distribution", a.DistroSeriesName, "--allow-fallback-to-native",
		"--append-version", "~ubuntu" + version + ".1", recipe, tree}
	b.Logf("RUN %s", PythonListRepr(argv))
	if _, err := exec.LookPath(GitBuildRecipeCommand); err != nil {
		return "", Fail(BuildBuilderFail, "cannot run git-build-recipe on this builder: %w", err)
	}
	if err := runHost(ctx, b.Log, env, work, tool.Cred, argv...); err != nil {
		return "", b.ctxFail(ctx, BuildPackageFail, "git-build-recipe failed: %w", err)
	}
	entries, err := os.ReadDir(tree)
	if err != nil {
		return "", Fail(BuildBuilderFail, "cannot list the recipe's tree: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) != 1 {
		return "", Fail(BuildBuilderFail, "git-build-recipe made %d source directories, not one", len(dirs))
	}
	return dirs[0], nil
}

// recipePackageName is the first word of debian/changelog, as the
// reference reads it.
func recipePackageName(ctx context.Context, b *ContainerBuild, srcDir string) (string, error) {
	first := &cappedBuffer{max: 4096}
	if err := b.Target.CopyOut(ctx, path.Join(srcDir, "debian", "changelog"), first); err != nil && !errors.Is(err, errCapped) {
		return "", fmt.Errorf("cannot read the tree's debian/changelog: %w", err)
	}
	line, _, _ := strings.Cut(first.String(), "\n")
	name, _, _ := strings.Cut(line, " ")
	if !recipeToken().MatchString(name) {
		return "", fmt.Errorf("debian/changelog does not start with a source package name: %q", line)
	}
	return name, nil
}

// gather adds the _source.changes in the tree, every file it lists, and
// the manifest (the reference's gatherResults).
func (m *RecipeManager) gather(ctx context.Context, b *ContainerBuild) *Failure {
	tree := path.Join(recipeWorkDir, "tree")
	entries, err := b.Target.ListDir(ctx, tree)
	if err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
	}
	var changesName string
	for _, e := range entries {
		if e.Mode.IsRegular() && strings.HasSuffix(e.Name, "_source.changes") {
			changesName = e.Name
			break
		}
	}
	if changesName == "" {
		return Fail(BuildPackageFail, "Failed to gather results: no _source.changes in %s", tree)
	}
	raw := &cappedBuffer{max: 16 << 20}
	if err := b.Target.CopyOut(ctx, path.Join(tree, changesName), raw); err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: cannot read %s: %w", changesName, err)
	}
	changes, err := debian.ParseChanges(bytes.NewReader(raw.buf.Bytes()))
	if err != nil {
		return Fail(BuildPackageFail, "Failed to gather results: %s: %w", changesName, err)
	}
	want := map[string]bool{changesName: true, "manifest": true}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name] = e.Mode.IsRegular()
	}
	for _, f := range changes.Files {
		if !present[f.Name] {
			return Fail(BuildPackageFail, "Failed to gather results: %s lists %s, which is not a file in %s", changesName, f.Name, tree)
		}
		want[f.Name] = true
	}
	return b.GatherResults(ctx, tree, func(name string) bool { return want[name] })
}

// PythonListRepr is Python's repr() of a list of str, as buildrecipe's
// "RUN %r" line shows its argv.
func PythonListRepr(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		quote := "'"
		if strings.Contains(a, "'") && !strings.Contains(a, `"`) {
			quote = `"`
		}
		var sb strings.Builder
		sb.WriteString(quote)
		for _, r := range a {
			switch {
			case r == '\\':
				sb.WriteString(`\\`)
			case string(r) == quote:
				sb.WriteString(`\` + quote)
			case r == '\n':
				sb.WriteString(`\n`)
			case r == '\r':
				sb.WriteString(`\r`)
			case r == '\t':
				sb.WriteString(`\t`)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&sb, `\x%02x`, r)
			default:
				sb.WriteRune(r)
			}
		}
		sb.WriteString(quote)
		parts[i] = sb.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

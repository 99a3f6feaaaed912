package main

// `buildd-agent build snap`: run the farm's snap manager in-process, with
// no build master, to answer "will my snap build on the farm?". Same
// manager, same target, same builder proxy, same environment and result
// gathering as under `buildd-agent run`; the build log streams to the
// terminal with a line per phase, and the results plus summary.json land in
// --output.

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// Exit codes of `buildd-agent build`.
const (
	buildExitOK          = 0
	buildExitPackageFail = 1
	buildExitBuilderFail = 2
)

func init() { subcommands = append(subcommands, newBuildCmd) }

func newBuildCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Run a build locally with the farm's build manager (no build master)",
		Long: `Run a build in-process with the same build manager, target, builder proxy
and environment that "buildd-agent run" uses for the build master, to check
that it builds on the farm. The build log streams to the terminal with a line
per phase ("==> [4/8] snapcraft pull"); the results and summary.json (status,
revision, artifacts with sizes, sha256 and sha512) are written to --output.

Exit status: 0 = built (BuildStatus.OK), 1 = package failure (the build's
fault: PACKAGEFAIL/DEPFAIL), 2 = builder failure (BUILDERFAIL, CHROOTFAIL,
ABORTED, or a usage or set-up problem).

--git-repository may be a local path ("."): the repository's commits are
served read-only on loopback for the build.`,
		PersistentPreRunE: absLocalRepository,
	}
	cmd.AddCommand(newBuildSnapCmd())
	for _, sub := range buildSubcommands {
		cmd.AddCommand(sub())
	}
	return cmd
}

// localExit ends a local build command with its exit code.
func localExit(cmd *cobra.Command, name string, code int, err error) error {
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "buildd-agent build %s: %v\n", name, err)
		code = buildExitBuilderFail
	}
	if code != buildExitOK {
		os.Exit(code)
	}
	return nil
}

// localFlagError ends a local build command on a flag error (exit 2).
func localFlagError(name string) func(*cobra.Command, error) error {
	return func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "buildd-agent build %s: %v\n", name, err)
		os.Exit(buildExitBuilderFail)
		return err
	}
}

// localConfig is the agent configuration a local build runs with: the
// --config file (or the embedded default), its backend replaced by
// backend unless that is "", and the architecture to build for: arch, or
// the first of [builder] architectures.
func localConfig(path, backend, arch string) (*agent.Config, string, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, "", err
	}
	if backend != "" {
		cfg.Builder.Backend = backend
	}
	if arch == "" {
		arch = cfg.Builder.Architectures[0]
	}
	return cfg, arch, nil
}

// addArchiveArgs puts --archive and --trusted-key into the build()
// arguments as buildd-manager sends them.
func addArchiveArgs(args map[string]any, archives, keyFiles []string) error {
	if len(archives) > 0 {
		l := make([]any, len(archives))
		for i, a := range archives {
			l[i] = a
		}
		args["archives"] = l
	}
	if len(keyFiles) > 0 {
		l := make([]any, len(keyFiles))
		for i, k := range keyFiles {
			data, err := os.ReadFile(k)
			if err != nil {
				return fmt.Errorf("cannot read --trusted-key: %w", err)
			}
			l[i] = base64.StdEncoding.EncodeToString(data)
		}
		args["trusted_keys"] = l
	}
	return nil
}

// buildSubcommands are the `build` subcommands of the other managers
// (one file each).
var buildSubcommands []func() *cobra.Command

// localSnapFlags are `build snap`'s flags.
type localSnapFlags struct {
	config, gitRepository, gitPath, chroot, image, proxyURL, revocation string
	output, backend, series, arch, name                                 string
	channels, targetArchs, archives, keys                               []string
	sourceTarball, private, fastCleanup                                 bool
}

func newBuildSnapCmd() *cobra.Command {
	var f localSnapFlags
	cmd := &cobra.Command{
		Use:   "snap --git-repository URL (--chroot FILE | --image FILE|SHA1) [flags]",
		Short: "Build a snap from a git repository as the farm would",
		Example: `  sudo buildd-agent build snap \
      --git-repository https://git.example.com/hello.git --git-path refs/tags/1.0 \
      --chroot bookworm-amd64-chroot.tar.gz --channel snapcraft=8.x/stable \
      --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalSnap(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			// Set-up problems are the builder side's: exit 2, not 1
			// (which means the build itself failed).
			return localExit(cmd, "snap", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("snap"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.gitRepository, "git-repository", "", "git repository URL (http, https or git://) or local path (required)")
	fl.StringVar(&f.gitPath, "git-path", "", "branch, tag (refs/tags/1.0) or commit to build (default: HEAD)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in")
	fl.StringVar(&f.image, "image", "", "unified LXD image tarball, or the SHA-1 of a chroot this agent already imported")
	fl.StringArrayVar(&f.channels, "channel", nil, "SNAP=CHANNEL to install (repeatable), e.g. snapcraft=8.x/stable")
	fl.StringVar(&f.proxyURL, "proxy-url", "", "upstream HTTP proxy http://user:pass@host:port the build fetches through")
	fl.StringVar(&f.revocation, "revocation-endpoint", "", "URL where the proxy token is revoked when the build ends")
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.backend, "backend", "", "target backend: lxd or chroot (default: [builder] backend)")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot (names the container and image)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	fl.StringVar(&f.name, "name", "", "snap build name: the source goes to /build/NAME (default: the repository's name)")
	fl.StringArrayVar(&f.targetArchs, "target-arch", nil, "architecture to build for (repeatable; the first sets SNAPCRAFT_BUILD_FOR)")
	fl.StringArrayVar(&f.archives, "archive", nil, "sources.list line of an archive the container's apt uses (repeatable; default: the chroot's own)")
	fl.StringArrayVar(&f.keys, "trusted-key", nil, "OpenPGP public key file (armoured or binary) the archives are signed with (repeatable)")
	fl.BoolVar(&f.sourceTarball, "build-source-tarball", false, "also produce NAME.tar.gz of the pulled source")
	fl.BoolVar(&f.private, "private", false, "build as a private snap (no SNAPCRAFT_BUILD_INFO)")
	fl.BoolVar(&f.fastCleanup, "fast-cleanup", false, "leave the target behind when done")
	return cmd
}

// snapBuildArgs turns the flags into the build() arguments the build
// master would send.
func snapBuildArgs(f localSnapFlags, arch string) (map[string]any, error) {
	name := f.name
	if name == "" {
		name = strings.TrimSuffix(path.Base(strings.TrimRight(f.gitRepository, "/")), ".git")
	}
	args := map[string]any{
		"series":                  f.series,
		"arch_tag":                arch,
		"name":                    name,
		"git_repository":          f.gitRepository,
		"build_request_id":        fmt.Sprintf("local-%d", time.Now().Unix()),
		"build_request_timestamp": time.Now().UTC().Format(time.RFC3339),
	}
	if f.gitPath != "" {
		args["git_path"] = f.gitPath
	}
	if len(f.channels) > 0 {
		ch := map[string]any{}
		for _, c := range f.channels {
			snap, channel, ok := strings.Cut(c, "=")
			if !ok || snap == "" || channel == "" {
				return nil, fmt.Errorf("invalid --channel %q: want SNAP=CHANNEL", c)
			}
			ch[snap] = channel
		}
		args["channels"] = ch
	}
	if f.proxyURL != "" {
		args["proxy_url"] = f.proxyURL
	}
	if f.revocation != "" {
		args["revocation_endpoint"] = f.revocation
	}
	if len(f.targetArchs) > 0 {
		l := make([]any, len(f.targetArchs))
		for i, a := range f.targetArchs {
			l[i] = a
		}
		args["target_architectures"] = l
	}
	if f.sourceTarball {
		args["build_source_tarball"] = true
	}
	if f.private {
		args["private"] = true
	}
	if f.fastCleanup {
		args["fast_cleanup"] = true
	}
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return nil, err
	}
	return args, nil
}

// localArtifact is one result in summary.json.
type localArtifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
}

// localPhase is how long one phase of the manager took.
type localPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// localSummary is summary.json.
type localSummary struct {
	Status    string          `json:"status"`
	BuildID   string          `json:"build_id"`
	Revision  string          `json:"revision,omitempty"`
	Extra     map[string]any  `json:"extra,omitempty"`
	Artifacts []localArtifact `json:"artifacts"`
	Phases    []localPhase    `json:"phases"`
	Seconds   float64         `json:"duration_seconds"`
	Buildlog  string          `json:"buildlog"`
}

// runLocalSnap runs the build and returns its exit code; err is for usage
// and set-up problems (exit 2 through main).
func runLocalSnap(ctx context.Context, f localSnapFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.gitRepository == "" {
		return 0, errors.New("--git-repository is required")
	}
	if (f.chroot == "") == (f.image == "") {
		return 0, errors.New("give exactly one of --chroot and --image")
	}
	cfg, arch, err := localConfig(f.config, f.backend, f.arch)
	if err != nil {
		return 0, err
	}
	args, err := snapBuildArgs(f, arch)
	if err != nil {
		return 0, err
	}
	img := target.Image{Type: "chroot", Path: f.chroot}
	if f.image != "" {
		if st, err := os.Stat(f.image); err == nil && st.Mode().IsRegular() {
			img = target.Image{Type: "lxd", Path: f.image}
			args["image_type"] = "lxd"
		} else if agent.ValidSHA1(strings.ToLower(f.image)) {
			img = target.Image{Type: "chroot", SHA1: strings.ToLower(f.image)}
		} else {
			return 0, fmt.Errorf("--image %q is neither an image file nor a SHA-1", f.image)
		}
	} else if _, err := os.Stat(f.chroot); err != nil {
		return 0, fmt.Errorf("cannot use --chroot: %w", err)
	}

	return runLocalBuild(ctx, cfg, "snap", builders.Request{Chroot: img, Args: args}, arch, f.output, stdout, stderr)
}

// runLocalBuild runs req with the tag's manager in-process: the part of
// every `build` subcommand after its flags became build() arguments.
func runLocalBuild(ctx context.Context, cfg *agent.Config, tag string, req builders.Request, arch, output string, stdout, stderr io.Writer) (int, error) {
	buildID := fmt.Sprintf("local-%d", os.Getpid())
	req.BuildID = buildID
	stopRepo, err := serveLocalRepository(req.Args, stderr)
	if err != nil {
		return 0, err
	}
	defer stopRepo()
	factory, ok := builders.Lookup(tag)
	if !ok {
		return 0, fmt.Errorf("this agent has no %s manager", tag)
	}
	mcfg := agent.ManagerConfig(cfg, arch)
	if err := builders.Check(tag, mcfg); err != nil {
		return 0, fmt.Errorf("this host cannot run %s builds: %w", tag, err)
	}
	mgr, err := factory(req)
	if err != nil {
		return 0, err
	}

	if err := os.MkdirAll(output, 0o755); err != nil {
		return 0, fmt.Errorf("cannot create output directory: %w", err)
	}
	blog, err := agent.OpenBuildLog(filepath.Join(output, "buildlog"), cfg.Limits.LogBytes)
	if err != nil {
		return 0, err
	}
	defer blog.Close()

	logger := slog.New(redactingHandler{slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})})
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	targets, _, closeTargets, _, err := targetFactories(ctx, cfg, logger)
	if err != nil {
		return 0, err
	}
	defer closeTargets()

	tail := startLogTail(blog.Path(), stdout)
	defer tail.stop()

	start := time.Now()
	lb := &localBuild{outDir: output, extra: map[string]any{}}
	env := &builders.Env{
		Log:       blog,
		AddSecret: blog.AddSecret,
		NewTarget: func(ctx context.Context, backend string, spec target.Spec) (target.Target, error) {
			fac, ok := targets[backend]
			if !ok {
				return nil, fmt.Errorf("cannot create %q target: backend not configured", backend)
			}
			t, err := fac(ctx, spec, target.Options{Log: blog, ReadyTimeout: cfg.LXD.ReadyTimeout.Duration})
			if err == nil {
				lb.addTarget(t)
			}
			return t, err
		},
		AddWaitingFile: lb.addWaitingFile,
		SetStatus:      lb.setStatus,
		Config:         mcfg,
	}
	var phases []localPhase
	phaseStart := time.Now()
	endPhase := func() {
		if n := len(phases); n > 0 {
			phases[n-1].Seconds = time.Since(phaseStart).Seconds()
		}
		phaseStart = time.Now()
	}
	if p, ok := mgr.(builders.ProgressReporter); ok {
		p.SetProgress(func(step, total int, phase string) {
			endPhase()
			phases = append(phases, localPhase{Name: phase})
			fmt.Fprintf(blog, "==> [%d/%d] %s\n", step, total, phase)
		})
	}
	// Abort (Ctrl-C) kills the target's processes, as the agent's abort does.
	stopKill := context.AfterFunc(ctx, func() {
		fmt.Fprintln(blog, "Aborting: killing the build's processes")
		lb.killAll()
	})
	defer stopKill()

	res := mgr.Run(ctx, env)
	endPhase()
	if ctx.Err() != nil {
		res.Status = builders.BuildAborted
	}
	blog.Flush()
	tail.stop()

	sum := localSummary{
		Status:    string(res.Status),
		BuildID:   buildID,
		Artifacts: lb.artifacts,
		Phases:    phases,
		Seconds:   time.Since(start).Seconds(),
		Buildlog:  "buildlog",
		Extra:     lb.extra,
	}
	if r, ok := lb.extra["revision_id"].(string); ok {
		sum.Revision = r
		delete(lb.extra, "revision_id")
	}
	if res.Dependencies != "" {
		sum.Extra["dependencies"] = res.Dependencies
	}
	if sum.Artifacts == nil {
		sum.Artifacts = []localArtifact{}
	}
	data, _ := json.MarshalIndent(sum, "", "  ")
	data = append(data, '\n')
	if err := os.WriteFile(filepath.Join(output, "summary.json"), data, 0o644); err != nil {
		return 0, fmt.Errorf("cannot write summary: %w", err)
	}
	fmt.Fprintf(stdout, "==> %s in %s; results in %s\n", res.Status, time.Since(start).Round(time.Millisecond), output)
	for _, a := range sum.Artifacts {
		fmt.Fprintf(stdout, "    %s  %d bytes  sha256 %s\n", a.Name, a.Size, a.SHA256)
	}
	switch res.Status {
	case builders.BuildOK:
		return buildExitOK, nil
	case builders.BuildPackageFail, builders.BuildDepFail:
		return buildExitPackageFail, nil
	}
	return buildExitBuilderFail, nil
}

// localBuild is the Env's state for a local build.
type localBuild struct {
	outDir    string
	mu        sync.Mutex
	artifacts []localArtifact
	extra     map[string]any
	targets   []target.Target
}

func (l *localBuild) addTarget(t target.Target) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.targets = append(l.targets, t)
}

func (l *localBuild) killAll() {
	l.mu.Lock()
	ts := append([]target.Target(nil), l.targets...)
	l.mu.Unlock()
	for _, t := range ts {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = t.KillProcesses(ctx)
		cancel()
	}
}

func (l *localBuild) setStatus(key string, value any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.extra[key] = value
}

// addWaitingFile writes a result into the output directory, hashing it
// as it streams.
func (l *localBuild) addWaitingFile(name string, r io.Reader) (string, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." || name == "buildlog" || name == "summary.json" {
		return "", fmt.Errorf("cannot store result %q: not a plain file name", name)
	}
	tmp, err := os.CreateTemp(l.outDir, ".result-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h1, h256, h512 := sha1.New(), sha256.New(), sha512.New()
	n, err := io.Copy(io.MultiWriter(tmp, h1, h256, h512), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("cannot store result %q: %w", name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(l.outDir, name)); err != nil {
		return "", fmt.Errorf("cannot store result %q: %w", name, err)
	}
	a := localArtifact{Name: name, Size: n, SHA1: hex.EncodeToString(h1.Sum(nil)),
		SHA256: hex.EncodeToString(h256.Sum(nil)), SHA512: hex.EncodeToString(h512.Sum(nil))}
	l.mu.Lock()
	l.artifacts = append(l.artifacts, a)
	sort.Slice(l.artifacts, func(i, j int) bool { return l.artifacts[i].Name < l.artifacts[j].Name })
	l.mu.Unlock()
	return a.SHA1, nil
}

// logTail copies a growing file to w until stopped (then drains it).
type logTail struct {
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func startLogTail(file string, w io.Writer) *logTail {
	t := &logTail{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(t.stopped)
		var f *os.File
		buf := make([]byte, 64<<10)
		for {
			if f == nil {
				f, _ = os.Open(file)
			}
			if f != nil {
				for {
					n, _ := f.Read(buf)
					if n == 0 {
						break
					}
					w.Write(buf[:n])
				}
			}
			select {
			case <-t.done:
				if f == nil {
					f, _ = os.Open(file)
				}
				if f != nil {
					io.Copy(w, f)
					f.Close()
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return t
}

func (t *logTail) stop() {
	t.once.Do(func() { close(t.done) })
	<-t.stopped
}

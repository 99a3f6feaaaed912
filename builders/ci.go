package builders

// The ci manager: launchpad-buildd's CIBuildManager (lpbuildd/ci.py) and
// its in-target run-ci-prepare and run-ci operations
// (lpbuildd/target/run_ci.py), run from the agent against an LXD target.
//
//	what                                          reference                  status
//	--------------------------------------------------------------------------------------
//	making, creating or starting the target       unpack/mount-chroot ≠ 0    CHROOTFAIL
//	archives, trusted_keys                        sources/keys ≠ 0           CHROOTFAIL
//	starting the builder proxy                    host-side exception        BUILDERFAIL
//	install (apt-get, snaps, lxd init --auto,     run-ci-prepare exit 200    "Preparation failed."
//	  the scanner's database)                                                PACKAGEFAIL
//	the checkout into /build/tree, its chown      run-ci-prepare exit 201    "Preparation failed."
//	                                                                         PACKAGEFAIL
//	a command cannot be run at all                in-target dies             BUILDERFAIL
//	a job exits ≠ 0 (or its scan finds malware)   run-ci exit 201            "Job <id> failed."; the
//	                                                                         job is FAILED
//	  … in a stage of one job                                                PACKAGEFAIL at once
//	  … in a bigger stage                                                    the stage's other jobs run,
//	                                                                         then "Some jobs in [...]
//	                                                                         failed; stopping." PACKAGEFAIL
//	gathering a job's files fails                 "Failed to gather results" PACKAGEFAIL
//	abort                                                                    ABORTED (the agent decides)
//	every stage succeeded                                                    OK
//
// After every job, finished or failed, its log, properties and files go
// into the file cache and status()["jobs"] gains the job's entry (see
// ci_jobs.go); "jobs" is in status() from the start, {} until a job ends.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() {
	Register("ci", NewCIManager)
	RegisterCheck("ci", checkCIHost)
}

// checkCIHost refuses a ci build on a builder whose targets are not LXD
// containers: lpci runs each job in a container of the nested LXD, which
// a chroot cannot host (ci.py's backend is always lxd).
func checkCIHost(cfg ManagerConfig) error {
	if cfg.Backend != "" && cfg.Backend != "lxd" {
		return fmt.Errorf("ci builds need the lxd backend (lpci runs its jobs in a nested LXD), not [builder] backend = %q", cfg.Backend)
	}
	return nil
}

// ciTreeDir is where the checkout goes (run_ci.py's buildd_path), and the
// jobs' working directory.
const ciTreeDir = "/build/tree"

// CIJob is one job of a stage: a job name of .launchpad.yaml and the index
// into its matrix.
type CIJob struct {
	Name  string
	Index int
}

// ID is the reference's job id, "<name>:<index>": the key in
// status()["jobs"] and the prefix of the job's file cache names.
func (j CIJob) ID() string { return fmt.Sprintf("%s:%d", j.Name, j.Index) }

// CIArgs are the ci manager's build arguments.
type CIArgs struct {
	Common CommonArgs
	// Jobs are the stages, in order, each a list of jobs.
	Jobs [][]CIJob
	// Branch is a Bazaar branch (the reference accepts one; Launchpad
	// sends git_repository and git_path, a commit).
	Branch             string
	GitRepository      string
	GitPath            string
	Channels           map[string]string
	ProxyURL           string
	RevocationEndpoint string
	Private            bool
	// PackageRepositories are sources.list lines passed to lpci.
	PackageRepositories []string
	// EnvironmentVariables and PluginSettings are passed to lpci as
	// --set-env and --plugin-setting KEY=VALUE (sorted by key).
	EnvironmentVariables map[string]string
	PluginSettings       map[string]string
	// Secrets is nil when not given; otherwise (even empty) it is written
	// as YAML for lpci's --secrets, as the reference does.
	Secrets     map[string]string
	ScanMalware bool
}

// GPUNvidia reports the gpu-nvidia builder constraint (lpci --gpu-nvidia).
func (a CIArgs) GPUNvidia() bool {
	for _, c := range a.Common.Constraints {
		if c == "gpu-nvidia" {
			return true
		}
	}
	return false
}

// ParseCIArgs validates a ci build's arguments.
func ParseCIArgs(args map[string]any) (CIArgs, error) {
	p := NewArgParser(args)
	var a CIArgs
	a.Common = ParseCommonArgs(p)
	a.Jobs = parseCIJobs(p, args)
	a.Branch, a.GitRepository, a.GitPath = parseCraftSource(p)
	a.Channels = p.StringMap("channels")
	a.ProxyURL = p.URL("proxy_url", "http", "https")
	a.RevocationEndpoint = p.URL("revocation_endpoint", "http", "https")
	a.Private = p.Bool("private")
	a.PackageRepositories = p.StringList("package_repositories")
	a.EnvironmentVariables = p.StringMap("environment_variables")
	a.PluginSettings = p.StringMap("plugin_settings")
	a.Secrets = p.StringMap("secrets")
	if a.Secrets == nil && p.Has("secrets") {
		a.Secrets = map[string]string{}
	}
	a.ScanMalware = p.Bool("scan_malware")
	// use_fetch_service is always False for ci (the builder proxy only).
	if p.Bool("use_fetch_service") {
		p.Fail("use_fetch_service", "ci builds use the builder proxy only")
	}
	checkSnapChannels(p, a.Channels)
	checkEnvironmentVariables(p, a.EnvironmentVariables)
	checkCIKeyValues(p, "plugin_settings", a.PluginSettings)
	checkCIKeyValues(p, "secrets", a.Secrets)
	for i, line := range a.PackageRepositories {
		if strings.ContainsAny(line, "\n\r\x00") || strings.TrimSpace(line) == "" {
			p.Fail("package_repositories", "element %d must be one non-empty sources.list line", i)
		}
	}
	if err := p.Err(); err != nil {
		return CIArgs{}, err
	}
	return a, nil
}

// checkCIKeyValues checks a struct passed on as KEY=VALUE pairs.
func checkCIKeyValues(p *ArgParser, name string, m map[string]string) {
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, "=\x00\n\r") {
			p.Fail(name, "%q is not a valid key", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			p.Fail(name, "the value of %q contains a NUL byte", k)
		}
	}
}

// parseCIJobs reads jobs: a non-empty array of stages, each a non-empty
// array of [job_name, job_index] pairs. The reference takes whatever it
// is given (and an empty stage silently ends the build as OK); here every
// shape problem is an argument error naming where it is, and a job given
// twice is refused (its results would overwrite the first run's).
func parseCIJobs(p *ArgParser, args map[string]any) [][]CIJob {
	const shape = "must be an array of stages, each an array of [job_name, job_index] pairs"
	v, ok := args["jobs"]
	if !ok || v == nil {
		p.Fail("jobs", "is required (%s)", shape)
		return nil
	}
	stages, ok := v.([]any)
	if !ok {
		p.Fail("jobs", "%s, not %s", shape, typeName(v))
		return nil
	}
	if len(stages) == 0 {
		p.Fail("jobs", "must request at least one job")
		return nil
	}
	seen := map[string]bool{}
	out := make([][]CIJob, 0, len(stages))
	for si, sv := range stages {
		stage, ok := sv.([]any)
		if !ok {
			p.Fail("jobs", "stage %d must be an array of [job_name, job_index] pairs, not %s", si, typeName(sv))
			return nil
		}
		if len(stage) == 0 {
			p.Fail("jobs", "stage %d is empty", si)
			return nil
		}
		jobs := make([]CIJob, 0, len(stage))
		for ji, jv := range stage {
			job, err := parseCIJob(jv)
			if err != nil {
				p.Fail("jobs", "stage %d, job %d: %v", si, ji, err)
				return nil
			}
			if seen[job.ID()] {
				p.Fail("jobs", "stage %d, job %d: job %s is requested twice", si, ji, job.ID())
				return nil
			}
			seen[job.ID()] = true
			jobs = append(jobs, job)
		}
		out = append(out, jobs)
	}
	return out
}

// maxCIJobIndex bounds a job index (a matrix is never this big).
const maxCIJobIndex = 1 << 20

// parseCIJob reads one [job_name, job_index] pair.
func parseCIJob(v any) (CIJob, error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		if !ok {
			return CIJob{}, fmt.Errorf("must be a [job_name, job_index] pair, not %s", typeName(v))
		}
		return CIJob{}, fmt.Errorf("must be a [job_name, job_index] pair, not an array of %d", len(pair))
	}
	name, ok := pair[0].(string)
	if !ok {
		return CIJob{}, fmt.Errorf("job_name must be a string, not %s", typeName(pair[0]))
	}
	if err := checkCIJobName(name); err != nil {
		return CIJob{}, err
	}
	var index int64
	switch i := pair[1].(type) {
	case int64:
		index = i
	case int:
		index = int64(i)
	case int32:
		index = int64(i)
	default:
		return CIJob{}, fmt.Errorf("job_index must be an integer, not %s", typeName(pair[1]))
	}
	if index < 0 || index > maxCIJobIndex {
		return CIJob{}, fmt.Errorf("job_index %d is out of range", index)
	}
	return CIJob{Name: name, Index: int(index)}, nil
}

// checkCIJobName refuses a job name that could not be lpci's, since it
// becomes a path (/build/output/<name>/<index>), a file cache name and an
// argument: no '/', no control characters, not "." or "..", not starting
// with '-' (lpci would read it as an option).
func checkCIJobName(name string) error {
	switch {
	case name == "":
		return errors.New("job_name must not be empty")
	case len(name) > 200:
		return errors.New("job_name is too long")
	case !utf8.ValidString(name):
		return errors.New("job_name is not valid UTF-8")
	case name == "." || name == "..":
		return fmt.Errorf("job_name %q is not a job name", name)
	case strings.HasPrefix(name, "-"):
		return fmt.Errorf("job_name %q must not start with '-'", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("job_name %q must not contain '/'", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("job_name %q must not contain control characters", name)
		}
	}
	return nil
}

// CIManager runs one ci build.
type CIManager struct {
	req      Request
	args     CIArgs
	progress ProgressFunc
}

// NewCIManager is the ci manager's Factory.
func NewCIManager(req Request) (Manager, error) {
	a, err := ParseCIArgs(req.Args)
	if err != nil {
		return nil, err
	}
	return &CIManager{req: req, args: a}, nil
}

// Args are the validated arguments.
func (m *CIManager) Args() CIArgs { return m.args }

// SetProgress implements ProgressReporter.
func (m *CIManager) SetProgress(f ProgressFunc) { m.progress = f }

// ProxyInfo implements Manager: the builder proxy only.
func (m *CIManager) ProxyInfo() (bool, string) { return false, m.args.RevocationEndpoint }

// phases are the preparation's phases, one per job, then the end.
func (m *CIManager) phases() []string {
	ph := []string{"start target", "install", "fetch source"}
	for _, stage := range m.args.Jobs {
		for _, j := range stage {
			ph = append(ph, "job "+j.ID())
		}
	}
	return append(ph, "stop proxy", "clean up")
}

// secrets are the secret values, which the build log must never show
// (Run also masks the passwords of URLs in the environment, the plugin
// settings and the package repositories: a PIP_INDEX_URL with credentials).
func (a CIArgs) secrets() []string {
	var out []string
	for _, v := range a.Secrets {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Run implements Manager.
func (m *CIManager) Run(ctx context.Context, env *Env) Result {
	a := m.args
	jobs := newCIJobStatus(env)
	fl := &Flow{
		Request:            m.req,
		Common:             a.Common,
		Progress:           m.progress,
		Phases:             m.phases(),
		ProxyURL:           a.ProxyURL,
		RevocationEndpoint: a.RevocationEndpoint,
		GitRepository:      a.GitRepository,
		GitPath:            a.GitPath,
		Branch:             a.Branch,
		Secrets:            a.secrets(),
		SourceDir:          ciTreeDir,
		Install:            m.install,
	}
	b := NewContainerBuild(env, m.req, a.Common, m.progress, fl.Phases)
	b.AddURLSecrets(a.ProxyURL)
	b.AddURLSecrets(a.GitRepository)
	b.AddURLSecrets(a.Branch)
	for _, s := range fl.Secrets {
		b.AddSecret(s)
	}
	for _, kv := range []map[string]string{a.EnvironmentVariables, a.PluginSettings} {
		for _, v := range kv {
			b.AddURLSecrets(v)
		}
	}
	for _, line := range a.PackageRepositories {
		for _, field := range strings.Fields(line) {
			b.AddURLSecrets(field)
		}
	}

	f := m.prepare(ctx, fl, b)
	if f == nil {
		f = m.runStages(ctx, b, jobs)
	}
	b.Phase("stop proxy")
	b.StopProxy(ctx)
	return b.Finish(ctx, f)
}

// prepare is run-ci-prepare: the flow up to the checkout, then the tree
// handed to buildd. Its failures are the reference's exits 200 (install)
// and 201 (repo): "Preparation failed." and PACKAGEFAIL; the rest keep
// their status (CHROOTFAIL, BUILDERFAIL, ABORTED).
func (m *CIManager) prepare(ctx context.Context, fl *Flow, b *ContainerBuild) *Failure {
	_, f := fl.build(ctx, b)
	if f == nil {
		f = b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"chown", "-R", "buildd:buildd", ciTreeDir}})
		if f != nil && f.Status != BuildAborted {
			f = prefixFailure(f, "VCS setup failed")
		}
	}
	if f == nil || f.Status != BuildPackageFail {
		return f
	}
	err := f.Err
	var pe *prefixedError
	if errors.As(err, &pe) && pe.prefix == "Build failed" {
		// The flow's name for the checkout; run_ci.py's is this.
		err = &prefixedError{prefix: "VCS setup failed", err: pe.err}
	}
	return &Failure{Status: BuildPackageFail, Err: ciPreparationFailed{err}}
}

// ciPreparationFailed is a preparation failure as the build log shows it:
// run-ci-prepare's message, then the manager's "Preparation failed.".
type ciPreparationFailed struct{ err error }

func (e ciPreparationFailed) Error() string { return e.err.Error() + "\nPreparation failed." }
func (e ciPreparationFailed) Unwrap() error { return e.err }

// install is run-ci-prepare's install phase.
func (m *CIManager) install(ctx context.Context, b *ContainerBuild) *Failure {
	a := m.args
	b.Logf("Running install phase...")
	var deps []string
	if b.Proxy != nil {
		deps = append(deps, proxyDeps...)
		if f := b.InstallGitProxy(ctx); f != nil {
			return f
		}
	}
	avail, f := withVCSDeps(ctx, b, a.Branch, "snapd", "fuse", "squashfuse")
	if f != nil {
		return f
	}
	deps = append(deps, avail...)
	if a.ScanMalware {
		deps = append(deps, ciScanPackages()...)
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: append([]string{"apt-get", "-y", "install"}, deps...)}); f != nil {
		return f
	}
	if f := b.InstallSnapStoreProxy(ctx, b.Env.Config.SnapStoreProxyURL, BuildPackageFail); f != nil {
		return f
	}
	for _, s := range slices.Sorted(maps.Keys(a.Channels)) {
		if s == "lxd" || s == "lpci" {
			continue // below, in this order
		}
		if f := snapInstall(ctx, b, "--channel="+a.Channels[s], s); f != nil {
			return f
		}
	}
	for _, s := range []struct {
		name    string
		classic bool
	}{{"lxd", false}, {"lpci", true}} {
		var args []string
		if s.classic {
			args = append(args, "--classic")
		}
		if ch, ok := a.Channels[s.name]; ok {
			args = append(args, "--channel="+ch)
		}
		if f := snapInstall(ctx, b, append(args, s.name)...); f != nil {
			return f
		}
	}
	// The nested LXD that lpci runs the jobs' containers in.
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"lxd", "init", "--auto"}}); f != nil {
		return f
	}
	if a.ScanMalware {
		return m.prepareScanner(ctx, b)
	}
	return nil
}

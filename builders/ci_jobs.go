package builders

// The ci manager's jobs: ci.py's runNextJob and iterate_RUN_JOB, and
// run_ci.py's RunCI, stage by stage.

import (
	"context"
	"errors"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

const (
	// ciOutputDir is lpci's --output-directory: a job's outputs are in
	// <ciOutputDir>/<name>/<index>/{log,properties,files/…}.
	ciOutputDir = "/build/output"
	// ciSecretsPath is where the secrets go for lpci's --secrets.
	ciSecretsPath = "/build/.launchpad-secrets.yaml"
)

// The results of a job, as Launchpad's RevisionStatusResult names them.
const (
	ciSucceeded = "SUCCEEDED"
	ciFailed    = "FAILED"
)

// The malware scanner's entry points (ci_scan.go), variables so that the
// manager's tests can see how they are called.
var (
	ciPrepareScannerFunc = ciPrepareScanner
	ciScanOutputFunc     = ciScanOutput
)

// ciBuilddPrefix runs a command as buildd with the lxd group, as run_ci.py's
// run_build_command: lpci can only start containers with
// nvidia.runtime=true as a non-root user.
var ciBuilddPrefix = []string{"runuser", "-u", "buildd", "-g", "buildd", "-G", "lxd", "--"}

// ciJobStatus is status()["jobs"]: job id → {log, properties, output,
// result}, published after every job.
type ciJobStatus struct {
	env  *Env
	mu   sync.Mutex
	jobs map[string]map[string]any
}

// newCIJobStatus publishes the empty map: the reference's status() has
// "jobs" from the start.
func newCIJobStatus(env *Env) *ciJobStatus {
	s := &ciJobStatus{env: env, jobs: map[string]map[string]any{}}
	s.publish()
	return s
}

// set records a finished job and publishes the whole map again.
func (s *ciJobStatus) set(id string, entry map[string]any) {
	s.mu.Lock()
	s.jobs[id] = entry
	s.mu.Unlock()
	s.publish()
}

func (s *ciJobStatus) result(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.jobs[id]["result"].(string)
	return r
}

// publish hands the agent a deep copy: status() may encode it while the
// next job's entry is being made.
func (s *ciJobStatus) publish() {
	if s.env.SetStatus == nil {
		return
	}
	s.mu.Lock()
	snap := make(map[string]any, len(s.jobs))
	for id, e := range s.jobs {
		c := make(map[string]any, len(e))
		for k, v := range e {
			if out, ok := v.(map[string]any); ok {
				oc := make(map[string]any, len(out))
				for n, sum := range out {
					oc[n] = sum
				}
				v = oc
			}
			c[k] = v
		}
		snap[id] = c
	}
	s.mu.Unlock()
	s.env.SetStatus("jobs", snap)
}

// runStages runs the stages as iterate_RUN_JOB does: every job of a stage
// runs unless the build failed already; a failed job of a single-job stage
// fails the build at once, a stage with a failed job stops it at its end.
func (m *CIManager) runStages(ctx context.Context, b *ContainerBuild, st *ciJobStatus) *Failure {
	for _, stage := range m.args.Jobs {
		ids := make([]string, 0, len(stage))
		for _, job := range stage {
			id := job.ID()
			ids = append(ids, id)
			b.Phase("job " + id)
			ok, f := m.runJob(ctx, b, job)
			if f != nil && f.Status == BuildAborted {
				return f
			}
			result := ciSucceeded
			if !ok {
				result = ciFailed
				if f == nil {
					if len(stage) == 1 {
						// Single-job stage: fail straight away, for
						// simpler error messages (the message is the
						// build's last line).
						f = Fail(BuildPackageFail, "Job %s failed.", id)
					} else {
						b.Logf("Job %s failed.", id)
					}
				}
			}
			// Gathered whatever happened, so that the job's log is
			// there for a failure too.
			entry, gf := m.gatherJob(ctx, b, job)
			entry["result"] = result
			st.set(id, entry)
			if gf != nil {
				if gf.Status == BuildAborted || f == nil {
					f = gf
				} else {
					b.Logf("%s", gf.Err)
				}
			}
			if f != nil {
				return f
			}
		}
		for _, id := range ids {
			if st.result(id) != ciSucceeded {
				return Fail(BuildPackageFail, "Some jobs in %s failed; stopping.", PythonListRepr(ids))
			}
		}
	}
	return nil
}

// runJob is run-ci for one job. ok is false when the job failed (the
// reference's exit 201: lpci, the output directory or the scan); f is set
// when the build cannot go on (a command that cannot be run, abort).
func (m *CIManager) runJob(ctx context.Context, b *ContainerBuild, job CIJob) (ok bool, f *Failure) {
	a := m.args
	if a.Secrets != nil {
		// Written before every job, as the reference does.
		if err := b.Target.CopyIn(ctx, strings.NewReader(ciSecretsYAML(a.Secrets)), ciSecretsPath, 0, 0, 0o644); err != nil {
			return false, b.ctxFail(ctx, BuildBuilderFail, "cannot write %s: %w", ciSecretsPath, err)
		}
	}
	b.Logf("Running job phase...")
	b.Logf("Running %s", job.ID())
	dir := ciJobDir(job)
	for _, argv := range [][]string{{"mkdir", "-p", dir}, {"chown", "-R", "buildd:buildd", ciOutputDir}} {
		if f := b.Run(ctx, BuildPackageFail, target.Command{Args: argv}); f != nil {
			if f.Status != BuildPackageFail {
				return false, f
			}
			b.Logf("Job failed: %v", f.Err)
			return false, nil
		}
	}
	run, runErr := m.builddRunner(b)
	code, err := run(ctx, ciJobCommand(m.lpciArgv(job), dir), b.BuildEnv())
	if err != nil {
		return false, b.ctxFail(ctx, BuildBuilderFail, "cannot run lpci: %w", err)
	}
	if ctx.Err() != nil {
		return false, &Failure{Status: BuildAborted, Err: errors.New("lpci interrupted by abort")}
	}
	if code != 0 {
		b.Logf("Job failed: lpci exited with status %d", code)
		return false, nil
	}
	if !a.ScanMalware {
		return true, nil
	}
	clean, err := ciScanOutputFunc(ctx, run, dir, b.BuildEnv())
	switch {
	case ctx.Err() != nil:
		return false, &Failure{Status: BuildAborted, Err: errors.New("the malware scan was interrupted by abort")}
	case *runErr != nil:
		return false, Fail(BuildBuilderFail, "cannot run the malware scan: %v", *runErr)
	case err != nil:
		// As clamscan's exit 2 in the reference: the job fails.
		b.Logf("Job failed: cannot scan %s: %v", dir, err)
		return false, nil
	case !clean:
		b.Logf("Job failed: the malware scan found something in %s", dir)
		return false, nil
	}
	return true, nil
}

// ciJobDir is the job's output directory, lpci's layout.
func ciJobDir(job CIJob) string {
	return path.Join(ciOutputDir, job.Name, strconv.Itoa(job.Index))
}

// lpciArgv is run_ci.py's lpci command line for the job.
func (m *CIManager) lpciArgv(job CIJob) []string {
	a := m.args
	argv := []string{"lpci", "-v", "run-one", "--output-directory", ciOutputDir, job.Name, strconv.Itoa(job.Index)}
	for _, r := range a.PackageRepositories {
		argv = append(argv, "--package-repository", r)
	}
	for _, k := range slices.Sorted(maps.Keys(a.EnvironmentVariables)) {
		argv = append(argv, "--set-env", k+"="+a.EnvironmentVariables[k])
	}
	for _, k := range slices.Sorted(maps.Keys(a.PluginSettings)) {
		argv = append(argv, "--plugin-setting", k+"="+a.PluginSettings[k])
	}
	if a.Secrets != nil {
		argv = append(argv, "--secrets", ciSecretsPath)
	}
	if a.GPUNvidia() {
		argv = append(argv, "--gpu-nvidia")
	}
	return argv
}

// ciJobCommand is lpci's output teed to the job's log, through bash with
// pipefail so that lpci's exit status is the command's.
func ciJobCommand(lpci []string, dir string) []string {
	quoted := make([]string, len(lpci))
	for i, s := range lpci {
		quoted[i] = ShellQuote(s)
	}
	tee := ShellQuote("tee") + " " + ShellQuote(path.Join(dir, "log"))
	return []string{"/bin/bash", "-o", "pipefail", "-c", strings.Join(quoted, " ") + " 2>&1 | " + tee}
}

// builddRunner runs commands as buildd in the tree with the environment
// given (the jobs and their scans); runErr is set when a command could
// not be run at all.
func (m *CIManager) builddRunner(b *ContainerBuild) (run ciRunner, runErr *error) {
	runErr = new(error)
	run = func(ctx context.Context, argv, env []string) (int, error) {
		code, err := Run(ctx, b.Target, b.Log, target.Command{
			Args: append(append([]string(nil), ciBuilddPrefix...), argv...),
			Env:  env,
			Dir:  ciTreeDir,
		})
		if err != nil {
			*runErr = err
		}
		return code, err
	}
	return run, runErr
}

// prepareScanner is run-ci-prepare's scanner set-up (ci_scan.go), run as
// root with the builder proxy's environment, as freshclam is.
func (m *CIManager) prepareScanner(ctx context.Context, b *ContainerBuild) *Failure {
	var runErr error
	run := func(ctx context.Context, argv, env []string) (int, error) {
		code, err := Run(ctx, b.Target, b.Log, target.Command{Args: argv, Env: append(append([]string(nil), b.ProxyEnv...), env...)})
		if err != nil {
			runErr = err
		}
		return code, err
	}
	err := ciPrepareScannerFunc(ctx, run, ciAppendFile(b), b.Env.Config.ClamAVDatabaseURL)
	switch {
	case err == nil:
		return nil
	case runErr != nil:
		return b.ctxFail(ctx, BuildBuilderFail, "cannot prepare the malware scanner: %w", runErr)
	}
	return b.ctxFail(ctx, BuildPackageFail, "cannot prepare the malware scanner: %w", err)
}

package main

// `buildd-agent build ci`: run a repository's .launchpad.yaml jobs with
// the farm's ci manager, in-process, as Launchpad CI runs them: the same
// container, builder proxy, lpci and lxd snaps, checkout into /build/tree
// owned by buildd, `lpci -v run-one` per job as buildd, stage by stage, and
// every job's log, properties and outputs gathered. The jobs come from
// --stage, or from the pipeline of the repository's .launchpad.yaml when
// it is simple (a local repository, no matrix).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/builders"
)

func init() { buildSubcommands = append(buildSubcommands, newBuildCICmd) }

// localCIFlags are `build ci`'s flags.
type localCIFlags struct {
	config, gitRepository, gitPath, chroot, image, proxyURL, revocation string
	output, backend, series, arch, secretsFile                          string
	stages, channels, env, plugins, repositories, archives, keys        []string
	scanMalware, gpuNvidia, fastCleanup                                 bool
}

func newBuildCICmd() *cobra.Command {
	var f localCIFlags
	cmd := &cobra.Command{
		Use:   "ci --git-repository URL|PATH (--chroot FILE | --image FILE|SHA1) [--stage JOB:INDEX,...]... [flags]",
		Short: "Run .launchpad.yaml CI jobs from a git repository as Launchpad CI would (lpci)",
		Long: `Run CI jobs with the farm's ci manager: the commit is checked out into
/build/tree in the container (owned by buildd), the lxd and lpci snaps are
installed, "lxd init --auto" sets up the nested LXD, and each job runs as
buildd with "lpci -v run-one --output-directory /build/output JOB INDEX",
stage after stage. A failing job stops the build at the end of its stage.

The stages are given with --stage, in order, each a comma-separated list of
JOB:INDEX (--stage build:0 --stage test:0,test:1); without --stage they are
read from the pipeline of .launchpad.yaml in a local --git-repository (every
job at index 0; a .launchpad.yaml with a matrix needs --stage).

Each job's log, properties and output files are written to --output as
JOB:INDEX.log, JOB:INDEX.properties and JOB:INDEX_FILE; summary.json has the
jobs as Launchpad reads them ("extra": {"jobs": ...}).`,
		Example: `  sudo buildd-agent build ci --git-repository . --chroot jammy-amd64-chroot.tar.gz \
      --series jammy --stage build:0 --stage test:0,lint:0 \
      --channel lpci=latest/edge --env PIP_INDEX_URL=https://pypi.example/simple/ \
      --secrets-file secrets.yaml --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalCI(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, "ci", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("ci"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.gitRepository, "git-repository", "", "git repository URL (http, https or git://) or local path (required)")
	fl.StringVar(&f.gitPath, "git-path", "", "branch, tag or commit to run the jobs of (default: HEAD)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to run in")
	fl.StringVar(&f.image, "image", "", "unified LXD image tarball, or the SHA-1 of a chroot this agent already imported")
	fl.StringArrayVar(&f.stages, "stage", nil, "a stage: JOB:INDEX[,JOB:INDEX...] (repeatable, in order; default: .launchpad.yaml's pipeline)")
	fl.StringArrayVar(&f.channels, "channel", nil, "SNAP=CHANNEL to install (repeatable), e.g. lpci=latest/edge, lxd=5.21/stable")
	fl.StringArrayVar(&f.env, "env", nil, "KEY=VALUE passed to lpci as --set-env (environment_variables; repeatable)")
	fl.StringArrayVar(&f.plugins, "plugin-setting", nil, "KEY=VALUE passed to lpci as --plugin-setting (repeatable)")
	fl.StringVar(&f.secretsFile, "secrets-file", "", "YAML file of key: value secrets, passed to lpci as --secrets and masked in the log")
	fl.StringArrayVar(&f.repositories, "package-repository", nil, "sources.list line passed to lpci as --package-repository (repeatable)")
	fl.BoolVar(&f.scanMalware, "scan-malware", false, "scan each job's output with ClamAV ([proxy] clamavdatabase for the database)")
	fl.BoolVar(&f.gpuNvidia, "gpu-nvidia", false, "the gpu-nvidia builder constraint: pass the host's NVIDIA GPUs in, lpci --gpu-nvidia")
	fl.StringVar(&f.proxyURL, "proxy-url", "", "upstream HTTP proxy http://user:pass@host:port the build fetches through")
	fl.StringVar(&f.revocation, "revocation-endpoint", "", "URL where the proxy token is revoked when the build ends")
	fl.StringArrayVar(&f.archives, "archive", nil, "sources.list line of an archive the container's apt uses (repeatable; default: the chroot's own)")
	fl.StringArrayVar(&f.keys, "trusted-key", nil, "OpenPGP public key file (armoured or binary) the archives are signed with (repeatable)")
	fl.StringVar(&f.output, "output", "out", "directory for the jobs' files, buildlog and summary.json")
	fl.StringVar(&f.backend, "backend", "", "target backend (default: [builder] backend; ci builds need lxd)")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot (names the container and image)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	fl.BoolVar(&f.fastCleanup, "fast-cleanup", false, "leave the target behind when done")
	return cmd
}

// ciBuildArgs turns the flags into the build() arguments buildd-manager
// would send; stages are the jobs, already parsed.
func ciBuildArgs(f localCIFlags, arch string, stages [][]builders.CIJob) (map[string]any, error) {
	jobs := make([]any, len(stages))
	for i, st := range stages {
		s := make([]any, len(st))
		for j, job := range st {
			s[j] = []any{job.Name, int64(job.Index)}
		}
		jobs[i] = s
	}
	args := map[string]any{
		"series":         f.series,
		"arch_tag":       arch,
		"git_repository": f.gitRepository,
		"jobs":           jobs,
	}
	if f.gitPath != "" {
		args["git_path"] = f.gitPath
	}
	kvs := []struct {
		flag, arg string
		values    []string
	}{{"--channel", "channels", f.channels}, {"--env", "environment_variables", f.env}, {"--plugin-setting", "plugin_settings", f.plugins}}
	for _, kv := range kvs {
		m := map[string]any{}
		for _, s := range kv.values {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("invalid %s %q: want KEY=VALUE", kv.flag, s)
			}
			m[k] = v
		}
		if len(m) > 0 {
			args[kv.arg] = m
		}
	}
	if f.secretsFile != "" {
		data, err := os.ReadFile(f.secretsFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read --secrets-file: %w", err)
		}
		secrets, err := parseCISecrets(string(data))
		if err != nil {
			return nil, fmt.Errorf("--secrets-file %s: %w", f.secretsFile, err)
		}
		args["secrets"] = secrets
	}
	if len(f.repositories) > 0 {
		l := make([]any, len(f.repositories))
		for i, r := range f.repositories {
			l[i] = r
		}
		args["package_repositories"] = l
	}
	if f.scanMalware {
		args["scan_malware"] = true
	}
	if f.gpuNvidia {
		args["builder_constraints"] = []any{"gpu-nvidia"}
	}
	if f.proxyURL != "" {
		args["proxy_url"] = f.proxyURL
	}
	if f.revocation != "" {
		args["revocation_endpoint"] = f.revocation
	}
	if f.fastCleanup {
		args["fast_cleanup"] = true
	}
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return nil, err
	}
	return args, nil
}

// parseCIStages reads --stage values: JOB:INDEX[,JOB:INDEX...] each. The
// index follows the last ':' (a job name may hold one).
func parseCIStages(values []string) ([][]builders.CIJob, error) {
	var out [][]builders.CIJob
	for _, v := range values {
		var stage []builders.CIJob
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			k := strings.LastIndexByte(item, ':')
			if k <= 0 {
				return nil, fmt.Errorf("invalid --stage %q: %q is not JOB:INDEX", v, item)
			}
			index, err := strconv.Atoi(item[k+1:])
			if err != nil || index < 0 {
				return nil, fmt.Errorf("invalid --stage %q: %q has no index (JOB:INDEX)", v, item)
			}
			stage = append(stage, builders.CIJob{Name: item[:k], Index: index})
		}
		out = append(out, stage)
	}
	return out, nil
}

// maxLaunchpadYAML bounds the .launchpad.yaml read for its pipeline.
const maxLaunchpadYAML = 1 << 20

// parseCIPipeline reads the stages from a .launchpad.yaml's top-level
// `pipeline:` in its simple forms, each job at index 0:
//
//	pipeline:            pipeline: [build, [test, lint]]
//	  - build
//	  - [test, lint]
//	  - - docs
//	    - spell
//
// Anything else (anchors, a matrix, which makes more than index 0) is an
// error asking for --stage: the farm's stages come from Launchpad, and a
// wrong guess here would run other jobs than the farm.
func parseCIPipeline(yaml string) ([][]builders.CIJob, error) {
	const hint = "; give the stages with --stage"
	if len(yaml) > maxLaunchpadYAML {
		return nil, errors.New(".launchpad.yaml is too big" + hint)
	}
	lines := strings.Split(strings.ReplaceAll(yaml, "\r\n", "\n"), "\n")
	var names [][]string
	found := false
	for i := 0; i < len(lines); i++ {
		line := stripYAMLComment(lines[i])
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent == 0 {
			key, rest, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if strings.TrimSpace(key) == "matrix" {
				return nil, errors.New(".launchpad.yaml has a matrix" + hint)
			}
			if strings.TrimSpace(key) != "pipeline" {
				continue
			}
			if found {
				return nil, errors.New(".launchpad.yaml has two pipelines" + hint)
			}
			found = true
			if rest = strings.TrimSpace(rest); rest != "" {
				flow, err := parseYAMLFlowList(rest)
				if err != nil {
					return nil, fmt.Errorf(".launchpad.yaml pipeline: %v%s", err, hint)
				}
				names = flow
				continue
			}
			// The block list under it: "- item" lines at one indent; a
			// "- - item" stage goes on with "- item" lines indented more.
			outer, nested := -1, false
			for i+1 < len(lines) {
				next := stripYAMLComment(lines[i+1])
				if strings.TrimSpace(next) == "" {
					i++
					continue
				}
				ind := len(next) - len(strings.TrimLeft(next, " "))
				item := strings.TrimSpace(next)
				isItem := item == "-" || strings.HasPrefix(item, "- ")
				if outer < 0 {
					outer = ind
				}
				if ind < outer || ind == 0 && !isItem {
					break
				}
				i++
				if !isItem {
					return nil, fmt.Errorf(".launchpad.yaml pipeline: cannot read %q%s", item, hint)
				}
				item = strings.TrimSpace(strings.TrimPrefix(item, "-"))
				switch {
				case ind > outer:
					if !nested || strings.HasPrefix(item, "-") || strings.HasPrefix(item, "[") {
						return nil, fmt.Errorf(".launchpad.yaml pipeline: cannot read %q%s", strings.TrimSpace(next), hint)
					}
					names[len(names)-1] = append(names[len(names)-1], item)
				case strings.HasPrefix(item, "- "):
					names = append(names, []string{strings.TrimSpace(item[2:])})
					nested = true
				case strings.HasPrefix(item, "["):
					flow, err := parseYAMLFlowList("[" + item + "]")
					if err != nil || len(flow) != 1 {
						return nil, fmt.Errorf(".launchpad.yaml pipeline: cannot read %q%s", item, hint)
					}
					names = append(names, flow[0])
					nested = false
				default:
					names = append(names, []string{item})
					nested = false
				}
			}
		} else if strings.TrimSpace(line) == "matrix:" || strings.HasPrefix(strings.TrimSpace(line), "matrix:") {
			return nil, errors.New(".launchpad.yaml has a matrix" + hint)
		}
	}
	if !found {
		return nil, errors.New(".launchpad.yaml has no pipeline" + hint)
	}
	if len(names) == 0 {
		return nil, errors.New(".launchpad.yaml's pipeline is empty" + hint)
	}
	out := make([][]builders.CIJob, len(names))
	for i, st := range names {
		for _, n := range st {
			n = unquoteYAMLScalar(n)
			if n == "" || strings.ContainsAny(n, "[]{}&*!|>'\"%@`#") {
				return nil, fmt.Errorf(".launchpad.yaml pipeline: %q is not a plain job name%s", n, hint)
			}
			out[i] = append(out[i], builders.CIJob{Name: n})
		}
	}
	return out, nil
}

// stripYAMLComment drops a " #" comment (and a line that is one).
func stripYAMLComment(line string) string {
	line = strings.TrimRight(line, " \t")
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return ""
	}
	if k := strings.Index(line, " #"); k >= 0 {
		line = line[:k]
	}
	return strings.TrimRight(line, " \t")
}

// parseYAMLFlowList reads [a, [b, c], d] into stages (a plain item is a
// stage of one); no deeper nesting.
func parseYAMLFlowList(s string) ([][]string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("cannot read %q", s)
	}
	s = s[1 : len(s)-1]
	var out [][]string
	for len(strings.TrimSpace(s)) > 0 {
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 || strings.Contains(s[1:end], "[") {
				return nil, fmt.Errorf("cannot read %q", s)
			}
			var stage []string
			for _, n := range strings.Split(s[1:end], ",") {
				if n = strings.TrimSpace(n); n != "" {
					stage = append(stage, n)
				}
			}
			if len(stage) == 0 {
				return nil, errors.New("an empty stage")
			}
			out = append(out, stage)
			s = strings.TrimSpace(s[end+1:])
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			n := strings.TrimSpace(s[:end])
			if n == "" || strings.Contains(n, "]") {
				return nil, fmt.Errorf("cannot read %q", s)
			}
			out = append(out, []string{n})
			s = s[end:]
		}
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if strings.TrimSpace(s) != "" {
			return nil, fmt.Errorf("cannot read %q", s)
		}
	}
	return out, nil
}

// unquoteYAMLScalar drops matching quotes around a plain name.
func unquoteYAMLScalar(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// parseCISecrets reads a secrets file: a YAML mapping of key: value lines
// (values plain, 'single' or "double" quoted; comments and blank lines
// skipped), as lpci's --secrets takes it.
func parseCISecrets(data string) (map[string]any, error) {
	out := map[string]any{}
	for n, line := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		k, v, ok := strings.Cut(t, ":")
		if !ok || strings.TrimSpace(k) == "" || line != strings.TrimLeft(line, " \t") {
			return nil, fmt.Errorf("line %d: want key: value", n+1)
		}
		k = unquoteYAMLScalar(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		switch {
		case strings.HasPrefix(v, `"`):
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: bad double-quoted value", n+1)
			}
			v = u
		case strings.HasPrefix(v, "'"):
			if len(v) < 2 || !strings.HasSuffix(v, "'") {
				return nil, fmt.Errorf("line %d: bad single-quoted value", n+1)
			}
			v = strings.ReplaceAll(v[1:len(v)-1], "''", "'")
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("line %d: %s given twice", n+1, k)
		}
		out[k] = v
	}
	return out, nil
}

// launchpadYAML reads .launchpad.yaml at rev ("" = HEAD) of a local
// repository.
func launchpadYAML(repo, rev string) (string, error) {
	if rev == "" {
		rev = "HEAD"
	}
	cmd := exec.Command("git", "-C", repo, "show", rev+":.launchpad.yaml")
	cmd.Env = append(os.Environ(), gitSafeEnv...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("cannot read .launchpad.yaml at %s of %s (give the stages with --stage): %s", rev, repo, strings.TrimSpace(errOut.String()))
	}
	return string(out), nil
}

// localCIOutputName is a job's output file in --output: the farm's
// "<job>:<index>/<file>" flattened, as the output directory takes plain
// names.
func localCIOutputName(jobID, base string) string { return jobID + "_" + base }

func runLocalCI(ctx context.Context, f localCIFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.gitRepository == "" {
		return 0, errors.New("--git-repository is required")
	}
	stages, err := parseCIStages(f.stages)
	if err != nil {
		return 0, err
	}
	if len(stages) == 0 {
		if !filepath.IsAbs(f.gitRepository) {
			return 0, errors.New("give the stages with --stage (the pipeline is read from .launchpad.yaml only in a local repository)")
		}
		y, err := launchpadYAML(f.gitRepository, f.gitPath)
		if err != nil {
			return 0, err
		}
		if stages, err = parseCIPipeline(y); err != nil {
			return 0, err
		}
		fmt.Fprintf(stderr, "stages from .launchpad.yaml: %s\n", formatCIStages(stages))
	}
	cfg, arch, err := localConfig(f.config, f.backend, f.arch)
	if err != nil {
		return 0, err
	}
	args, err := ciBuildArgs(f, arch, stages)
	if err != nil {
		return 0, err
	}
	img, err := localImage(f.chroot, f.image, args)
	if err != nil {
		return 0, err
	}
	builders.CIOutputFileName = localCIOutputName
	return runLocalBuild(ctx, cfg, "ci", builders.Request{Chroot: img, Args: args}, arch, f.output, stdout, stderr)
}

// formatCIStages shows stages as --stage would take them.
func formatCIStages(stages [][]builders.CIJob) string {
	parts := make([]string, len(stages))
	for i, st := range stages {
		ids := make([]string, len(st))
		for j, job := range st {
			ids[j] = job.ID()
		}
		parts[i] = "--stage " + strings.Join(ids, ",")
	}
	return strings.Join(parts, " ")
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders"
)

func TestCIBuildArgs(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.gpg")
	os.WriteFile(key, []byte("KEY"), 0o644)
	secrets := filepath.Join(dir, "secrets.yaml")
	os.WriteFile(secrets, []byte("# CI secrets\nauth: 'it''s'\ntoken: \"a\\tb\"\nplain: x: y\n"), 0o600)
	stages, err := parseCIStages([]string{"build:0", "test:0, test:1,ns:lint:2"})
	if err != nil {
		t.Fatal(err)
	}
	f := localCIFlags{gitRepository: "https://git.example/hello.git", gitPath: "0123456789abcdef0123456789abcdef01234567", series: "jammy",
		channels: []string{"lpci=latest/edge"}, env: []string{"PIP_INDEX_URL=https://u:p@pypi.example/simple/"}, plugins: []string{"a=b=c"},
		secretsFile: secrets, repositories: []string{"deb http://ppa.example/ubuntu jammy main"}, scanMalware: true, gpuNvidia: true,
		archives: []string{"deb http://archive.example/ubuntu jammy main"}, keys: []string{key}}
	args, err := ciBuildArgs(f, "amd64", stages)
	if err != nil {
		t.Fatal(err)
	}
	factory, _ := builders.Lookup("ci")
	m, err := factory(builders.Request{Args: args})
	if err != nil {
		t.Fatalf("the manager refuses the flags' arguments: %v", err)
	}
	a := m.(*builders.CIManager).Args()
	want := [][]builders.CIJob{{{Name: "build", Index: 0}}, {{Name: "test", Index: 0}, {Name: "test", Index: 1}, {Name: "ns:lint", Index: 2}}}
	if diff := cmp.Diff(want, a.Jobs); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"auth": "it's", "token": "a\tb", "plain": "x: y"}, a.Secrets); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	if !a.ScanMalware || !a.GPUNvidia() || a.PluginSettings["a"] != "b=c" || a.Channels["lpci"] != "latest/edge" || len(a.PackageRepositories) != 1 || len(a.Common.TrustedKeys) != 1 {
		t.Errorf("args = %+v", a)
	}
	for _, bad := range []localCIFlags{{env: []string{"NOEQUALS"}}, {plugins: []string{"=x"}}, {channels: []string{"lpci"}}, {secretsFile: filepath.Join(dir, "missing")}} {
		if _, err := ciBuildArgs(bad, "amd64", stages); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestParseCIStages(t *testing.T) {
	for _, bad := range []string{"", "build", "build:", ":0", "build:x", "build:-1", "a:0,,b:0"} {
		if _, err := parseCIStages([]string{bad}); err == nil {
			t.Errorf("--stage %q accepted", bad)
		}
	}
}

func TestParseCIPipeline(t *testing.T) {
	jobs := func(stages ...string) [][]builders.CIJob {
		var out [][]builders.CIJob
		for _, s := range stages {
			var st []builders.CIJob
			for _, n := range strings.Split(s, " ") {
				st = append(st, builders.CIJob{Name: n})
			}
			out = append(out, st)
		}
		return out
	}
	good := []struct {
		name, yaml string
		want       [][]builders.CIJob
	}{
		{"block", "pipeline:\n  - build\n  - [test, lint]\n  - - docs\n    - spell\njobs:\n  build:\n    series: jammy\n", jobs("build", "test lint", "docs spell")},
		{"flow", "# ci\npipeline: [build, [test, 'lint']]  # stages\njobs: {}\n", jobs("build", "test lint")},
		{"unindented block", "pipeline:\n- build\n- test\njobs:\n  build: {}\n", jobs("build", "test")},
		{"comments and blanks", "jobs:\n  a:\n    run: x\n\npipeline:\n  # first\n  - a\n\n  - \"b\"\n", jobs("a", "b")},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCIPipeline(tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("stages (-want +got):\n%s", diff)
			}
		})
	}
	bad := []struct{ name, yaml, want string }{
		{"no pipeline", "jobs:\n  a: {}\n", "has no pipeline"},
		{"empty", "pipeline: []\n", "is empty"},
		{"matrix", "pipeline:\n  - test\njobs:\n  test:\n    matrix:\n      - series: focal\n", "has a matrix"},
		{"anchor", "pipeline:\n  - &x build\n", "not a plain job name"},
		{"map item", "pipeline:\n  - build\n  nested: 1\n", "cannot read"},
		{"deep flow", "pipeline: [[a, [b]]]\n", "cannot read"},
		{"two", "pipeline: [a]\npipeline: [b]\n", "two pipelines"},
		{"empty stage", "pipeline: [a, []]\n", "an empty stage"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCIPipeline(tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--stage") {
				t.Errorf("error = %v, want %q and a hint", err, tc.want)
			}
		})
	}
}

func TestParseCISecrets(t *testing.T) {
	for _, bad := range []string{"novalue\n", "  indented: x\n", "a: \"unterminated\n", "a: 'x\n", "a: 1\na: 2\n"} {
		if _, err := parseCISecrets(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got, err := parseCISecrets("---\n"); err != nil || len(got) != 0 {
		t.Errorf("empty file: %v %v", got, err)
	}
}

func TestLocalCIOutputName(t *testing.T) {
	if got := localCIOutputName("build:0", "hello.whl"); got != "build:0_hello.whl" || strings.Contains(got, "/") {
		t.Errorf("localCIOutputName = %q", got)
	}
}

// FuzzParseCIPipeline: any .launchpad.yaml gives stages of plain job
// names or an error with the --stage hint; never a panic.
func FuzzParseCIPipeline(f *testing.F) {
	for _, s := range []string{"pipeline:\n  - build\n  - [a, b]\n  - - c\n    - d\n", "pipeline: [a, [b, c]]\n", "pipeline:\n- a\n", "pipeline: [[", "pipeline:\n  - - a\n      - b\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		stages, err := parseCIPipeline(s)
		if err != nil {
			if !strings.Contains(err.Error(), "--stage") {
				t.Fatalf("error without the hint: %v", err)
			}
			return
		}
		if len(stages) == 0 {
			t.Fatalf("no stages and no error from %q", s)
		}
		for _, st := range stages {
			if len(st) == 0 {
				t.Fatalf("an empty stage from %q", s)
			}
			for _, j := range st {
				if j.Name == "" || j.Index != 0 || strings.ContainsAny(j.Name, "[]{}#") {
					t.Fatalf("job %q from %q", j.Name, s)
				}
			}
		}
	})
}

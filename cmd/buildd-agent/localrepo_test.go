package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/builders"
)

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// A local repository path is served on loopback and checked out by the
// farm's own checkout code (package vcs through builders.CheckoutFunc),
// at its committed HEAD.
func TestLocalRepository(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	repo := filepath.Join(t.TempDir(), "hello")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repo, "snapcraft.yaml"), []byte("name: hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "add", ".")
	gitIn(t, repo, "commit", "-q", "-m", "one")
	head := gitIn(t, repo, "rev-parse", "HEAD")
	// Uncommitted: not built, and said so.
	if err := os.WriteFile(filepath.Join(repo, "snapcraft.yaml"), []byte("name: dirty\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// "." from inside the repository becomes its absolute path.
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	var flag string
	cmd.Flags().StringVar(&flag, "git-repository", "", "")
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	if err := os.Chdir(repo); err != nil {
		t.Fatal(err)
	}
	cmd.Flags().Set("git-repository", ".")
	if err := absLocalRepository(cmd, nil); err != nil || flag != repo {
		t.Fatalf("absLocalRepository: %q, %v; want %q", flag, err, repo)
	}
	cmd.Flags().Set("git-repository", "https://git.example/x.git")
	if err := absLocalRepository(cmd, nil); err != nil || flag != "https://git.example/x.git" {
		t.Errorf("a URL was changed: %q, %v", flag, err)
	}
	cmd.Flags().Set("git-repository", filepath.Join(repo, "nope"))
	if err := absLocalRepository(cmd, nil); err == nil {
		t.Errorf("a missing directory was accepted")
	}

	var stderr bytes.Buffer
	args := map[string]any{"git_repository": repo}
	stop, err := serveLocalRepository(args, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	url, _ := args["git_repository"].(string)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("git_repository = %q, want a loopback URL", url)
	}
	if !strings.Contains(stderr.String(), "uncommitted changes") {
		t.Errorf("no note about uncommitted changes: %q", stderr.String())
	}
	dir := filepath.Join(t.TempDir(), "checkout")
	got, err := builders.CheckoutFunc(context.Background(), url, "", dir, builders.CheckoutOptions{})
	if err != nil || got != head {
		t.Fatalf("checkout of %s: %q, %v; want %s", url, got, err, head)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "snapcraft.yaml")); string(b) != "name: hello\n" {
		t.Errorf("checked out %q, want the committed file", b)
	}
	// Read-only.
	if out, err := exec.Command("git", "-C", dir, "push", url, "HEAD:refs/heads/evil").CombinedOutput(); err == nil {
		t.Errorf("push to the served repository succeeded:\n%s", out)
	}
	if gitIn(t, repo, "branch", "--list", "evil") != "" {
		t.Errorf("a branch was pushed")
	}

	if _, err := serveLocalRepository(map[string]any{"git_repository": repo, "proxy_url": "http://u:p@127.0.0.1:3128"}, &stderr); err == nil {
		t.Errorf("a local repository with --proxy-url was accepted")
	}
	if _, err := serveLocalRepository(map[string]any{"git_repository": t.TempDir()}, &stderr); err == nil ||
		!strings.Contains(err.Error(), "not a git repository") {
		t.Errorf("a plain directory: %v", err)
	}
}

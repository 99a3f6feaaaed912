package builders

// Bazaar branches, checked out on the host with Breezy (Debian's brz; the
// reference runs `bzr branch` and `bzr revno` in the target) and streamed
// into the target like a git checkout.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// BzrCommand is the Breezy executable (a seam for tests).
var BzrCommand = "brz"

// bzrEnv is the environment of brz on the host: its own home in the work
// directory (Breezy writes ~/.cache/breezy and ~/.config/breezy), no log
// file, the proxy if any.
func bzrEnv(home, proxyURL string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home, "LANG=C.UTF-8", "BRZ_LOG=/dev/null", "BRZ_EMAIL=buildd@localhost",
	}
	if proxyURL != "" {
		env = append(env, "http_proxy="+proxyURL, "https_proxy="+proxyURL)
	}
	return env
}

// runHost runs a host command with its output to w, killed (with its
// process group) when ctx ends.
func runHost(ctx context.Context, w io.Writer, env []string, dir string, cred *syscall.Credential, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd.Run()
}

// BranchBzr branches a Bazaar branch into dir (in the tool's directory)
// on the host with Breezy, as the tool's user, and returns its revno
// (what the reference reports as revision_id).
func BranchBzr(ctx context.Context, log io.Writer, branch, dir string, tool *hostTool, proxyURL string) (string, error) {
	env := bzrEnv(tool.Dir, proxyURL)
	fmt.Fprintf(log, "[%s]\nRUN: %s\n", now().Format(CtimeLayout), QuoteArgs([]string{BzrCommand, "branch", describeSource(branch, ""), filepath.Base(dir)}))
	if err := runHost(ctx, log, env, tool.Dir, tool.Cred, BzrCommand, "branch", "--", branch, dir); err != nil {
		return "", fmt.Errorf("brz branch failed: %w", err)
	}
	var out strings.Builder
	if err := runHost(ctx, &limitWriter{w: &out, n: 4096}, env, dir, tool.Cred, BzrCommand, "revno"); err != nil {
		return "", fmt.Errorf("brz revno failed: %w", err)
	}
	revno := strings.TrimRight(out.String(), "\n")
	if revno == "" || strings.ContainsAny(revno, "\n\r") {
		return "", fmt.Errorf("brz revno printed %q, not a revno", revno)
	}
	return revno, nil
}

// limitWriter passes on at most n bytes and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	k := len(p)
	if len(p) > l.n {
		p = p[:l.n]
	}
	l.n -= len(p)
	if len(p) > 0 {
		if _, err := l.w.Write(p); err != nil {
			return 0, err
		}
	}
	return k, nil
}

// FetchBzr branches a Bazaar branch on the host and streams the tree
// (with its .bzr) into the target at dest owned by root; it returns the
// revno. A failure of Breezy is the reference's "Build failed"
// (PACKAGEFAIL); failing to write into the target is the builder's.
func (b *ContainerBuild) FetchBzr(ctx context.Context, branch, dest string) (string, *Failure) {
	return b.fetchBzr(ctx, branch, dest, "")
}

func (b *ContainerBuild) fetchBzr(ctx context.Context, branch, dest, proxyURL string) (string, *Failure) {
	if WriteTarFunc == nil {
		return "", Fail(BuildBuilderFail, "cannot fetch the source: this agent was built without VCS support")
	}
	if _, err := exec.LookPath(BzrCommand); err != nil {
		return "", Fail(BuildBuilderFail, "cannot run Breezy (%s) on this builder: %w", BzrCommand, err)
	}
	tool, err := b.NewHostTool()
	if err != nil {
		return "", Fail(BuildBuilderFail, "%w", err)
	}
	defer tool.Remove()
	tree := tool.Path("tree")
	revno, err := BranchBzr(ctx, b.Log, branch, tree, tool, proxyURL)
	if err != nil {
		return "", b.ctxFail(ctx, BuildPackageFail, "cannot branch %s: %w", describeSource(branch, ""), err)
	}
	if f := b.CopyHostTreeIn(ctx, tree, dest); f != nil {
		return "", f
	}
	return revno, nil
}

// CopyHostTreeIn streams the host directory tree into the target at dest,
// owned by root (VCS metadata kept).
func (b *ContainerBuild) CopyHostTreeIn(ctx context.Context, tree, dest string) *Failure {
	if f := b.Run(ctx, BuildBuilderFail, targetMkdir(path.Dir(dest))); f != nil {
		return f
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := WriteTarFunc(pw, tree, 0, 0, false)
		pw.CloseWithError(err)
		done <- err
	}()
	copyErr := b.Target.CopyTreeIn(ctx, pr, dest, 0, 0)
	pr.CloseWithError(errCopyStopped)
	tarErr := <-done
	if tarErr != nil && !errors.Is(tarErr, errCopyStopped) {
		return b.ctxFail(ctx, BuildPackageFail, "cannot pack the source tree: %w", tarErr)
	}
	if copyErr != nil {
		return b.ctxFail(ctx, BuildBuilderFail, "cannot copy the source into the target at %s: %w", dest, copyErr)
	}
	return nil
}

func targetMkdir(dir string) target.Command {
	return target.Command{Args: []string{"mkdir", "-p", dir}}
}

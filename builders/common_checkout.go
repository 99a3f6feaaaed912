package builders

// The source checkout: done on the host with package vcs (through the
// upstream proxy) and streamed into the target.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/vcs"
)

// CheckoutOptions are given to the host-side VCS checkout.
type CheckoutOptions struct {
	// ProxyURL is the upstream proxy (with credentials) to fetch through.
	ProxyURL string
	// MirrorDir caches repositories between builds ("" = none).
	MirrorDir string
	Log       io.Writer
	// Shallow fetches the one ref at depth 1 (the fetch service's mode;
	// MirrorDir is then "").
	Shallow bool
	// CABundle is trusted for https besides the system's CAs (the fetch
	// service's certificate).
	CABundle []byte
}

var (
	// CheckoutFunc checks out repository at ref ("" = HEAD) into dir on the
	// host and returns the commit it resolved to.
	CheckoutFunc = checkoutGit
	// WriteTarFunc writes the tree at dir as a tar stream, every entry
	// owned by uid:gid; excludeVCS leaves out .git and friends.
	WriteTarFunc = func(w io.Writer, dir string, uid, gid int, excludeVCS bool) error {
		return vcs.WriteTar(w, dir, vcs.TarOptions{UID: uid, GID: gid, ExcludeVCS: excludeVCS})
	}
)

// HostWorkDir makes a private directory on the host for this build's
// source checkout, under the state directory.
func (b *ContainerBuild) HostWorkDir() (string, error) {
	base := b.Env.Config.StateDir
	if base == "" {
		base = os.TempDir()
	}
	base = filepath.Join(base, "work")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("cannot create work directory %q: %w", base, err)
	}
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, b.Spec.BuildID)
	if len(id) > 64 {
		id = id[:64]
	}
	return os.MkdirTemp(base, "build-"+id+"-")
}

// FetchGit checks repository at ref out on the host (through the upstream
// proxy: the target has no other way out), streams the tree into the
// target at dest owned by root with its .git kept (snapcraft may read it,
// as it would after the reference's in-target clone), and returns the
// commit. Any VCS failure is the reference's "Build failed" (201 →
// PACKAGEFAIL); failing to write into the target is the builder's.
func (b *ContainerBuild) FetchGit(ctx context.Context, repository, ref, dest, upstreamProxy string) (string, *Failure) {
	return b.FetchGitInspect(ctx, repository, ref, dest, upstreamProxy, nil)
}

// FetchGitInspect is FetchGit that also calls inspect (if not nil) with
// the checkout on the host once it is in the target, before it is
// removed: the manager resolves its paths in the very tree the target got
// (build_path, see ResolveBuildPath) without trusting the target to.
func (b *ContainerBuild) FetchGitInspect(ctx context.Context, repository, ref, dest, upstreamProxy string, inspect func(tree string)) (string, *Failure) {
	if CheckoutFunc == nil || WriteTarFunc == nil {
		return "", Fail(BuildBuilderFail, "cannot fetch the source: this agent was built without VCS support")
	}
	work, err := b.HostWorkDir()
	if err != nil {
		return "", Fail(BuildBuilderFail, "%w", err)
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")
	mirror := ""
	shallow := b.FetchService || b.Shallow
	if b.Env.Config.StateDir != "" && !shallow {
		mirror = GitMirrorDir(b.Env.Config.StateDir)
	}
	rev, err := CheckoutFunc(ctx, repository, ref, tree, CheckoutOptions{ProxyURL: upstreamProxy, MirrorDir: mirror, Log: b.Log,
		Shallow: shallow, CABundle: b.FetchServiceCA})
	if err != nil {
		return "", b.ctxFail(ctx, BuildPackageFail, "cannot check out %s: %w", describeSource(repository, ref), err)
	}
	if f := b.Run(ctx, BuildBuilderFail, target.Command{Args: []string{"mkdir", "-p", path.Dir(dest)}}); f != nil {
		return "", f
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := WriteTarFunc(pw, tree, 0, 0, false)
		pw.CloseWithError(err)
		done <- err
	}()
	copyErr := b.Target.CopyTreeIn(ctx, pr, dest, 0, 0)
	// Unblock the writer if the copy stopped before reading everything.
	pr.CloseWithError(errCopyStopped)
	tarErr := <-done
	if tarErr != nil && !errors.Is(tarErr, errCopyStopped) {
		return "", b.ctxFail(ctx, BuildPackageFail, "cannot pack the source tree: %w", tarErr)
	}
	if copyErr != nil {
		return "", b.ctxFail(ctx, BuildBuilderFail, "cannot copy the source into the target at %s: %w", dest, copyErr)
	}
	if inspect != nil {
		inspect(tree)
	}
	return rev, nil
}

var errCopyStopped = errors.New("the copy into the target stopped")

// describeSource names a repository for messages without its credentials.
func describeSource(repository, ref string) string {
	shown := repository
	if u, err := url.Parse(repository); err == nil && u.User != nil {
		u.User = nil
		shown = u.String()
	}
	if ref == "" {
		return shown
	}
	return shown + " at " + ref
}

// GitMirrorDir is where builds keep bare mirrors of the repositories they
// fetch (the agent prunes it by size).
func GitMirrorDir(stateDir string) string { return filepath.Join(stateDir, "git-mirrors") }

// checkoutGit is CheckoutFunc on package vcs.
func checkoutGit(ctx context.Context, repository, ref, dir string, opts CheckoutOptions) (string, error) {
	return vcs.Checkout(ctx, vcs.Source{Repository: repository, Path: ref}, dir, vcs.Options{
		ProxyURL:  opts.ProxyURL,
		MirrorDir: opts.MirrorDir,
		Log:       opts.Log,
		Shallow:   opts.Shallow,
		CABundle:  opts.CABundle,
	})
}

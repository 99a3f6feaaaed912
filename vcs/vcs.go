// Package vcs gets a build's source: it checks out a git branch, tag or
// commit on the host with go-git (launchpad-buildd shells out to git inside
// the target instead, lpbuildd/target/vcs.py) and streams the tree into the
// target as a tar (WriteTar, for target.CopyTreeIn).
//
// Safety: only http(s) and git:// URLs are fetched (never ssh, file or a
// local path); the worktree is written by this package, not by go-git, with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) so that a hostile tree (".."
// names, ".git" entries, a symlink and a file below it) can never make it
// write outside the checkout directory; every error and log line is
// sanitised of the credentials in the repository and proxy URLs.
//
// Speed: a shallow single-ref fetch when Options.Shallow allows it, and an
// optional bare mirror cache (Options.MirrorDir) so that a rebuild fetches
// only what is new and hard-links the mirror's packs into the checkout.
package vcs

import (
	"errors"
	"io"
	"time"
)

// Source names what to check out: launchpad-buildd's git_repository and
// git_path.
type Source struct {
	// Repository is the URL (http, https or git scheme), possibly with
	// credentials in it.
	Repository string
	// Path is the git_path: "" or "HEAD" for the default branch, a branch
	// ("main", "refs/heads/main"), a tag ("refs/tags/1.0" or "1.0",
	// lightweight or annotated) or a full commit SHA (CI builds). A short
	// name that is both a branch and a tag means the branch, as with
	// `git checkout`.
	Path string
	// Commit, when set together with a branch in Path, is the commit to
	// check out; it must be reachable from that branch (ErrNotOnBranch).
	// Launchpad's CI builds send the SHA alone in Path instead.
	Commit string
}

// Options tune a checkout.
type Options struct {
	// ProxyURL is the job's upstream HTTP proxy, credentials included
	// ("http://user:pass@host:port"); "" fetches directly. git:// URLs
	// cannot go through it and are refused when it is set.
	ProxyURL string
	// MirrorDir, if set, holds bare mirrors keyed by a hash of the
	// repository URL (without credentials), reused across builds and
	// restarts; see PruneMirrors.
	MirrorDir string
	// Log receives one-line progress messages (the build log); nil = none.
	Log io.Writer
	// Timeout bounds the whole checkout (DefaultTimeout if 0).
	Timeout time.Duration
	// Shallow allows a depth-1 fetch of the one ref (branch, tag, or a
	// commit when the server allows fetching it by SHA). Without a mirror
	// only; the build then has no history (like launchpad-buildd's
	// fetch-service and OCI builds).
	Shallow bool
	// CABundle holds PEM certificates trusted for https besides the
	// system's: the fetch service's CA, which intercepts TLS.
	CABundle []byte
}

// DefaultTimeout bounds a checkout when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Minute

// TarOptions tune WriteTar.
type TarOptions struct {
	// UID and GID own every entry.
	UID, GID int
	// ExcludeVCS leaves out version-control files as GNU tar's
	// --exclude-vcs does (.git, .gitignore, .gitmodules, .bzr, ...).
	ExcludeVCS bool
}

// Errors a checkout can fail with, for errors.Is. Builders map all of them
// to PACKAGEFAIL (the reference's exit 201), except context errors on
// abort.
var (
	// ErrUnsupportedURL: not an http, https or git:// URL, or git:// with a proxy.
	ErrUnsupportedURL = errors.New("unsupported repository URL")
	// ErrRepositoryNotFound: the server says there is no such repository.
	ErrRepositoryNotFound = errors.New("repository not found")
	// ErrAuthentication: the server refused the credentials (or wants some).
	ErrAuthentication = errors.New("authentication failed")
	// ErrEmptyRepository: the repository has no commits.
	ErrEmptyRepository = errors.New("repository is empty")
	// ErrUnknownRef: git_path is neither a branch, a tag nor a commit there.
	ErrUnknownRef = errors.New("unknown ref")
	// ErrNotCommit: the ref points at something other than a commit
	// (a tag of a tree or a blob).
	ErrNotCommit = errors.New("ref does not point at a commit")
	// ErrNotOnBranch: Source.Commit is not reachable from the branch.
	ErrNotOnBranch = errors.New("commit is not on the branch")
	// ErrUnsafePath: the tree has a path that cannot be checked out safely
	// ("..", ".git", a name with a slash, an entry below a symlink or file).
	ErrUnsafePath = errors.New("unsafe path in repository")
	// ErrNetwork: the server could not be reached or failed, after retries.
	ErrNetwork = errors.New("network error")
	// ErrDestination: the checkout directory exists and is not empty.
	ErrDestination = errors.New("checkout directory is not empty")
)

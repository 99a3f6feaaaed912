package vcs

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// maxSubmoduleDepth bounds submodule recursion (a repository may name
// itself as its own submodule).
const maxSubmoduleDepth = 8

// retryDelays are the waits before each retry of a network operation that
// failed transiently; their count bounds the retries. Tests shorten them.
var retryDelays = []time.Duration{time.Second, 3 * time.Second, 9 * time.Second}

// run is one Checkout call.
type run struct {
	opts  Options
	san   *sanitizer
	proxy transport.ProxyOptions

	tunnelsMu sync.Mutex
	tunnels   map[string]*tunnel // git:// through the proxy, by host:port
}

// Checkout makes dir (created if missing, else it must be empty) the
// worktree of src: a branch checked out as a local branch like `git clone
// -b`, a tag or a commit detached. Submodules are checked out recursively,
// their relative URLs resolved against the superproject's URL; a submodule
// that fails is logged and skipped, as launchpad-buildd does. It returns
// the commit the worktree is at (annotated tags peeled): the build's
// revision_id.
func Checkout(ctx context.Context, src Source, dir string, opts Options) (revision string, err error) {
	r := &run{opts: opts, san: &sanitizer{}}
	r.san.addURL(src.Repository)
	r.san.addURL(opts.ProxyURL)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if opts.ProxyURL != "" {
		if r.proxy, err = parseProxy(opts.ProxyURL); err != nil {
			return "", r.san.wrapError(err)
		}
	}
	rev, err := r.checkout(ctx, src, dir, 0)
	r.closeTunnels()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		return "", r.san.wrapError(err)
	}
	return rev, nil
}

func (r *run) logf(format string, args ...any) {
	if r.opts.Log == nil {
		return
	}
	fmt.Fprintln(r.opts.Log, r.san.clean(fmt.Sprintf(format, args...)))
}

func parseProxy(raw string) (transport.ProxyOptions, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return transport.ProxyOptions{}, fmt.Errorf("invalid proxy URL %q: %w", redactURL(raw), ErrUnsupportedURL)
	}
	p := transport.ProxyOptions{}
	if u.User != nil {
		p.Username = u.User.Username()
		p.Password, _ = u.User.Password()
		u.User = nil
	}
	p.URL = u.String()
	return p, nil
}

// checkURL accepts http(s) and git:// URLs only: never ssh (no keys on
// builders), file or local paths (they would read the builder's disk).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("cannot parse repository URL %q: %w", redactURL(raw), ErrUnsupportedURL)
	}
	switch u.Scheme {
	case "http", "https":
	case "git":
	default:
		return fmt.Errorf("repository URL %q is not http, https or git: %w", redactURL(raw), ErrUnsupportedURL)
	}
	if u.Host == "" {
		return fmt.Errorf("repository URL %q has no host: %w", redactURL(raw), ErrUnsupportedURL)
	}
	return nil
}

// prepareDir creates dir or checks it is an empty directory (like git clone).
func prepareDir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if err == nil || !errors.Is(err, os.ErrExist) {
		if err != nil {
			return fmt.Errorf("cannot create checkout directory: %w", err)
		}
		return nil
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("cannot use checkout directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("checkout directory %s is not a directory: %w", dir, ErrDestination)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot use checkout directory: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("checkout directory %s: %w", dir, ErrDestination)
	}
	return nil
}

// retry runs op, retrying transient failures after retryDelays.
func (r *run) retry(ctx context.Context, what string, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil || !transient(err) || attempt >= len(retryDelays) || ctx.Err() != nil {
			return err
		}
		d := retryDelays[attempt]
		r.logf("%s failed (%v); retrying in %s", what, err, d)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

// refKind says what git_path named.
type refKind int

const (
	kindBranch refKind = iota
	kindTag
	kindCommit
)

// want is git_path resolved against the server's refs.
type want struct {
	kind refKind
	ref  plumbing.ReferenceName // refs/heads/x or refs/tags/x; "" for a commit
	hash plumbing.Hash          // the commit asked for (kindCommit)
}

func (w want) String() string {
	switch w.kind {
	case kindBranch:
		return "branch " + w.ref.Short()
	case kindTag:
		return "tag " + w.ref.Short()
	}
	return "commit " + w.hash.String()
}

var fullSHARE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-fA-F]{40}$`) })
var abbrevSHARE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-fA-F]{7,39}$`) })

// listRefs asks the server for its refs (with retries).
func (r *run) listRefs(ctx context.Context, repoURL string) (map[plumbing.ReferenceName]*plumbing.Reference, error) {
	dial, err := r.endpoint(ctx, repoURL)
	if err != nil {
		return nil, err
	}
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{dial}})
	var refs []*plumbing.Reference
	err = r.retry(ctx, "Listing refs of "+redactURL(repoURL), func() error {
		var err error
		refs, err = rem.ListContext(ctx, &git.ListOptions{ProxyOptions: r.proxy, CABundle: r.opts.CABundle})
		return r.tunnelError(repoURL, err)
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list refs of %s: %w", redactURL(repoURL), withKind(err))
	}
	m := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, ref := range refs {
		m[ref.Name()] = ref
	}
	if len(m) == 0 || (len(m) == 1 && m[plumbing.HEAD] != nil) {
		return nil, fmt.Errorf("cannot check out %s: %w", redactURL(repoURL), ErrEmptyRepository)
	}
	return m, nil
}

// resolve interprets git_path against the advertised refs.
func resolve(path string, refs map[plumbing.ReferenceName]*plumbing.Reference) (want, error) {
	switch {
	case path == "" || path == "HEAD":
		head := refs[plumbing.HEAD]
		if head == nil {
			return want{}, fmt.Errorf("the repository has no default branch (HEAD): %w", ErrUnknownRef)
		}
		if head.Type() == plumbing.SymbolicReference {
			if refs[head.Target()] == nil {
				return want{}, fmt.Errorf("the repository's HEAD points at %s, which does not exist: %w", head.Target(), ErrUnknownRef)
			}
			return want{kind: kindBranch, ref: head.Target()}, nil
		}
		// A detached HEAD on the server: git clone picks a branch at the same commit.
		for name, ref := range refs {
			if name.IsBranch() && ref.Hash() == head.Hash() {
				return want{kind: kindBranch, ref: name}, nil
			}
		}
		return want{kind: kindCommit, hash: head.Hash()}, nil
	case fullSHARE().MatchString(path):
		return want{kind: kindCommit, hash: plumbing.NewHash(strings.ToLower(path))}, nil
	case strings.HasPrefix(path, "refs/heads/") || strings.HasPrefix(path, "refs/tags/"):
		name := plumbing.ReferenceName(path)
		if refs[name] == nil {
			return want{}, fmt.Errorf("no %s %q in the repository: %w", kindWord(name), name.Short(), ErrUnknownRef)
		}
		if name.IsBranch() {
			return want{kind: kindBranch, ref: name}, nil
		}
		return want{kind: kindTag, ref: name}, nil
	case strings.HasPrefix(path, "refs/"):
		return want{}, fmt.Errorf("git_path %q is neither a branch, a tag nor a commit: %w", path, ErrUnknownRef)
	}
	if b := plumbing.NewBranchReferenceName(path); refs[b] != nil {
		return want{kind: kindBranch, ref: b}, nil
	}
	if t := plumbing.NewTagReferenceName(path); refs[t] != nil {
		return want{kind: kindTag, ref: t}, nil
	}
	if abbrevSHARE().MatchString(path) {
		return want{}, fmt.Errorf("git_path %q is no branch or tag, and abbreviated commit SHAs are not supported: %w", path, ErrUnknownRef)
	}
	return want{}, fmt.Errorf("git_path %q is neither a branch, a tag nor a commit: %w", path, ErrUnknownRef)
}

func kindWord(n plumbing.ReferenceName) string {
	if n.IsBranch() {
		return "branch"
	}
	return "tag"
}

// localRef is where w lands in the checkout's repository.
func (w want) localRef() plumbing.ReferenceName {
	if w.kind == kindBranch {
		return plumbing.NewRemoteReferenceName("origin", w.ref.Short())
	}
	return w.ref
}

// openStorage opens (creating if needed) a repository's object store with
// descriptors kept open: go-git otherwise reopens the pack for every object.
func openStorage(gitDir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(gitDir), cache.NewObjectLRUDefault(),
		filesystem.Options{KeepDescriptors: true})
}

// initCheckoutRepo makes dir/.git, a non-bare repository with origin = url.
func initCheckoutRepo(dir, repoURL string) (*git.Repository, *filesystem.Storage, error) {
	st := openStorage(filepath.Join(dir, ".git"))
	repo, err := git.Init(st, nil)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("cannot create repository in %s: %w", dir, err)
	}
	cfg, err := repo.Config()
	if err == nil {
		cfg.Core.IsBare = false
		cfg.Remotes["origin"] = &config.RemoteConfig{
			Name:  "origin",
			URLs:  []string{repoURL},
			Fetch: []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
		}
		err = repo.SetConfig(cfg)
	}
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("cannot configure repository in %s: %w", dir, err)
	}
	return repo, st, nil
}

// fetch runs one go-git fetch with retries; "already up to date" is success.
func (r *run) fetch(ctx context.Context, repo *git.Repository, repoURL string, o git.FetchOptions) error {
	dial, err := r.endpoint(ctx, repoURL)
	if err != nil {
		return err
	}
	rem := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{dial}})
	o.ProxyOptions = r.proxy
	o.CABundle = r.opts.CABundle
	if o.Tags == git.InvalidTagMode {
		o.Tags = git.NoTags
	}
	err = r.retry(ctx, "Fetching "+redactURL(repoURL), func() error {
		err := rem.FetchContext(ctx, &o)
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		return r.tunnelError(repoURL, err)
	})
	if err != nil {
		return withKind(err)
	}
	return nil
}

var allRefSpecs = []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}

// fetchDirect fetches into the fresh repository in dir.
func (r *run) fetchDirect(ctx context.Context, repo *git.Repository, repoURL string, w want, shallow bool) error {
	if shallow {
		switch w.kind {
		case kindBranch, kindTag:
			spec := config.RefSpec("+" + w.ref.String() + ":" + w.localRef().String())
			r.logf("Fetching %s of %s (shallow)", w, redactURL(repoURL))
			return r.fetch(ctx, repo, repoURL, git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Depth: 1})
		case kindCommit:
			r.logf("Fetching %s of %s (shallow)", w, redactURL(repoURL))
			err := r.fetchSHA(ctx, repo, repoURL, w.hash, 1)
			if err == nil {
				return nil
			}
			if !errors.Is(err, git.ErrExactSHA1NotSupported) && !isNotOurRef(err) {
				return err
			}
			r.logf("The server does not allow fetching a commit by SHA; fetching everything")
		}
	} else {
		r.logf("Fetching %s of %s", w, redactURL(repoURL))
	}
	if err := r.fetch(ctx, repo, repoURL, git.FetchOptions{RefSpecs: allRefSpecs}); err != nil {
		return err
	}
	if w.kind == kindCommit {
		return r.ensureCommit(ctx, repo, repoURL, w.hash)
	}
	return nil
}

// ensureCommit fetches a commit by SHA if a full fetch did not bring it
// (not reachable from any branch or tag).
func (r *run) ensureCommit(ctx context.Context, repo *git.Repository, repoURL string, h plumbing.Hash) error {
	if _, err := repo.Storer.EncodedObject(plumbing.AnyObject, h); err == nil {
		return nil
	}
	err := r.fetchSHA(ctx, repo, repoURL, h, 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, git.ErrExactSHA1NotSupported) || isNotOurRef(err) {
		return fmt.Errorf("commit %s is not in %s: %w", h, redactURL(repoURL), ErrUnknownRef)
	}
	return err
}

// fetchRef is where a commit fetched by SHA is parked until checkout.
const fetchRef = "refs/buildd/fetched"

func (r *run) fetchSHA(ctx context.Context, repo *git.Repository, repoURL string, h plumbing.Hash, depth int) error {
	spec := config.RefSpec(h.String() + ":" + fetchRef)
	err := r.fetch(ctx, repo, repoURL, git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Depth: depth})
	_ = repo.Storer.RemoveReference(fetchRef)
	return err
}

// isNotOurRef recognises the server refusing a want it did not advertise.
func isNotOurRef(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "not our ref") || strings.Contains(msg, "upload-pack: not our ref") ||
		strings.Contains(msg, "want") && strings.Contains(msg, "not valid")
}

// commitFor finds the commit to check out once objects are fetched, from
// the refs as the fetch left them (so that the revision and the tree agree
// even if the server's refs moved meanwhile).
// detached says whether that commit is not the branch's tip.
func (r *run) commitFor(repo *git.Repository, w want, alsoCommit plumbing.Hash) (c *object.Commit, detached bool, err error) {
	var h plumbing.Hash
	if w.kind == kindCommit {
		h = w.hash
	} else {
		ref, err := repo.Storer.Reference(w.localRef())
		if err != nil {
			return nil, false, fmt.Errorf("%s vanished from the repository while fetching: %w", w, ErrUnknownRef)
		}
		h = ref.Hash()
	}
	tip, err := peel(repo, h)
	if err != nil {
		return nil, false, fmt.Errorf("cannot check out %s: %w", w, err)
	}
	if alsoCommit.IsZero() {
		return tip, w.kind != kindBranch, nil
	}
	c, err = peel(repo, alsoCommit)
	if err != nil {
		return nil, false, fmt.Errorf("commit %s is not on %s: %w", alsoCommit, w, ErrNotOnBranch)
	}
	if c.Hash == tip.Hash {
		return c, w.kind != kindBranch, nil
	}
	if ok, err := c.IsAncestor(tip); err != nil || !ok {
		return nil, false, fmt.Errorf("commit %s is not on %s: %w", alsoCommit, w, ErrNotOnBranch)
	}
	return c, true, nil
}

// peel follows annotated tags to the commit.
func peel(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 16 {
		o, err := repo.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, fmt.Errorf("object %s is missing: %w", h, ErrUnknownRef)
		}
		switch o.Type() {
		case plumbing.CommitObject:
			return object.DecodeCommit(repo.Storer, o)
		case plumbing.TagObject:
			t, err := object.DecodeTag(repo.Storer, o)
			if err != nil {
				return nil, err
			}
			h = t.Target
		default:
			return nil, fmt.Errorf("%s is a %s: %w", h, o.Type(), ErrNotCommit)
		}
	}
	return nil, fmt.Errorf("tag chain at %s is too long: %w", h, ErrNotCommit)
}

// setHEAD points HEAD like git clone + git checkout would: a local branch
// tracking origin for a branch, detached otherwise.
func setHEAD(repo *git.Repository, w want, c *object.Commit, detached bool) error {
	if detached {
		return repo.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, c.Hash))
	}
	if err := repo.Storer.SetReference(plumbing.NewHashReference(w.ref, c.Hash)); err != nil {
		return err
	}
	cfg, err := repo.Config()
	if err != nil {
		return err
	}
	cfg.Branches[w.ref.Short()] = &config.Branch{Name: w.ref.Short(), Remote: "origin", Merge: w.ref}
	if err := repo.SetConfig(cfg); err != nil {
		return err
	}
	return repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, w.ref))
}

// checkout does one repository (the superproject or a submodule).
func (r *run) checkout(ctx context.Context, src Source, dir string, depth int) (string, error) {
	if err := checkURL(src.Repository); err != nil {
		return "", err
	}
	if err := prepareDir(dir); err != nil {
		return "", err
	}
	var also plumbing.Hash
	if src.Commit != "" {
		if !fullSHARE().MatchString(src.Commit) {
			return "", fmt.Errorf("commit %q is not a full SHA: %w", src.Commit, ErrUnknownRef)
		}
		also = plumbing.NewHash(strings.ToLower(src.Commit))
	}
	refs, err := r.listRefs(ctx, src.Repository)
	if err != nil {
		return "", err
	}
	w, err := resolve(src.Path, refs)
	if err != nil {
		return "", err
	}

	var repo *git.Repository
	var closeRepo func()
	if r.opts.MirrorDir != "" {
		repo, closeRepo, err = r.fromMirror(ctx, src.Repository, w, also, dir)
		if err != nil {
			return "", err
		}
	} else {
		var st *filesystem.Storage
		repo, st, err = initCheckoutRepo(dir, src.Repository)
		if err != nil {
			return "", err
		}
		closeRepo = func() { st.Close() }
		// Checking that Commit is on the branch needs history: no shallow fetch then.
		shallow := r.opts.Shallow && also.IsZero()
		if err := r.fetchDirect(ctx, repo, src.Repository, w, shallow); err != nil {
			closeRepo()
			return "", fmt.Errorf("cannot fetch %s from %s: %w", w, redactURL(src.Repository), err)
		}
	}
	defer closeRepo()

	c, detached, err := r.commitFor(repo, w, also)
	if err != nil {
		return "", err
	}
	if err := setHEAD(repo, w, c, detached); err != nil {
		return "", fmt.Errorf("cannot set HEAD: %w", err)
	}
	start := time.Now()
	n, err := materialise(ctx, repo, c, dir)
	if err != nil {
		return "", fmt.Errorf("cannot check out %s: %w", w, err)
	}
	if w.kind == kindCommit && c.Hash == w.hash {
		r.logf("Checked out commit %s (%d files in %.2fs)", c.Hash, n, time.Since(start).Seconds())
	} else {
		r.logf("Checked out %s at %s (%d files in %.2fs)", w, c.Hash, n, time.Since(start).Seconds())
	}
	if depth < maxSubmoduleDepth {
		r.submodules(ctx, repo, c, src.Repository, dir, depth)
	}
	return c.Hash.String(), nil
}

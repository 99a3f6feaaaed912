// Package gitserver runs a real git server on loopback for tests: `git
// daemon` (in inetd mode, one process per connection, behind a Go listener on
// 127.0.0.1:0 so there is no port race) for git://, and `git http-backend`
// behind net/http/cgi for smart HTTP. Both serve the same temporary base
// directory of bare repositories, which tests fill with the git CLI through
// Repo: commits, branches, lightweight and annotated tags, submodules with
// relative URLs, and hand-made trees (for path-traversal attempts) or
// fast-import streams (for big repositories).
//
//	srv := gitserver.Start(t)
//	r := srv.NewRepo(t, "app")
//	r.WriteFile(t, "snapcraft.yaml", "name: app\n")
//	sha := r.Commit(t, "first")
//	r.Tag(t, "1.0")
//	url := srv.HTTPURL("app") // or srv.GitURL("app")
package gitserver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// Server is a running git server. Its fields are read-only.
type Server struct {
	// Base is the directory holding the bare repositories (<name>.git).
	Base string
	// GitBase is "git://127.0.0.1:<port>" and HTTPBase "http://127.0.0.1:<port>";
	// a repository's URL is <base>/<name>.git.
	GitBase, HTTPBase string

	gitLn  net.Listener
	httpLn net.Listener
	httpS  *http.Server
	wg     sync.WaitGroup

	mu          sync.Mutex
	user, pass  string
	interceptor func(http.ResponseWriter, *http.Request) bool
	httpReqs    atomic.Int64
	gitConns    atomic.Int64
}

// Start starts both servers on loopback; they stop when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	git := testenv.RequireCommand(t, "git")
	execPath, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatalf("cannot find git's exec path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		testenv.Unavailable(t, "needs git-http-backend: %v", err)
	}
	s := &Server{Base: t.TempDir()}

	s.gitLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen for git://: %v", err)
	}
	s.GitBase = "git://" + s.gitLn.Addr().String()
	s.wg.Add(1)
	go s.serveGit(git)

	s.httpLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen for http://: %v", err)
	}
	s.HTTPBase = "http://" + s.httpLn.Addr().String()
	cgiHandler := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env: append(isolatedEnv(),
			"GIT_PROJECT_ROOT="+s.Base,
			"GIT_HTTP_EXPORT_ALL=1",
		),
		// "Not a git repository" for a 404 test is expected, not news.
		Stderr: io.Discard,
	}
	s.httpS = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.httpReqs.Add(1)
		s.mu.Lock()
		user, pass, icpt := s.user, s.pass, s.interceptor
		s.mu.Unlock()
		if icpt != nil && icpt(w, r) {
			return
		}
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		cgiHandler.ServeHTTP(w, r)
	})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.httpS.Serve(s.httpLn)
	}()
	t.Cleanup(s.close)
	return s
}

func (s *Server) close() {
	s.gitLn.Close()
	s.httpS.Close()
	s.wg.Wait()
}

// serveGit hands each connection to `git daemon --inetd`: the socket itself
// becomes the daemon's stdin/stdout.
func (s *Server) serveGit(git string) {
	defer s.wg.Done()
	for {
		c, err := s.gitLn.Accept()
		if err != nil {
			return
		}
		s.gitConns.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			f, err := c.(*net.TCPConn).File()
			if err != nil {
				return
			}
			defer f.Close()
			cmd := exec.Command(git, "daemon", "--inetd", "--export-all",
				"--base-path="+s.Base, "--enable=upload-pack", "--informative-errors")
			cmd.Env = isolatedEnv()
			cmd.Stdin, cmd.Stdout = f, f
			_ = cmd.Run()
		}()
	}
}

// GitURL is the git:// URL of repository name.
func (s *Server) GitURL(name string) string { return s.GitBase + "/" + name + ".git" }

// HTTPURL is the smart-HTTP URL of repository name.
func (s *Server) HTTPURL(name string) string { return s.HTTPBase + "/" + name + ".git" }

// HTTPURLWithAuth is the smart-HTTP URL with user:password in it.
func (s *Server) HTTPURLWithAuth(name, user, pass string) string {
	return "http://" + user + ":" + pass + "@" + strings.TrimPrefix(s.HTTPBase, "http://") + "/" + name + ".git"
}

// RequireAuth makes the HTTP server demand basic auth with these
// credentials ("" user turns it off).
func (s *Server) RequireAuth(user, pass string) {
	s.mu.Lock()
	s.user, s.pass = user, pass
	s.mu.Unlock()
}

// SetInterceptor installs f in front of the HTTP backend: when f returns true
// it has answered the request itself (to inject errors, stalls, ...). nil
// removes it.
func (s *Server) SetInterceptor(f func(http.ResponseWriter, *http.Request) bool) {
	s.mu.Lock()
	s.interceptor = f
	s.mu.Unlock()
}

// FailHTTP makes the next n HTTP requests fail with status code.
func (s *Server) FailHTTP(n int, code int) {
	var left atomic.Int64
	left.Store(int64(n))
	s.SetInterceptor(func(w http.ResponseWriter, r *http.Request) bool {
		if left.Add(-1) < 0 {
			return false
		}
		http.Error(w, "injected failure", code)
		return true
	})
}

// HTTPRequests counts HTTP requests received so far.
func (s *Server) HTTPRequests() int64 { return s.httpReqs.Load() }

// GitConnections counts git:// connections accepted so far.
func (s *Server) GitConnections() int64 { return s.gitConns.Load() }

// Repo is a bare repository on the server plus a working clone used to make
// commits; every mutating helper pushes to the server at once.
type Repo struct {
	Name string
	// Bare is the served bare repository; Work the working clone.
	Bare, Work string
	srv        *Server
}

// NewRepo creates an empty bare repository <name>.git (default branch
// main) and its working clone. name may contain slashes ("group/app").
func (s *Server) NewRepo(t testing.TB, name string) *Repo {
	t.Helper()
	r := &Repo{Name: name, Bare: filepath.Join(s.Base, name+".git"), Work: filepath.Join(t.TempDir(), "work"), srv: s}
	if err := os.MkdirAll(filepath.Dir(r.Bare), 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, "", "init", "-q", "--bare", "-b", "main", r.Bare)
	Git(t, "", "-c", "init.defaultBranch=main", "clone", "-q", r.Bare, r.Work)
	return r
}

// URL returns the repository's HTTP URL.
func (r *Repo) URL() string { return r.srv.HTTPURL(r.Name) }

// GitURL returns the repository's git:// URL.
func (r *Repo) GitURL() string { return r.srv.GitURL(r.Name) }

// Git runs git in the working clone and returns its trimmed stdout.
func (r *Repo) Git(t testing.TB, args ...string) string {
	t.Helper()
	return Git(t, r.Work, args...)
}

// BareGit runs git in the bare repository and returns its trimmed stdout.
func (r *Repo) BareGit(t testing.TB, args ...string) string {
	t.Helper()
	return Git(t, r.Bare, args...)
}

// SetConfig sets a config key in the served repository, e.g.
// uploadpack.allowReachableSHA1InWant=true.
func (r *Repo) SetConfig(t testing.TB, key, value string) {
	t.Helper()
	r.BareGit(t, "config", key, value)
}

// WriteFile writes content at path (slash-separated, parents created) in
// the working clone and stages it.
func (r *Repo) WriteFile(t testing.TB, path, content string) {
	t.Helper()
	r.WriteFileMode(t, path, content, 0o644)
}

// WriteFileMode is WriteFile with a mode (0755 for an executable).
func (r *Repo) WriteFileMode(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(r.Work, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(p)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	r.Git(t, "add", "--", path)
}

// Symlink creates a symlink path -> target in the working clone and stages it.
func (r *Repo) Symlink(t testing.TB, path, target string) {
	t.Helper()
	p := filepath.Join(r.Work, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	r.Git(t, "add", "--", path)
}

// Remove deletes path from the working clone and the index.
func (r *Repo) Remove(t testing.TB, path string) {
	t.Helper()
	r.Git(t, "rm", "-q", "-r", "--", path)
}

// Commit commits what is staged (allowing an empty commit) on the current
// branch, pushes it, and returns the commit's SHA.
func (r *Repo) Commit(t testing.TB, msg string) string {
	t.Helper()
	r.Git(t, "commit", "-q", "--allow-empty", "-m", msg)
	r.Git(t, "push", "-q", "--force", "origin", "HEAD")
	return r.Git(t, "rev-parse", "HEAD")
}

// Head returns the working clone's HEAD commit.
func (r *Repo) Head(t testing.TB) string {
	t.Helper()
	return r.Git(t, "rev-parse", "HEAD")
}

// Branch creates (or resets) branch name at HEAD, switches to it and pushes it.
func (r *Repo) Branch(t testing.TB, name string) {
	t.Helper()
	r.Git(t, "checkout", "-q", "-B", name)
	r.Git(t, "push", "-q", "--force", "origin", "refs/heads/"+name)
}

// Switch switches the working clone to an existing local branch.
func (r *Repo) Switch(t testing.TB, name string) {
	t.Helper()
	r.Git(t, "checkout", "-q", name)
}

// Tag creates or moves the lightweight tag name to HEAD and pushes it.
func (r *Repo) Tag(t testing.TB, name string) {
	t.Helper()
	r.Git(t, "tag", "-f", name)
	r.Git(t, "push", "-q", "--force", "origin", "refs/tags/"+name)
}

// AnnotatedTag creates or moves the annotated tag name to HEAD, pushes it
// and returns the tag object's SHA (not the commit's).
func (r *Repo) AnnotatedTag(t testing.TB, name, msg string) string {
	t.Helper()
	r.Git(t, "tag", "-f", "-a", "-m", msg, name)
	r.Git(t, "push", "-q", "--force", "origin", "refs/tags/"+name)
	return r.Git(t, "rev-parse", "refs/tags/"+name)
}

// DeleteRef deletes a ref (refs/heads/x, refs/tags/y) on the server.
func (r *Repo) DeleteRef(t testing.TB, ref string) {
	t.Helper()
	r.BareGit(t, "update-ref", "-d", ref)
}

// SetHEAD points the served repository's HEAD at a branch (its default branch).
func (r *Repo) SetHEAD(t testing.TB, branch string) {
	t.Helper()
	r.BareGit(t, "symbolic-ref", "HEAD", "refs/heads/"+branch)
}

// AddSubmodule adds a submodule at path with url as written in .gitmodules
// (a relative URL such as "../lib.git" is resolved by git against this
// repository's location on the server) and stages it; Commit afterwards.
func (r *Repo) AddSubmodule(t testing.TB, url, path string) {
	t.Helper()
	r.Git(t, "-c", "protocol.file.allow=always", "submodule", "add", "-q", url, path)
}

// AddSubmoduleAt records a submodule at path with url and commit sha
// without cloning it (the URL need not work: a broken submodule) and
// stages it; Commit afterwards.
func (r *Repo) AddSubmoduleAt(t testing.TB, url, path, sha string) {
	t.Helper()
	r.Git(t, "config", "-f", ".gitmodules", "submodule."+path+".path", path)
	r.Git(t, "config", "-f", ".gitmodules", "submodule."+path+".url", url)
	r.Git(t, "update-index", "--add", "--cacheinfo", "160000,"+sha+","+path)
	r.Git(t, "add", ".gitmodules")
}

// SetSubmoduleURL rewrites a submodule's URL in .gitmodules (to break it,
// say) and stages the change; Commit afterwards.
func (r *Repo) SetSubmoduleURL(t testing.TB, path, url string) {
	t.Helper()
	r.Git(t, "config", "-f", ".gitmodules", "submodule."+path+".url", url)
	r.Git(t, "add", ".gitmodules")
}

// Entry is one entry of a hand-made tree (CommitTree). Path is
// slash-separated and is written verbatim into tree objects, so it may
// contain things the git CLI refuses to stage ("..", a path below a
// symlink). Mode is 100644, 100755, 120000 (symlink; Content is the target)
// or 160000 (gitlink; Content is the commit SHA).
type Entry struct {
	Path    string
	Mode    string
	Content string
}

// CommitTree builds a commit from entries with plumbing (hash-object,
// mktree, commit-tree) on top of the current head of branch (a root commit
// if the branch does not exist yet), points refs/heads/<branch> at it on
// the server and returns its SHA. Entries that share a path are all
// written, which git itself never does (duplicate names are an attack too).
// The working clone's index and worktree are not touched.
func (r *Repo) CommitTree(t testing.TB, branch, msg string, entries []Entry) string {
	t.Helper()
	type node struct {
		blobs    []string // mktree lines for non-tree entries
		children map[string]*node
		order    []string
	}
	root := &node{children: map[string]*node{}}
	for _, e := range entries {
		parts := strings.Split(e.Path, "/")
		n := root
		for _, p := range parts[:len(parts)-1] {
			c, ok := n.children[p]
			if !ok {
				c = &node{children: map[string]*node{}}
				n.children[p] = c
				n.order = append(n.order, p)
			}
			n = c
		}
		name := parts[len(parts)-1]
		var sha, typ string
		switch e.Mode {
		case "160000":
			sha, typ = e.Content, "commit"
		default:
			sha, typ = gitStdin(t, r.Bare, e.Content, "hash-object", "-w", "--stdin"), "blob"
		}
		n.blobs = append(n.blobs, fmt.Sprintf("%s %s %s\t%s", e.Mode, typ, sha, name))
	}
	var write func(n *node) string
	write = func(n *node) string {
		lines := append([]string(nil), n.blobs...)
		for _, name := range n.order {
			lines = append(lines, fmt.Sprintf("040000 tree %s\t%s", write(n.children[name]), name))
		}
		sort.Strings(lines)
		// --missing lets gitlinks point at commits that are not here.
		return gitStdin(t, r.Bare, strings.Join(lines, "\n")+"\n", "mktree", "--missing")
	}
	tree := write(root)
	args := []string{"commit-tree", tree, "-m", msg}
	if parent, err := gitOut(r.Bare, nil, "rev-parse", "--verify", "-q", "refs/heads/"+branch); err == nil {
		args = append(args, "-p", parent)
	}
	sha := gitStdin(t, r.Bare, "", args...)
	r.BareGit(t, "update-ref", "refs/heads/"+branch, sha)
	return sha
}

// FastImport feeds a `git fast-import` stream to the served repository
// (to make thousands of commits and files in seconds).
func (r *Repo) FastImport(t testing.TB, stream io.Reader) {
	t.Helper()
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.Bare
	cmd.Env = isolatedEnv()
	cmd.Stdin = stream
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import in %s: %v: %s", r.Bare, err, out)
	}
}

// Pull brings the working clone up to date with the server's branch
// (after CommitTree or FastImport on it).
func (r *Repo) Pull(t testing.TB, branch string) {
	t.Helper()
	r.Git(t, "fetch", "-q", "origin")
	r.Git(t, "checkout", "-q", "-B", branch, "origin/"+branch)
}

// Git runs git in dir ("" = the current directory) with an isolated
// configuration and fixed identity, fails t on error and returns trimmed
// stdout.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitOut(dir, nil, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// GitOutput is Git without a test: it returns the error instead.
func GitOutput(dir string, args ...string) (string, error) {
	return gitOut(dir, nil, args...)
}

func gitStdin(t testing.TB, dir, stdin string, args ...string) string {
	t.Helper()
	out, err := gitOut(dir, strings.NewReader(stdin), args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

func gitOut(dir string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = isolatedEnv()
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s (in %s): %v: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// IsolatedEnv is the environment the helpers run git with: no user or
// system configuration, a fixed identity, no prompts.
func IsolatedEnv() []string { return isolatedEnv() }

func isolatedEnv() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=/nonexistent",
		"LANG=C.UTF-8",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Test Author",
		"GIT_AUTHOR_EMAIL=author@example.com",
		"GIT_COMMITTER_NAME=Test Committer",
		"GIT_COMMITTER_EMAIL=committer@example.com",
	}
	return env
}

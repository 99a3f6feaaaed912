package main

// Local git repositories for `buildd-agent build <manager>`: the farm
// accepts only http(s) and git:// repository URLs (a path would read the
// builder's disk), so a local build given a path serves that repository
// read-only on loopback with `git http-backend` for the length of the
// build and hands the manager its http://127.0.0.1 URL. The manager then
// checks it out exactly as it checks out a farm build's repository.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// isLocalRepository reports whether a --git-repository value is a path
// (or a file:// URL) rather than a URL the farm would fetch.
func isLocalRepository(v string) bool {
	return v != "" && (strings.HasPrefix(v, "file://") || !strings.Contains(v, "://"))
}

// absLocalRepository is `build`'s PersistentPreRunE: a --git-repository
// that is a path becomes an absolute path to an existing directory, so
// that names derived from it (the snap's name) are the directory's.
func absLocalRepository(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags().Lookup("git-repository")
	if fl == nil || !isLocalRepository(fl.Value.String()) {
		return nil
	}
	abs, err := filepath.Abs(strings.TrimPrefix(fl.Value.String(), "file://"))
	if err != nil {
		return err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return fmt.Errorf("--git-repository %s: not a URL (http, https, git) and not a directory", fl.Value.String())
	}
	return cmd.Flags().Set("git-repository", abs)
}

// gitSafeEnv lets git read a repository owned by another user (a local
// build runs as root on the user's checkout).
var gitSafeEnv = []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*"}

// serveLocalRepository replaces args["git_repository"], when it is an
// absolute path, by the URL of that repository served on loopback, and
// returns what stops the server.
func serveLocalRepository(args map[string]any, stderr io.Writer) (func(), error) {
	repo, _ := args["git_repository"].(string)
	if repo == "" || !filepath.IsAbs(repo) {
		return func() {}, nil
	}
	if p, _ := args["proxy_url"].(string); p != "" {
		return nil, errors.New("a local --git-repository is served on loopback and cannot be fetched through --proxy-url; push it somewhere the proxy reaches, or drop --proxy-url")
	}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return nil, errors.New("a local --git-repository needs git (apt-get install git)")
	}
	cmd := exec.Command(gitBin, "-C", repo, "rev-parse", "--absolute-git-dir")
	cmd.Env = append(os.Environ(), gitSafeEnv...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("--git-repository %s is not a git repository: %s", repo, strings.TrimSpace(errOut.String()))
	}
	gitDir := strings.TrimSpace(string(out))
	status := exec.Command(gitBin, "-C", repo, "status", "--porcelain", "--untracked-files=no")
	status.Env = cmd.Env
	if dirty, err := status.Output(); err == nil && len(bytes.TrimSpace(dirty)) > 0 {
		fmt.Fprintf(stderr, "note: %s has uncommitted changes; the build checks out commits only\n", repo)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot serve the local repository: %w", err)
	}
	h := &cgi.Handler{
		Path:   gitBin,
		Args:   []string{"http-backend"},
		Env:    append([]string{"GIT_PROJECT_ROOT=" + filepath.Dir(gitDir), "GIT_HTTP_EXPORT_ALL=1"}, gitSafeEnv...),
		Stderr: stderr,
	}
	// Read-only: the build fetches; nothing may push.
	srv := &http.Server{ReadHeaderTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			http.Error(w, "read-only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	url := fmt.Sprintf("http://%s/%s", ln.Addr(), filepath.Base(gitDir))
	args["git_repository"] = url
	fmt.Fprintf(stderr, "serving %s for the build at %s\n", repo, url)
	return func() { srv.Close() }, nil
}

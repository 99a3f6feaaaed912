// Package bzrserver serves real Bazaar branches, made with Breezy (brz),
// over plain HTTP on loopback for tests: Breezy reads a branch from any
// HTTP file server, which is how Launchpad's public branch URLs
// (branch_url) are read too. Every request is counted.
package bzrserver

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// Server is an HTTP file server over a directory of branches.
type Server struct {
	Dir  string
	Base string // http://127.0.0.1:<port>
	reqs atomic.Int64
}

// Start serves a fresh directory until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	testenv.RequireCommand(t, "brz")
	s := &Server{Dir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen for the bzr server: %v", err)
	}
	files := http.FileServer(http.Dir(s.Dir))
	srv := &http.Server{ReadHeaderTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		files.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.Base = "http://" + ln.Addr().String()
	return s
}

// Requests is how many HTTP requests were served.
func (s *Server) Requests() int64 { return s.reqs.Load() }

// Branch is a standalone Bazaar branch with a working tree, served at URL.
type Branch struct {
	Dir string
	URL string
}

// NewBranch makes an empty branch called name.
func (s *Server) NewBranch(t testing.TB, name string) *Branch {
	t.Helper()
	b := &Branch{Dir: filepath.Join(s.Dir, name), URL: s.Base + "/" + name}
	Brz(t, s.Dir, "init", "-q", name)
	return b
}

// WriteFile writes content at path (slash-separated) and adds it.
func (b *Branch) WriteFile(t testing.TB, path, content string) {
	t.Helper()
	p := filepath.Join(b.Dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	Brz(t, b.Dir, "add", "-q", path)
}

// Commit commits everything and returns the new revno.
func (b *Branch) Commit(t testing.TB, msg string) string {
	t.Helper()
	Brz(t, b.Dir, "commit", "-q", "--unchanged", "-m", msg)
	return Brz(t, b.Dir, "revno")
}

// Brz runs brz in dir with an isolated home and identity and returns its
// trimmed output.
func Brz(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("brz", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8",
		"BRZ_EMAIL=Test Author <author@example.com>", "BRZ_LOG=/dev/null"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("brz %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Package squidtest runs a real squid, an authenticated upstream HTTP proxy,
// for tests: the builder proxy (package proxy), snap and VCS tests fetch
// through it exactly as a build fetches through Launchpad's builder proxy.
//
// API:
//
//	addr := squidtest.StartSquid(t, map[string]string{"user": "secret"})
//	// addr is "127.0.0.1:<port>"; the upstream proxy URL is
//	// "http://user:secret@" + addr. squid is stopped in t.Cleanup.
//
//	s := squidtest.Start(t, squidtest.Options{Users: users})
//	s.Addr        // "127.0.0.1:<port>"
//	s.URL("user") // "http://user:<percent-encoded password>@127.0.0.1:<port>"
//	s.AccessLog() // squid's access.log so far (one line per request)
//	s.Stop()      // stop it early (e.g. to test an upstream that went away)
//
//	// Names squid resolves to loopback (for clients in containers, whose
//	// no_proxy covers 127.0.0.1; "example.com" matches httptest's TLS cert):
//	s := squidtest.Start(t, squidtest.Options{Users: users,
//		Hosts: map[string]string{"example.com": "127.0.0.1"}})
//
// The squid listens on 127.0.0.1 only, requires Basic authentication checked
// by /usr/lib/squid/basic_ncsa_auth against an htpasswd file written with
// `htpasswd -b` (apache2-utils), caches nothing, may reach origins on
// 127.0.0.1 (Debian's default config forbids that), allows CONNECT to any
// port and WebSocket upgrades. Each instance has its own directory (config,
// htpasswd, pid file, cache.log, access.log), its own service name (-n, so
// concurrent instances do not share shared-memory segments) and runs in the
// foreground (-N); when the test runs as root squid drops to the "proxy"
// user. A test needing it calls testenv.RequireCommand implicitly: without
// squid or htpasswd it skips (or fails under BUILDD_AGENT_REQUIRE_ROOT=1).
package squidtest

import (
	"bytes"
	_ "embed"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

//go:embed squid.conf.tmpl
var confTemplate string

// Options configure one squid.
type Options struct {
	// Users maps user names to passwords allowed through. Empty means no
	// authentication at all (any loopback client is allowed): a floor for
	// benchmarks.
	Users map[string]string
	// Hosts maps host names to loopback addresses that squid resolves
	// them to (its own hosts_file, /etc/hosts untouched). Containers use
	// such names because no_proxy covers 127.0.0.1 and localhost, and a
	// name like "example.com" matches the certificate of httptest's TLS
	// servers. Names not listed resolve through /etc/hosts and DNS.
	Hosts map[string]string
}

// Server is one running squid.
type Server struct {
	// Addr is host:port of the proxy, always on 127.0.0.1.
	Addr string
	// Dir holds squid.conf, htpasswd, squid.pid, cache.log and access.log.
	Dir string

	users map[string]string
	cmd   *exec.Cmd
	done  chan struct{}
	once  sync.Once
}

// StartSquid starts an authenticated squid for the test and returns its
// address ("127.0.0.1:port"). users maps user names to passwords.
func StartSquid(t testing.TB, users map[string]string) string {
	t.Helper()
	return Start(t, Options{Users: users}).Addr
}

// Start starts a squid for the test; it is stopped in t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	squid := testenv.RequireCommand(t, "squid")
	if len(opts.Users) > 0 {
		testenv.RequireCommand(t, "htpasswd")
	}
	if _, err := os.Stat("/usr/lib/squid/basic_ncsa_auth"); err != nil && len(opts.Users) > 0 {
		testenv.Unavailable(t, "needs /usr/lib/squid/basic_ncsa_auth (squid package)")
	}
	var lastErr error
	// The port is chosen by binding :0 and releasing it, so another process
	// may take it before squid binds; retry a few times.
	for attempt := 0; attempt < 5; attempt++ {
		s, err := start(squid, opts)
		if err == nil {
			t.Cleanup(func() {
				s.Stop()
				os.RemoveAll(s.Dir)
			})
			return s
		}
		lastErr = err
	}
	t.Fatalf("cannot start squid: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(squid string, opts Options) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "squidtest-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// squid drops privileges after start: its user must reach the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	runAs := ""
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("proxy")
		if err != nil {
			return nil, fmt.Errorf("cannot find squid's user %q: %w", "proxy", err)
		}
		runAs = "proxy"
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if len(opts.Users) > 0 {
		pw := filepath.Join(dir, "htpasswd")
		flags := "-bc"
		for name, pass := range opts.Users {
			out, err := exec.Command("htpasswd", flags, pw, name, pass).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("cannot run htpasswd for %q: %v: %s", name, err, out)
			}
			flags = "-b"
		}
		if err := os.Chmod(pw, 0o644); err != nil {
			return nil, err
		}
	}
	hostsFile := "/etc/hosts"
	if len(opts.Hosts) > 0 {
		var hosts bytes.Buffer
		hosts.WriteString("127.0.0.1 localhost\n::1 localhost\n")
		for name, ip := range opts.Hosts {
			fmt.Fprintf(&hosts, "%s %s\n", ip, name)
		}
		hostsFile = filepath.Join(dir, "hosts")
		if err := os.WriteFile(hostsFile, hosts.Bytes(), 0o644); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var conf bytes.Buffer
	err = template.Must(template.New("squid.conf").Parse(confTemplate)).Execute(&conf, map[string]any{
		"Listen": addr, "Dir": dir, "Hosts": hostsFile, "User": runAs, "Auth": len(opts.Users) > 0,
	})
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if uid >= 0 {
		for _, f := range []string{"cache.log", "access.log"} {
			p := filepath.Join(dir, f)
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return nil, err
			}
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	// A unique service name keeps concurrent squids from sharing IPC names.
	service := "squidtest" + strconv.Itoa(port)
	cmd := exec.Command(squid, "-N", "-n", service, "-f", confPath)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot run squid: %w", err)
	}
	s := &Server{Addr: addr, Dir: dir, users: opts.Users, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			return nil, fmt.Errorf("squid exited at start: %s\n%s", strings.TrimSpace(stderr.String()), tail(log))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("squid did not listen on %s within 30s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// URL is the upstream proxy URL with the user's credentials, userinfo
// percent-encoded as a build master would send it.
func (s *Server) URL(user string) string {
	u := url.URL{Scheme: "http", Host: s.Addr}
	if pass, ok := s.users[user]; ok {
		u.User = url.UserPassword(user, pass)
	} else if user != "" {
		u.User = url.User(user)
	}
	return u.String()
}

// AccessLog returns squid's access log so far.
func (s *Server) AccessLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "access.log"))
	return string(b)
}

// CacheLog returns squid's cache.log (its diagnostics) so far.
func (s *Server) CacheLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "cache.log"))
	return string(b)
}

// Stop kills squid and waits for it to exit; it is safe to call twice.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			s.cmd.Process.Kill()
		}
		<-s.done
	})
}

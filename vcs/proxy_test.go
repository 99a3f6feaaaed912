package vcs

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/squidtest"
)

// Through a real squid with basic auth, as a build fetches through the
// job's upstream proxy.
func TestCheckoutThroughAuthenticatedSquid(t *testing.T) {
	f := newFixture(t)
	lib := f.srv.NewRepo(t, "lib")
	lib.WriteFile(t, "lib.txt", "lib\n")
	lib.Commit(t, "lib")
	f.repo.AddSubmodule(t, "../lib.git", "lib")
	tip := f.repo.Commit(t, "with lib")

	const proxyPass = "pr0xy-s3cret"
	sq := squidtest.Start(t, squidtest.Options{Users: map[string]string{"builder": proxyPass}})
	proxyURL := sq.URL("builder")

	for _, opts := range []Options{{Shallow: true}, {}, {MirrorDir: filepath.Join(t.TempDir(), "m")}} {
		var log bytes.Buffer
		opts.ProxyURL, opts.Log = proxyURL, &log
		dir := filepath.Join(t.TempDir(), "src")
		rev, err := Checkout(context.Background(), Source{Repository: f.repo.URL()}, dir, opts)
		if err != nil || rev != tip {
			t.Fatalf("through squid: %s %v\n%s", rev, err, log.String())
		}
		if got := readFile(t, filepath.Join(dir, "lib/lib.txt")); got != "lib\n" {
			t.Errorf("submodule through squid: %q", got)
		}
		if strings.Contains(log.String(), proxyPass) {
			t.Errorf("proxy password in the log:\n%s", log.String())
		}
	}
	access := sq.AccessLog()
	for _, want := range []string{"/app.git/info/refs", "/app.git/git-upload-pack", "/lib.git/git-upload-pack"} {
		if !strings.Contains(access, want) {
			t.Errorf("squid did not see %s:\n%s", want, access)
		}
	}
	if !strings.Contains(access, "builder") {
		t.Errorf("squid did not authenticate the requests:\n%s", access)
	}

	// Wrong proxy password: a clear error without the password.
	bad := strings.Replace(proxyURL, proxyPass, "wrong-pr0xy-pass", 1)
	_, err := Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{ProxyURL: bad})
	if !errors.Is(err, ErrAuthentication) || strings.Contains(err.Error(), "wrong-pr0xy-pass") || strings.Contains(err.Error(), proxyPass) {
		t.Errorf("bad proxy credentials: %v", err)
	}
	t.Logf("bad proxy credentials: %v", err)

	// git:// goes through the proxy too, tunnelled with CONNECT (with
	// its submodules, whose relative URLs are git:// as well).
	var log bytes.Buffer
	dir := filepath.Join(t.TempDir(), "src")
	rev, err := Checkout(context.Background(), Source{Repository: f.repo.GitURL()}, dir, Options{ProxyURL: proxyURL, Log: &log, Shallow: true})
	if err != nil || rev != tip {
		t.Fatalf("git:// through squid: %s %v\n%s", rev, err, log.String())
	}
	if got := readFile(t, filepath.Join(dir, "lib/lib.txt")); got != "lib\n" {
		t.Errorf("git:// submodule through squid: %q", got)
	}
	gitHost := strings.TrimPrefix(f.srv.GitBase, "git://")
	if access := sq.AccessLog(); !strings.Contains(access, "CONNECT "+gitHost) && !strings.Contains(access, gitHost) {
		t.Errorf("squid did not tunnel git:// to %s:\n%s", gitHost, access)
	}
	if got := gitIn(t, dir, "remote", "get-url", "origin"); got != f.repo.GitURL() {
		t.Errorf("origin = %q, want the real URL", got)
	}
	_, err = Checkout(context.Background(), Source{Repository: f.repo.GitURL()}, filepath.Join(t.TempDir(), "src"), Options{ProxyURL: bad})
	if !errors.Is(err, ErrAuthentication) || strings.Contains(err.Error(), proxyPass) {
		t.Errorf("git:// with bad proxy credentials: %v", err)
	}
	// A broken proxy URL.
	_, err = Checkout(context.Background(), Source{Repository: f.repo.URL()}, filepath.Join(t.TempDir(), "src"), Options{ProxyURL: "socks5://u:" + proxyPass + "@127.0.0.1:1"})
	if !errors.Is(err, ErrUnsupportedURL) || strings.Contains(err.Error(), proxyPass) {
		t.Errorf("socks proxy: %v", err)
	}
}

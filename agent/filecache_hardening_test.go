package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func cacheTempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestEnsurePresentDownloadLimit: a download over [limits] download_bytes
// stores nothing and says why, whether the server announces the length
// or streams it chunked; a file of exactly the limit is fine.
func TestEnsurePresentDownloadLimit(t *testing.T) {
	const limit = 1000
	body := func(n int) string { return strings.Repeat("z", n) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		switch r.URL.Path {
		case "/announced", "/chunked":
			n = limit + 1
		case "/exact":
			n = limit
		}
		if r.URL.Path == "/chunked" {
			w.Write([]byte(body(n)[:10]))
			w.(http.Flusher).Flush() // no Content-Length from here on
			w.Write([]byte(body(n)[10:]))
			return
		}
		w.Write([]byte(body(n)))
	}))
	defer srv.Close()
	dir := t.TempDir()
	c, err := OpenFileCache(dir, WithDownloadLimit(limit))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		path    string
		present bool
		info    string
	}{
		{"/announced", false, "Error accessing Librarian: the file is larger than this builder's limit of 1000 bytes ([limits] download_bytes); nothing was stored"},
		{"/chunked", false, "Error accessing Librarian: the file is larger than this builder's limit of 1000 bytes ([limits] download_bytes); nothing was stored"},
		{"/exact", true, InfoDownload},
	} {
		n := limit + 1
		if tc.path == "/exact" {
			n = limit
		}
		sum := sumOf([]byte(body(n)))
		present, info := c.EnsurePresent(context.Background(), sum, srv.URL+tc.path, "", "")
		if present != tc.present || info != tc.info {
			t.Errorf("%s: (%v, %q), want (%v, %q)", tc.path, present, info, tc.present, tc.info)
		}
		if got := c.Has(sum); got != tc.present {
			t.Errorf("%s: cached = %v", tc.path, got)
		}
	}
	if files := cacheTempFiles(t, dir); len(files) != 1 {
		t.Errorf("cache holds %v, want the one file of exactly the limit", files)
	}
}

// TestEnsurePresentRedirectAuth: Basic credentials follow a redirect within
// the origin (scheme, host, port) and never to another port of the same
// host, which Go's own policy (host names only) would allow.
func TestEnsurePresentRedirectAuth(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // server → Authorization it received
	record := func(name string, r *http.Request) {
		mu.Lock()
		seen[name] = r.Header.Get("Authorization")
		mu.Unlock()
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("other port", r)
		w.Write([]byte("payload"))
	}))
	defer other.Close()
	librarian := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("librarian "+r.URL.Path, r)
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/file", http.StatusFound)
		case "/within":
			http.Redirect(w, r, "/file", http.StatusFound)
		default:
			w.Write([]byte("payload"))
		}
	}))
	defer librarian.Close()
	if !strings.HasPrefix(other.URL, "http://127.0.0.1:") || !strings.HasPrefix(librarian.URL, "http://127.0.0.1:") {
		t.Fatalf("servers are not both on 127.0.0.1: %s %s", other.URL, librarian.URL)
	}
	sum := sumOf([]byte("payload"))
	for _, path := range []string{"/away", "/within"} {
		c, err := OpenFileCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if ok, info := c.EnsurePresent(context.Background(), sum, librarian.URL+path, "user", "s3cret"); !ok {
			t.Fatalf("%s: %s", path, info)
		}
		c.Close()
	}
	auth := "Basic dXNlcjpzM2NyZXQ=" // user:s3cret
	want := map[string]string{
		"librarian /away": auth, "other port": "",
		"librarian /within": auth, "librarian /file": auth,
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("Authorization received (-want +got):\n%s", diff)
	}
}

// TestFileCacheSymlinkAndFIFONotServed: a symlink planted in the cache
// directory under a SHA-1 name is neither served nor a cached input; a
// FIFO is not served and does not hold the handler.
func TestFileCacheSymlinkAndFIFONotServed(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenFileCache(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("another job's secret"), 0o600)
	link := sumOf([]byte("another job's secret"))
	if err := os.Symlink(secret, filepath.Join(c.Dir(), link)); err != nil {
		t.Fatal(err)
	}
	fifo := sumOf([]byte("fifo"))
	if err := syscall.Mkfifo(filepath.Join(c.Dir(), fifo), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	for _, sum := range []string{link, fifo} {
		resp, err := http.Get(srv.URL + "/filecache/" + sum)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: HTTP %d, want 404", sum, resp.StatusCode)
		}
		if c.Has(sum) {
			t.Errorf("%s: Has = true", sum)
		}
		if ok, _ := c.EnsurePresent(context.Background(), sum, "", "", ""); ok {
			t.Errorf("%s: ensurepresent says present", sum)
		}
	}
}

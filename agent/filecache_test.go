package agent

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func sha1Hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

func newTestCache(t *testing.T, opts ...FileCacheOption) *FileCache {
	t.Helper()
	c, err := OpenFileCache(filepath.Join(t.TempDir(), "filecache"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cacheNames lists the directory, temporary files included.
func cacheNames(t *testing.T, c *FileCache) []string {
	t.Helper()
	entries, err := os.ReadDir(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// librarian is a fake librarian: it serves files by path and, like the real
// one for private files, answers 404 to requests without the right
// credentials (so only pre-emptive authentication works).
type librarian struct {
	files    map[string][]byte
	user     string
	password string
	auth     bool
	requests atomic.Int32
	authSeen atomic.Value // string: the last Authorization header
	release  chan struct{}
}

func (l *librarian) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.requests.Add(1)
	l.authSeen.Store(r.Header.Get("Authorization"))
	if l.release != nil {
		<-l.release
	}
	if l.auth {
		u, p, ok := r.BasicAuth()
		if !ok || u != l.user || p != l.password {
			http.NotFound(w, r)
			return
		}
	}
	b, ok := l.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

func startLibrarian(t *testing.T, l *librarian) string {
	t.Helper()
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestEnsurePresent(t *testing.T) {
	content := []byte("a chroot tarball, really\n")
	sum := sha1Hex(content)
	other := sha1Hex([]byte("something else"))
	tests := []struct {
		name        string
		lib         *librarian
		sha1, path  string
		user, pass  string
		wantPresent bool
		wantInfo    string
		wantAuth    string
	}{
		{name: "download", lib: &librarian{}, sha1: sum, path: "/f", wantPresent: true, wantInfo: "Download"},
		{name: "pre-emptive basic auth", lib: &librarian{auth: true, user: "buildd", password: "s3cret"},
			sha1: sum, path: "/f", user: "buildd", pass: "s3cret", wantPresent: true, wantInfo: "Download",
			wantAuth: "Basic YnVpbGRkOnMzY3JldA=="},
		{name: "empty user is valid (macaroon)", lib: &librarian{auth: true, user: "", password: "macaroon"},
			sha1: sum, path: "/f", pass: "macaroon", wantPresent: true, wantInfo: "Download",
			wantAuth: "Basic Om1hY2Fyb29u"},
		{name: "no credentials, no header", lib: &librarian{}, sha1: sum, path: "/f", wantPresent: true, wantInfo: "Download"},
		{name: "wrong credentials", lib: &librarian{auth: true, user: "buildd", password: "right"},
			sha1: sum, path: "/f", user: "buildd", pass: "wrong", wantInfo: "Error accessing Librarian: HTTP Error 404: Not Found",
			wantAuth: "Basic YnVpbGRkOndyb25n"},
		{name: "not found", lib: &librarian{}, sha1: sum, path: "/missing", wantInfo: "Error accessing Librarian: HTTP Error 404: Not Found"},
		{name: "digest mismatch", lib: &librarian{}, sha1: other, path: "/f", wantInfo: "Digests did not match, removing again!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.lib.files = map[string][]byte{"/f": content}
			base := startLibrarian(t, tt.lib)
			c := newTestCache(t)
			present, info := c.EnsurePresent(context.Background(), tt.sha1, base+tt.path, tt.user, tt.pass)
			if present != tt.wantPresent || info != tt.wantInfo {
				t.Fatalf("EnsurePresent = (%v, %q), want (%v, %q)", present, info, tt.wantPresent, tt.wantInfo)
			}
			if got, _ := tt.lib.authSeen.Load().(string); got != tt.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tt.wantAuth)
			}
			if n := tt.lib.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (authentication must be pre-emptive)", n)
			}
			names := cacheNames(t, c)
			if tt.wantPresent {
				if len(names) != 1 || names[0] != tt.sha1 {
					t.Fatalf("cache holds %v, want [%s]", names, tt.sha1)
				}
				b, _ := os.ReadFile(c.Path(tt.sha1))
				if string(b) != string(content) {
					t.Fatalf("cached content %q", b)
				}
				fi, _ := os.Stat(c.Path(tt.sha1))
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("mode %v, want 0644", fi.Mode().Perm())
				}
				// Now a cache hit, without a request.
				present, info = c.EnsurePresent(context.Background(), tt.sha1, base+tt.path, tt.user, tt.pass)
				if !present || info != "Cache" || tt.lib.requests.Load() != 1 {
					t.Fatalf("second call = (%v, %q) after %d requests", present, info, tt.lib.requests.Load())
				}
			} else if len(names) != 0 {
				t.Fatalf("failed download left %v", names)
			}
		})
	}
}

func TestEnsurePresentNoURL(t *testing.T) {
	c := newTestCache(t)
	sum, err := c.Store(strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if p, info := c.EnsurePresent(context.Background(), sum, "", "", ""); !p || info != "No URL" {
		t.Errorf("cached, no URL: (%v, %q)", p, info)
	}
	if p, info := c.EnsurePresent(context.Background(), sha1Hex([]byte("y")), "", "", ""); p || info != "No URL" {
		t.Errorf("missing, no URL: (%v, %q)", p, info)
	}
}

func TestEnsurePresentReasonPhrase(t *testing.T) {
	// urllib quotes the server's own reason phrase.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(conn).ReadString('\n')
			io.WriteString(conn, "HTTP/1.1 503 Librarian Sleeping\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			conn.Close()
		}
	}()
	c := newTestCache(t)
	p, info := c.EnsurePresent(context.Background(), sha1Hex(nil), "http://"+ln.Addr().String()+"/f", "", "")
	if want := "Error accessing Librarian: HTTP Error 503: Librarian Sleeping"; p || info != want {
		t.Errorf("got (%v, %q), want (false, %q)", p, info, want)
	}
}

func TestEnsurePresentTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newTestCache(t)
	p, info := c.EnsurePresent(context.Background(), sha1Hex(nil), "http://u:tok@"+addr+"/f", "", "")
	if p || !strings.HasPrefix(info, "Error accessing Librarian: ") || !strings.Contains(info, "connection refused") {
		t.Errorf("got (%v, %q)", p, info)
	}
	if strings.Contains(info, "tok") {
		t.Errorf("credentials in the answer: %q", info)
	}
	if p, info := c.EnsurePresent(context.Background(), sha1Hex(nil), "::not a url", "", ""); p || !strings.HasPrefix(info, "Error accessing Librarian: ") {
		t.Errorf("bad URL: (%v, %q)", p, info)
	}
}

func TestEnsurePresentInvalidSHA1(t *testing.T) {
	lib := &librarian{files: map[string][]byte{}}
	base := startLibrarian(t, lib)
	c := newTestCache(t)
	outside := filepath.Join(filepath.Dir(c.Dir()), "escaped")
	for _, bad := range []string{
		"", "abc", "../escaped", "../../../../etc/passwd",
		strings.Repeat("A", 40),        // upper case
		strings.Repeat("a", 41),        // too long
		strings.Repeat("a", 38) + "/x", // a path
		strings.Repeat("g", 40),        // not hex
		"buildlog", ".partial-" + strings.Repeat("a", 31),
	} {
		p, info := c.EnsurePresent(context.Background(), bad, base+"/f", "", "")
		if p || !strings.HasPrefix(info, "Invalid SHA-1 ") {
			t.Errorf("EnsurePresent(%q) = (%v, %q)", bad, p, info)
		}
		if c.Has(bad) || c.Path(bad) != "" || c.Remove(bad) == nil {
			t.Errorf("%q accepted by Has, Path or Remove", bad)
		}
	}
	if n := lib.requests.Load(); n != 0 {
		t.Errorf("%d requests for invalid names", n)
	}
	if _, err := os.Stat(outside); err == nil {
		t.Errorf("a file was written outside the cache")
	}
}

func TestEnsurePresentDownloadsOnce(t *testing.T) {
	content := []byte(strings.Repeat("payload ", 10000))
	sum := sha1Hex(content)
	lib := &librarian{files: map[string][]byte{"/f": content}, release: make(chan struct{})}
	base := startLibrarian(t, lib)
	c := newTestCache(t)

	const callers = 10
	type answer struct {
		present bool
		info    string
	}
	answers := make(chan answer, callers)
	for range callers {
		go func() {
			p, info := c.EnsurePresent(context.Background(), sum, base+"/f", "", "")
			answers <- answer{p, info}
		}()
	}
	// Wait until the one request is in the server, then check that other
	// cache calls do not block meanwhile.
	for lib.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	other, err := c.Store(strings.NewReader("unrelated"))
	if err != nil || !c.Has(other) {
		t.Fatalf("Store during a download: %v", err)
	}
	close(lib.release)
	for range callers {
		if a := <-answers; !a.present || (a.info != "Download" && a.info != "Cache") {
			t.Errorf("answer (%v, %q)", a.present, a.info)
		}
	}
	if n := lib.requests.Load(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
}

func TestEnsurePresentCallerGivesUp(t *testing.T) {
	content := []byte("slow content")
	sum := sha1Hex(content)
	lib := &librarian{files: map[string][]byte{"/f": content}, release: make(chan struct{})}
	base := startLibrarian(t, lib)
	c := newTestCache(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string)
	go func() {
		_, info := c.EnsurePresent(ctx, sum, base+"/f", "", "")
		done <- info
	}()
	for lib.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if info := <-done; info != "Error accessing Librarian: context canceled" {
		t.Errorf("cancelled caller got %q", info)
	}
	// The download carries on for the next caller.
	close(lib.release)
	if p, info := c.EnsurePresent(context.Background(), sum, base+"/f", "", ""); !p || (info != "Download" && info != "Cache") {
		t.Errorf("next caller got (%v, %q)", p, info)
	}
	if n := lib.requests.Load(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
}

func TestEnsurePresentTimeouts(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		<-hang
	}))
	defer srv.Close()
	defer close(hang) // before srv.Close, which waits for the handler
	tests := []struct {
		name         string
		total, stall time.Duration
		want         string
	}{
		{"stall", time.Hour, 100 * time.Millisecond, "Error accessing Librarian: download stalled: no data for 100ms"},
		{"total", 150 * time.Millisecond, time.Hour, "Error accessing Librarian: download took longer than 150ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, WithDownloadTimeouts(tt.total, tt.stall))
			p, info := c.EnsurePresent(context.Background(), sha1Hex(nil), srv.URL+"/f", "", "")
			if p || info != tt.want {
				t.Errorf("got (%v, %q), want (false, %q)", p, info, tt.want)
			}
			if names := cacheNames(t, c); len(names) != 0 {
				t.Errorf("interrupted download left %v", names)
			}
		})
	}
}

func TestOpenFileCacheRemovesStaleTemporaries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	os.MkdirAll(dir, 0o755)
	keep := sha1Hex([]byte("kept"))
	for _, name := range []string{".partial-123", keep + ".tmp", "storeFile.tmp", "buildlog.unsanitized", keep} {
		os.WriteFile(filepath.Join(dir, name), []byte("kept"), 0o644)
	}
	c, err := OpenFileCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if names := cacheNames(t, c); len(names) != 1 || names[0] != keep {
		t.Errorf("after open: %v", names)
	}
}

func TestStore(t *testing.T) {
	c := newTestCache(t)
	content := "a result .deb"
	sum, err := c.Store(strings.NewReader(content))
	if err != nil || sum != sha1Hex([]byte(content)) {
		t.Fatalf("Store = %q, %v", sum, err)
	}
	// Same content again: the existing file stays, no temporary is left.
	fi1, _ := os.Stat(c.Path(sum))
	src := filepath.Join(t.TempDir(), "result.deb")
	os.WriteFile(src, []byte(content), 0o600)
	sum2, err := c.StoreFile(src)
	if err != nil || sum2 != sum {
		t.Fatalf("StoreFile = %q, %v", sum2, err)
	}
	fi2, _ := os.Stat(c.Path(sum))
	if !os.SameFile(fi1, fi2) {
		t.Errorf("existing file replaced")
	}
	if names := cacheNames(t, c); len(names) != 1 {
		t.Errorf("cache holds %v", names)
	}
	// A failing reader leaves nothing.
	if _, err := c.Store(io.MultiReader(strings.NewReader("part"), errReader{})); err == nil {
		t.Errorf("Store of a failing reader succeeded")
	}
	if names := cacheNames(t, c); len(names) != 1 {
		t.Errorf("failed Store left %v", names)
	}
	if err := c.Remove(sum); err != nil || c.Has(sum) {
		t.Errorf("Remove: %v", err)
	}
	if err := c.Remove(sum); err != nil {
		t.Errorf("Remove of a missing file: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("disk on fire") }

func TestPrune(t *testing.T) {
	c := newTestCache(t)
	old, _ := c.Store(strings.NewReader("old"))
	used, _ := c.Store(strings.NewReader("old but used"))
	fresh, _ := c.Store(strings.NewReader("fresh"))
	os.WriteFile(filepath.Join(c.Dir(), "not-a-sha1"), nil, 0o644)
	past := time.Now().Add(-72 * time.Hour)
	for _, s := range []string{old, used} {
		os.Chtimes(c.Path(s), past, past)
	}
	os.Chtimes(filepath.Join(c.Dir(), "not-a-sha1"), past, past)
	// A cache hit marks the file used.
	if p, info := c.EnsurePresent(context.Background(), used, "http://unused.invalid/", "", ""); !p || info != "Cache" {
		t.Fatalf("EnsurePresent = (%v, %q)", p, info)
	}
	n, err := c.Prune(48 * time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if c.Has(old) || !c.Has(used) || !c.Has(fresh) {
		t.Errorf("after Prune: old %v used %v fresh %v", c.Has(old), c.Has(used), c.Has(fresh))
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), "not-a-sha1")); err != nil {
		t.Errorf("Prune removed a foreign file")
	}
}

func TestFileCacheHandler(t *testing.T) {
	c := newTestCache(t)
	content := "0123456789abcdef"
	sum, _ := c.Store(strings.NewReader(content))
	log, err := OpenBuildLog(filepath.Join(t.TempDir(), "buildlog"), 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(log, "RUN: echo hi\nhi\n")
	os.WriteFile(filepath.Join(c.Dir(), ".partial-abc"), []byte("in progress"), 0o600)
	os.WriteFile(filepath.Join(c.Dir(), strings.ToUpper(sum)), []byte("upper"), 0o644)
	h := c.Handler(log)

	tests := []struct {
		name, method, path, rangeHdr string
		wantCode                     int
		wantBody, wantType           string
	}{
		{"file", "GET", "/filecache/" + sum, "", 200, content, "application/octet-stream"},
		{"file without prefix", "GET", "/" + sum, "", 200, content, "application/octet-stream"},
		{"range", "GET", "/filecache/" + sum, "bytes=2-5", 206, "2345", "application/octet-stream"},
		{"suffix range", "GET", "/filecache/" + sum, "bytes=-3", 206, "def", "application/octet-stream"},
		{"head", "HEAD", "/filecache/" + sum, "", 200, "", "application/octet-stream"},
		{"build log", "GET", "/filecache/buildlog", "", 200, "RUN: echo hi\nhi\n", "text/plain; charset=utf-8"},
		{"missing", "GET", "/filecache/" + sha1Hex([]byte("nope")), "", 404, "", ""},
		{"no listing", "GET", "/filecache/", "", 404, "", ""},
		{"no temporary files", "GET", "/filecache/.partial-abc", "", 404, "", ""},
		{"no other names", "GET", "/filecache/" + strings.ToUpper(sum), "", 404, "", ""},
		{"no traversal", "GET", "/filecache/../filecache/" + sum, "", 404, "", ""},
		{"no encoded traversal", "GET", "/filecache/..%2f" + sum, "", 404, "", ""},
		{"no subdirectories", "GET", "/filecache/x/" + sum, "", 404, "", ""},
		{"post refused", "POST", "/filecache/" + sum, "", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://builder"+tt.path, nil)
			if tt.rangeHdr != "" {
				req.Header.Set("Range", tt.rangeHdr)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("code %d, want %d", rec.Code, tt.wantCode)
			}
			if tt.wantCode >= 300 {
				if strings.Contains(rec.Body.String(), "in progress") || strings.Contains(rec.Body.String(), sum) {
					t.Errorf("error page leaks: %q", rec.Body.String())
				}
				return
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body %q, want %q", got, tt.wantBody)
			}
			if got := rec.Header().Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			if rec.Header().Get("Last-Modified") == "" {
				t.Errorf("no Last-Modified")
			}
			if tt.method == "HEAD" && rec.Header().Get("Content-Length") != fmt.Sprint(len(content)) {
				t.Errorf("HEAD Content-Length %q", rec.Header().Get("Content-Length"))
			}
		})
	}

	// Over a real connection, with the build log removed (clean()).
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/filecache/" + sum)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != content || resp.ContentLength != int64(len(content)) {
		t.Errorf("GET over HTTP: %d %q (length %d)", resp.StatusCode, body, resp.ContentLength)
	}
	log.Remove()
	resp, err = http.Get(srv.URL + "/filecache/buildlog")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("removed build log: %d", resp.StatusCode)
	}
}

func TestFileCacheConcurrentStores(t *testing.T) {
	c := newTestCache(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Store(strings.NewReader(fmt.Sprint(i % 4))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if names := cacheNames(t, c); len(names) != 4 {
		t.Errorf("cache holds %v", names)
	}
}

// pythonFetch is launchpad-buildd's ensurePresent download (lpbuildd/
// builder.py): the same opener, printing the info text it would return,
// for each "url<TAB>username<TAB>password" line of its input.
const pythonFetch = `
import sys
from urllib.request import HTTPBasicAuthHandler, HTTPPasswordMgrWithPriorAuth, build_opener, urlopen
for line in sys.stdin:
    url, username, password = line.rstrip("\n").split("\t")
    try:
        if username or password:
            pm = HTTPPasswordMgrWithPriorAuth()
            pm.add_password(None, url, username, password, is_authenticated=True)
            f = build_opener(HTTPBasicAuthHandler(pm)).open(url)
        else:
            f = urlopen(url)
        f.read()
        print("Download")
    except Exception as info:
        print("Error accessing Librarian: %s" % info)
`

// TestEnsurePresentMatchesPython fetches with launchpad-buildd's opener in
// the real python3 and with ours from the same server: same Authorization
// header, same info text.
func TestEnsurePresentMatchesPython(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	content := []byte("librarian file")
	var mu sync.Mutex
	auth := map[string]string{} // "py"/"go" + case number → Authorization
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth[r.URL.Query().Get("case")] = r.Header.Get("Authorization")
		mu.Unlock()
		switch r.URL.Path {
		case "/f":
			w.Write(content)
		case "/busy":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "/gone":
			http.Error(w, "gone", http.StatusGone)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	type fetchCase struct{ path, user, password string }
	var cases []fetchCase
	for _, path := range []string{"/f", "/missing", "/busy", "/gone"} {
		for _, cred := range [][2]string{{"", ""}, {"buildd", "s3cret"}, {"", "macaroon"}, {"user", ""}} {
			cases = append(cases, fetchCase{path, cred[0], cred[1]})
		}
	}
	var in strings.Builder
	for i, c := range cases {
		fmt.Fprintf(&in, "%s%s?case=py%d\t%s\t%s\n", srv.URL, c.path, i, c.user, c.password)
	}
	cmd := exec.Command(py, "-c", pythonFetch)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no proxy variables
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	pyInfos := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(pyInfos) != len(cases) {
		t.Fatalf("python3 answered %d of %d cases: %q", len(pyInfos), len(cases), out)
	}
	for i, c := range cases {
		name := fmt.Sprintf("%s %q:%q", c.path, c.user, c.password)
		cache := newTestCache(t)
		url := fmt.Sprintf("%s%s?case=go%d", srv.URL, c.path, i)
		if _, info := cache.EnsurePresent(context.Background(), sha1Hex(content), url, c.user, c.password); info != pyInfos[i] {
			t.Errorf("%s: info %q, Python %q", name, info, pyInfos[i])
		}
		mu.Lock()
		goAuth, pyAuth := auth[fmt.Sprint("go", i)], auth[fmt.Sprint("py", i)]
		mu.Unlock()
		if goAuth != pyAuth {
			t.Errorf("%s: Authorization %q, Python %q", name, goAuth, pyAuth)
		}
	}
}

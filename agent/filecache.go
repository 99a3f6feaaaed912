package agent

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/buildd-agent/buildd-agent/internal/redact"
)

// Info strings of ensurepresent(), byte-identical to launchpad-buildd's:
// the build master compares some of them.
const (
	InfoNoURL          = "No URL"
	InfoCache          = "Cache"
	InfoDownload       = "Download"
	InfoDigestMismatch = "Digests did not match, removing again!"
	infoAccessError    = "Error accessing Librarian: "
)

// tempPrefix starts the names of files being written into the cache. Such
// names are never valid SHA-1 names, so the handler cannot serve them, and
// OpenFileCache removes the ones a killed agent left behind.
const tempPrefix = ".partial-"

// copyBufferSize is the buffer downloads and stores are copied with: large
// enough that hashing and writing run on big blocks (launchpad-buildd
// uses 256 KiB chunks).
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// Default bounds of a download: the whole transfer, and a stall (no byte
// received). Generous: chroot tarballs are large and librarians slow.
const (
	DefaultDownloadTimeout = 6 * time.Hour
	DefaultStallTimeout    = 5 * time.Minute
)

// FileCache is the SHA-1 content-addressed file cache (launchpad-buildd's
// <filecache>): inputs fetched by ensurepresent and results stored by
// managers, served at /filecache/<sha1>.
//
// Files are written under a temporary name in the cache directory and
// renamed into place only once complete and verified, so a cached name
// always holds the content its SHA-1 says. No lock is held while a file
// is transferred.
type FileCache struct {
	dir    string
	client *http.Client
	logger *slog.Logger
	total  time.Duration
	stall  time.Duration
	// maxDownload bounds one download ([limits] download_bytes; 0: none).
	// Atomic: SIGHUP changes it while downloads run.
	maxDownload atomic.Int64

	// ctx ends pending downloads when the cache is closed.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	inflight map[string]*download
}

// download is one in-flight fetch; its waiters share its outcome.
type download struct {
	done    chan struct{}
	present bool
	info    string
}

// FileCacheOption configures OpenFileCache.
type FileCacheOption func(*FileCache)

// WithHTTPClient sets the client downloads use (default: a client with the
// environment's proxy settings and no overall timeout of its own).
func WithHTTPClient(c *http.Client) FileCacheOption { return func(fc *FileCache) { fc.client = c } }

// WithDownloadTimeouts bounds a whole download and a stall within it.
func WithDownloadTimeouts(total, stall time.Duration) FileCacheOption {
	return func(fc *FileCache) { fc.total, fc.stall = total, stall }
}

// WithDownloadLimit bounds the size of one download (0: no bound).
func WithDownloadLimit(n int64) FileCacheOption {
	return func(fc *FileCache) { fc.maxDownload.Store(n) }
}

// SetDownloadLimit changes the bound of later downloads (SIGHUP).
func (c *FileCache) SetDownloadLimit(n int64) { c.maxDownload.Store(n) }

// WithLogger sets where downloads are logged (default: discarded).
func WithLogger(l *slog.Logger) FileCacheOption { return func(fc *FileCache) { fc.logger = l } }

// OpenFileCache opens (creating if needed) the cache directory and removes
// temporary files a killed agent left behind.
func OpenFileCache(dir string, opts ...FileCacheOption) (*FileCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create file cache: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read file cache: %w", err)
	}
	for _, e := range entries {
		// Ours, and launchpad-buildd's when taking over its directory.
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) || strings.HasSuffix(name, ".tmp") || name == "buildlog.unsanitized" {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("cannot remove stale temporary file: %w", err)
			}
		}
	}
	fc := &FileCache{
		dir:      dir,
		logger:   slog.New(slog.DiscardHandler),
		total:    DefaultDownloadTimeout,
		stall:    DefaultStallTimeout,
		inflight: map[string]*download{},
	}
	for _, o := range opts {
		o(fc)
	}
	if fc.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = fc.stall
		fc.client = &http.Client{Transport: tr}
	}
	fc.client = withOriginAuthPolicy(fc.client)
	fc.ctx, fc.cancel = context.WithCancel(context.Background())
	return fc, nil
}

// Close cancels downloads in flight (their callers get an error answer).
func (c *FileCache) Close() error {
	c.cancel()
	return nil
}

// Dir is the cache directory.
func (c *FileCache) Dir() string { return c.dir }

// ValidSHA1 reports whether s is a SHA-1 as the cache names files: 40
// lowercase hexadecimal digits. Anything else (upper case, paths, "..")
// is refused before it gets near the file system.
func ValidSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func invalidSHA1Info(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("Invalid SHA-1 %q: expected 40 lowercase hexadecimal digits", s)
}

// EnsurePresent is the ensurepresent() method: it returns (present, info)
// with launchpad-buildd's info strings ("No URL", "Cache", "Download",
// "Digests did not match, removing again!", "Error accessing Librarian: …").
// It downloads at most once per sha1 at a time and blocks only its caller.
// An invalid sha1 (not 40 lowercase hex digits) returns (false, an error text).
//
// Basic authentication is sent pre-emptively when user or password is
// non-empty (an empty user is valid: macaroons). The download runs on its
// own, bounded by the cache's timeouts: a caller whose ctx ends gets an
// error answer, but the download goes on for the next caller.
func (c *FileCache) EnsurePresent(ctx context.Context, sha1, url, user, password string) (bool, string) {
	if !ValidSHA1(sha1) {
		return false, invalidSHA1Info(sha1)
	}
	if url == "" {
		return c.Has(sha1), InfoNoURL
	}
	if c.touch(sha1) {
		return true, InfoCache
	}
	c.mu.Lock()
	d, ok := c.inflight[sha1]
	if !ok {
		d = &download{done: make(chan struct{})}
		c.inflight[sha1] = d
		go c.fetch(d, sha1, url, user, password)
	}
	c.mu.Unlock()
	select {
	case <-d.done:
		return d.present, d.info
	case <-ctx.Done():
		return false, infoAccessError + ctx.Err().Error()
	}
}

// touch reports whether sha1 is cached, and marks it as used now so that
// Prune keeps inputs that builds still ask for.
func (c *FileCache) touch(sha1 string) bool {
	if !c.Has(sha1) {
		return false
	}
	// An error (a file not ours, in a taken-over directory) only costs
	// the file its protection from Prune.
	now := time.Now()
	_ = os.Chtimes(c.Path(sha1), now, now)
	return true
}

// fetch downloads for d and publishes the outcome to its waiters.
func (c *FileCache) fetch(d *download, sha1, url, user, password string) {
	defer func() {
		c.mu.Lock()
		delete(c.inflight, sha1)
		c.mu.Unlock()
		close(d.done)
	}()
	// It may have arrived since the caller looked.
	if c.Has(sha1) {
		d.present, d.info = true, InfoCache
		return
	}
	c.logger.Info("Fetching "+sha1+" by url "+redactURL(url), "sha1", sha1)
	d.present, d.info = c.download(sha1, url, user, password)
	c.logger.Info(d.info, "sha1", sha1)
}

func (c *FileCache) download(sum, rawURL, user, password string) (bool, string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.total)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return false, infoAccessError + err.Error()
	}
	if user != "" || password != "" {
		// Pre-emptive, as launchpad-buildd's HTTPPasswordMgrWithPriorAuth:
		// the librarian answers 404, not 401, to anonymous requests.
		req.SetBasicAuth(user, password)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false, infoAccessError + transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// urllib's HTTPError text: "HTTP Error 404: Not Found", with the
		// server's reason phrase.
		reason := strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)+" ")
		if reason == "" || reason == resp.Status {
			reason = http.StatusText(resp.StatusCode)
		}
		return false, fmt.Sprintf("%sHTTP Error %d: %s", infoAccessError, resp.StatusCode, reason)
	}
	body := io.Reader(resp.Body)
	var stalled atomic.Bool
	if c.stall > 0 {
		timer := time.AfterFunc(c.stall, func() { stalled.Store(true); cancel() })
		defer timer.Stop()
		body = &stallReader{r: resp.Body, timer: timer, d: c.stall}
	}
	limit := c.maxDownload.Load()
	if limit > 0 && resp.ContentLength > limit {
		return false, downloadTooLargeInfo(limit)
	}
	_, err = c.write(sum, body, limit)
	switch {
	case errors.Is(err, errTooLarge):
		return false, downloadTooLargeInfo(limit)
	case errors.Is(err, errDigestMismatch):
		return false, InfoDigestMismatch
	case err != nil && stalled.Load():
		return false, fmt.Sprintf("%sdownload stalled: no data for %s", infoAccessError, c.stall)
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return false, fmt.Sprintf("%sdownload took longer than %s", infoAccessError, c.total)
	case err != nil:
		return false, infoAccessError + err.Error()
	}
	return true, InfoDownload
}

func downloadTooLargeInfo(limit int64) string {
	return fmt.Sprintf("%sthe file is larger than this builder's limit of %d bytes ([limits] download_bytes); nothing was stored", infoAccessError, limit)
}

// withOriginAuthPolicy returns a copy of client that drops the
// Authorization header on a redirect to another origin (scheme, host and
// port). Go's own policy compares host names only, so Basic credentials
// meant for https://librarian:443 would reach http://librarian:8080 or
// any other service on that host.
func withOriginAuthPolicy(client *http.Client) *http.Client {
	c := *client
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && !sameOrigin(req.URL, via[0].URL) {
			req.Header.Del("Authorization")
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// sameOrigin compares scheme, host and port (default ports made explicit).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && originPort(a) == originPort(b)
}

func originPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// transportError is the error without Go's `Get "url": ` wrapping: the
// URL may carry a token, and the caller knows it.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// redactURL drops a password from a URL for the agent's log.
func redactURL(raw string) string {
	return redact.String(raw)
}

// stallReader cancels a download (through timer) when no byte arrives for d.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

var (
	errDigestMismatch = errors.New("digest mismatch")
	errTooLarge       = errors.New("larger than the limit")
)

// ErrTooLarge is wrapped by StoreResult's error for content over its limit.
var ErrTooLarge = errTooLarge

// write copies r into the cache, hashing it on the way. With want set, the
// file is kept only if its SHA-1 is want (errDigestMismatch otherwise);
// without, it is named after its SHA-1. An existing file of that name is
// kept and the copy dropped: same name, same content. With limit > 0, more
// than limit bytes is errTooLarge and nothing is kept.
func (c *FileCache) write(want string, r io.Reader, limit int64) (string, error) {
	st, err := c.writeFile(want, r, limit)
	return st.SHA1, err
}

// StoredFile describes a file put in the cache.
type StoredFile struct {
	SHA1 string
	Size int64
	// Created: the cache did not hold this content before (false when an
	// existing file of the same SHA-1 was kept).
	Created bool
	// MTime is the cached file's modification time (Unix ns) after the store.
	MTime int64
}

func (c *FileCache) writeFile(want string, r io.Reader, limit int64) (StoredFile, error) {
	tmp, err := os.CreateTemp(c.dir, tempPrefix+"*")
	if err != nil {
		return StoredFile{}, fmt.Errorf("cannot create temporary file: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha1.New()
	bufp := copyBuffers.Get().(*[]byte)
	src := io.Reader(onlyReader{r})
	if limit > 0 {
		src = &limitReader{r: r, left: limit}
	}
	n, err := io.CopyBuffer(hashingWriter{tmp, h}, src, *bufp)
	copyBuffers.Put(bufp)
	if err != nil {
		return StoredFile{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return StoredFile{}, errDigestMismatch
	}
	// CreateTemp makes 0600 files; cached files are served to anyone.
	if err := tmp.Chmod(0o644); err != nil {
		return StoredFile{}, fmt.Errorf("cannot set file mode: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return StoredFile{}, fmt.Errorf("cannot write file: %w", err)
	}
	committed = true
	final := filepath.Join(c.dir, sum)
	st := StoredFile{SHA1: sum, Size: n}
	if c.Has(sum) {
		os.Remove(tmp.Name())
	} else {
		// Link, not rename: rename would replace a file of the same
		// name stored meanwhile, and Created must be true for one
		// writer only.
		err := os.Link(tmp.Name(), final)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			// A file system without hard links: rename.
			err = os.Rename(tmp.Name(), final)
		}
		os.Remove(tmp.Name())
		switch {
		case err == nil:
			st.Created = true
		case errors.Is(err, fs.ErrExist):
		default:
			return StoredFile{}, fmt.Errorf("cannot move file into the cache: %w", err)
		}
	}
	st.MTime, _ = c.ModTime(sum)
	return st, nil
}

// limitReader reads at most left bytes of r; one byte more is errTooLarge
// (so that a file of exactly the limit is accepted).
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		return 0, errTooLarge
	}
	l.left -= int64(n)
	return n, err
}

// ModTime is a cached file's modification time (Unix ns).
func (c *FileCache) ModTime(sha1 string) (int64, bool) {
	if !ValidSHA1(sha1) {
		return 0, false
	}
	fi, err := os.Lstat(filepath.Join(c.dir, sha1))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.ModTime().UnixNano(), true
}

// hashingWriter writes to a file and a hash in one step (one call per
// buffer, no io.MultiWriter indirection).
type hashingWriter struct {
	f *os.File
	h hash.Hash
}

func (w hashingWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	return w.f.Write(p)
}

// onlyReader hides WriterTo, so that io.CopyBuffer uses our large buffer
// rather than the source's own small chunks.
type onlyReader struct{ io.Reader }

// Has reports whether sha1 is in the cache (sha1 validated).
func (c *FileCache) Has(sha1 string) bool {
	if !ValidSHA1(sha1) {
		return false
	}
	// Lstat: a symlink planted in the cache directory is not a cached
	// file (it would hand its target to a build as an input).
	fi, err := os.Lstat(filepath.Join(c.dir, sha1))
	return err == nil && fi.Mode().IsRegular()
}

// Path is the path of a cached file. It is "" for an invalid sha1, so that
// a bad name never becomes a path.
func (c *FileCache) Path(sha1 string) string {
	if !ValidSHA1(sha1) {
		return ""
	}
	return filepath.Join(c.dir, sha1)
}

// Store copies r into the cache, hashing as it goes, and returns its SHA-1.
func (c *FileCache) Store(r io.Reader) (string, error) {
	sum, err := c.write("", r, 0)
	if err != nil {
		return "", fmt.Errorf("cannot store file in cache: %w", err)
	}
	return sum, nil
}

// StoreResult stores a build result: like Store, with a size limit
// (limit > 0: more is an error wrapping ErrTooLarge, and nothing is kept),
// and it says whether the content is new to the cache.
func (c *FileCache) StoreResult(r io.Reader, limit int64) (StoredFile, error) {
	st, err := c.writeFile("", r, limit)
	if err != nil {
		return StoredFile{}, fmt.Errorf("cannot store file in cache: %w", err)
	}
	return st, nil
}

// StoreFile stores the file at path (launchpad-buildd's storeFile).
func (c *FileCache) StoreFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot store file in cache: %w", err)
	}
	defer f.Close()
	return c.Store(f)
}

// Remove deletes a cached file; a missing file is not an error.
func (c *FileCache) Remove(sha1 string) error {
	if !ValidSHA1(sha1) {
		return fmt.Errorf("cannot remove %q from the file cache: not a SHA-1", sha1)
	}
	if err := os.Remove(filepath.Join(c.dir, sha1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove %s from the file cache: %w", sha1, err)
	}
	return nil
}

// Prune removes cached files not used for maxAge (launchpad-buildd's daily
// cron removes entries older than two days). A file's age is its
// modification time, which ensurepresent refreshes on a cache hit, so
// inputs in use stay. It returns how many files it removed.
func (c *FileCache) Prune(maxAge time.Duration) (int, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return 0, fmt.Errorf("cannot prune file cache: %w", err)
	}
	cutoff := time.Now().Add(-maxAge)
	removed := 0
	var errs []error
	for _, e := range entries {
		if !ValidSHA1(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("cannot prune file cache: %w", err)
	}
	return removed, nil
}

// BuildLogName is the log's name under /filecache/.
const BuildLogName = "buildlog"

// Handler serves /filecache/<name>: cached files by SHA-1 as
// application/octet-stream, and "buildlog" (served from log, text/plain),
// with Range and Content-Length; no listing, no temp files, no traversal.
// It accepts paths with or without the /filecache/ prefix.
func (c *FileCache) Handler(log *BuildLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/filecache/")
		name = strings.TrimPrefix(name, "/")
		var (
			f   *os.File
			err error
			ct  string
		)
		switch {
		case ValidSHA1(name):
			// O_NOFOLLOW: a symlink planted in the cache directory is
			// not served (its target may be any file the agent can
			// read); O_NONBLOCK: nor does a FIFO hold the handler.
			f, err = os.OpenFile(filepath.Join(c.dir, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
			ct = "application/octet-stream"
		case name == BuildLogName && log != nil:
			f, err = log.open()
			ct = "text/plain; charset=utf-8"
		default:
			// Listings, temporary files and anything else: not here.
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ct)
		http.ServeContent(w, r, name, fi.ModTime(), f)
	})
}

package agent

import (
	"context"
	"io"
	"net/http"
)

// FileCache is the SHA-1 content-addressed file cache (launchpad-buildd's
// <filecache>): inputs fetched by ensurepresent and results stored by
// managers, served at /filecache/<sha1>.
//
// STUB: API fixed, implementation pending (owned by the platform work).
type FileCache struct {
	dir string
}

// OpenFileCache opens (creating if needed) the cache directory and removes
// temporary files a killed agent left behind.
func OpenFileCache(dir string) (*FileCache, error) { return &FileCache{dir: dir}, nil }

// Dir is the cache directory.
func (c *FileCache) Dir() string { return c.dir }

// EnsurePresent is the ensurepresent() method: it returns (present, info)
// with launchpad-buildd's info strings ("No URL", "Cache", "Download",
// "Digests did not match, removing again!", "Error accessing Librarian: …").
// It downloads at most once per sha1 at a time and blocks only its caller.
// An invalid sha1 (not 40 lowercase hex digits) returns (false, an error text).
func (c *FileCache) EnsurePresent(ctx context.Context, sha1, url, user, password string) (bool, string) {
	panic("TODO")
}

// Has reports whether sha1 is in the cache (sha1 validated).
func (c *FileCache) Has(sha1 string) bool { panic("TODO") }

// Path is the path of a cached file (sha1 must be valid).
func (c *FileCache) Path(sha1 string) string { panic("TODO") }

// Store copies r into the cache, hashing as it goes, and returns its SHA-1.
func (c *FileCache) Store(r io.Reader) (string, error) { panic("TODO") }

// Remove deletes a cached file; a missing file is not an error.
func (c *FileCache) Remove(sha1 string) error { panic("TODO") }

// Handler serves /filecache/<name>: cached files by SHA-1 as
// application/octet-stream, and "buildlog" (served from log, text/plain),
// with Range and Content-Length; no listing, no temp files, no traversal.
func (c *FileCache) Handler(log *BuildLog) http.Handler { panic("TODO") }

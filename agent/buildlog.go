package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
)

// TailSize is how much of the log status() sends as logtail (launchpad-buildd
// sends min(size, 2048) bytes; its docstring's "one kilobyte" is wrong).
const TailSize = 2048

// maxLineHold bounds the sanitised incomplete last line held back for
// late secrets (see process); a longer line is written out as it comes.
const maxLineHold = 64 << 10

// BuildLog is the current build's log (served as /filecache/buildlog):
// "[ctime]"/"RUN:" lines and command output as the build runs, sanitised as
// it is written (URL userinfo, ",proxyauth=…", and every registered secret,
// even when split across writes), capped in size with a truncation marker.
//
// Output is written to the file as soon as the sanitiser has decided it
// (one write per Write call at most): only a possible credential or a
// possible secret is held back, never a whole line, so that a line of any
// length cannot be cut inside a credential and the served log follows the
// build. Nothing unsanitised ever reaches the disk: there is no
// buildlog.unsanitized.
//
// Past the size cap one marker line is written and the rest of the build's
// output is dropped from the file, but Tail keeps following the output:
// the master's logtail then still shows that the build is alive and what it
// is doing, which is worth more than a frozen marker.
type BuildLog struct {
	path     string
	maxBytes int64

	mu        sync.Mutex // serialises writers, the sanitiser and the file
	f         *os.File   // nil after Remove
	sanitizer lineSanitizer
	line      []byte // sanitised output of the incomplete last line, not yet masked
	masker    secretMasker
	written   int64  // bytes in the file
	lastByte  byte   // last byte written to the file
	truncated bool   // the marker was written
	err       error  // first write error, reported by Flush
	scratch   []byte // reused output buffers
	clean     []byte

	tailMu sync.Mutex // separate, so that status() never waits on the disk
	tail   tailRing
}

// OpenBuildLog creates (truncating) the log file at path, capped at
// maxBytes (no cap if maxBytes <= 0).
func OpenBuildLog(path string, maxBytes int64) (*BuildLog, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &BuildLog{path: path, maxBytes: maxBytes, f: f}, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open build log: %w", err)
	}
	return f, nil
}

// Write appends sanitised output. It is safe for concurrent use. What the
// sanitiser and the secret masker have decided is written out at once;
// a possible credential or secret prefix is held back until the bytes
// that decide it arrive (or Flush). Write never fails, so that a command's
// output copier never stops on the log's account: a write error to the
// file is kept and returned by Flush. After Remove, output is dropped.
func (l *BuildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	l.process(p, false)
	return len(p), nil
}

// AddSecret masks every later occurrence of s (and any part of it still
// held back from earlier writes) with "<redacted>". Its URL-escaped form
// is masked too, as secrets often travel inside URLs.
func (l *BuildLog) AddSecret(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.masker.add([]byte(s))
	for _, esc := range []string{url.PathEscape(s), url.QueryEscape(s)} {
		if esc != s {
			l.masker.add([]byte(esc))
		}
	}
}

// Tail returns the last TailSize bytes of sanitised output (what status()
// sends as logtail), from memory.
func (l *BuildLog) Tail() []byte {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	return l.tail.bytes()
}

// Flush writes out anything held back for sanitising (at the end of a
// build) and returns the first error writing the file met since the last
// Flush.
func (l *BuildLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.process(nil, true)
	err := l.err
	l.err = nil
	return err
}

// Reset empties the log for a new build and forgets the secrets. Anything
// held back is discarded. After Remove it creates the file again.
func (l *BuildLog) Reset() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearLocked()
	if l.f == nil {
		f, err := openLogFile(l.path)
		if err != nil {
			return err
		}
		l.f = f
		return nil
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("cannot empty build log: %w", err)
	}
	return nil
}

// Remove closes and deletes the log (clean()). Later writes are dropped
// until Reset.
func (l *BuildLog) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearLocked()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove build log: %w", err)
	}
	return nil
}

// Close writes out what is held back and closes the file, leaving it in
// place (daemon shutdown). Later writes are dropped until Reset.
func (l *BuildLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.process(nil, true)
	err := errors.Join(l.err, l.f.Close())
	l.f = nil
	l.err = nil
	return err
}

// Path is the log file's path.
func (l *BuildLog) Path() string { return l.path }

// open opens the log for reading (the /filecache/buildlog handler).
func (l *BuildLog) open() (*os.File, error) { return os.Open(l.path) }

func (l *BuildLog) clearLocked() {
	l.sanitizer.reset()
	l.line, l.scratch, l.clean = nil, nil, nil
	l.masker.reset()
	l.written = 0
	l.lastByte = 0
	l.truncated = false
	l.err = nil
	l.tailMu.Lock()
	l.tail.reset()
	l.tailMu.Unlock()
}

// process sanitises p (and anything held back) and writes out what can
// be; with final set nothing is held back. The sanitiser holds back only
// undecided credentials; its output is then held until the end of its
// line (up to maxLineHold), so that a secret registered while a line is
// being written is still masked in that line, as it was when whole
// lines were held. That hold is after sanitising: cutting it anywhere is
// safe (the masker itself holds back a possible secret prefix).
func (l *BuildLog) process(p []byte, final bool) {
	buf := l.sanitizer.sanitize(l.line, p, final)
	n := len(buf)
	if !final {
		n = bytes.LastIndexByte(buf, '\n') + 1
		if len(buf)-n > maxLineHold {
			n = len(buf)
		}
	}
	out := l.masker.mask(l.scratch[:0], buf[:n], final)
	l.emit(out)
	l.scratch = out[:0]
	l.line = append(l.clean[:0], buf[n:]...)
	l.clean = buf[:0]
	if cap(l.scratch) > 4*maxLineHold || cap(l.clean) > 4*maxLineHold {
		// A huge single write: do not keep its buffers.
		l.scratch, l.clean = nil, nil
	}
}

// emit writes sanitised output to the file, within the size cap, and to
// the tail.
func (l *BuildLog) emit(out []byte) {
	if len(out) == 0 {
		return
	}
	l.tailMu.Lock()
	l.tail.write(out)
	l.tailMu.Unlock()
	if l.truncated {
		return
	}
	if l.maxBytes <= 0 || l.written+int64(len(out)) <= l.maxBytes {
		l.writeFile(out)
		return
	}
	room := l.maxBytes - l.written
	l.writeFile(out[:room])
	marker := fmt.Sprintf("[buildd-agent: build log truncated at %d bytes]\n", l.maxBytes)
	if l.written > 0 && l.lastByte != '\n' {
		marker = "\n" + marker
	}
	l.writeFile([]byte(marker))
	l.truncated = true
	l.tailMu.Lock()
	l.tail.write([]byte(marker))
	l.tailMu.Unlock()
}

func (l *BuildLog) writeFile(b []byte) {
	if len(b) == 0 {
		return
	}
	n, err := l.f.Write(b)
	l.written += int64(n)
	if n > 0 {
		l.lastByte = b[n-1]
	}
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("cannot write build log: %w", err)
	}
}

// tailRing keeps the last TailSize bytes written.
type tailRing struct {
	buf  [TailSize]byte
	next int  // where the next byte goes
	full bool // buf has wrapped at least once
}

func (r *tailRing) write(p []byte) {
	if len(p) >= TailSize {
		copy(r.buf[:], p[len(p)-TailSize:])
		r.next, r.full = 0, true
		return
	}
	n := copy(r.buf[r.next:], p)
	if n < len(p) {
		copy(r.buf[:], p[n:])
		r.full = true
	}
	r.next = (r.next + len(p)) % TailSize
	if r.next == 0 && len(p) > 0 {
		r.full = true
	}
}

func (r *tailRing) bytes() []byte {
	if !r.full {
		return bytes.Clone(r.buf[:r.next])
	}
	out := make([]byte, 0, TailSize)
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

func (r *tailRing) reset() { r.next, r.full = 0, false }

package agent

// BuildLog is the current build's log (served as /filecache/buildlog):
// "[ctime]"/"RUN:" lines and command output as the build runs, sanitised as
// it is written (URL userinfo, ",proxyauth=…", and every registered secret,
// even when split across writes), capped in size with a truncation marker.
//
// STUB: API fixed, implementation pending (owned by the platform work).
type BuildLog struct {
	path string
}

// OpenBuildLog creates (truncating) the log file at path, capped at maxBytes.
func OpenBuildLog(path string, maxBytes int64) (*BuildLog, error) { return &BuildLog{path: path}, nil }

// Write appends sanitised output. It is safe for concurrent use.
func (l *BuildLog) Write(p []byte) (int, error) { panic("TODO") }

// AddSecret masks every later occurrence of s (and any part of it still
// held back from earlier writes).
func (l *BuildLog) AddSecret(s string) { panic("TODO") }

// Tail returns the last 2048 bytes written (what status() sends as logtail).
func (l *BuildLog) Tail() []byte { panic("TODO") }

// Flush writes out anything held back for secret matching (at the end of a build).
func (l *BuildLog) Flush() error { panic("TODO") }

// Reset empties the log for a new build and forgets the secrets.
func (l *BuildLog) Reset() error { panic("TODO") }

// Remove closes and deletes the log (clean()).
func (l *BuildLog) Remove() error { panic("TODO") }

// Path is the log file's path.
func (l *BuildLog) Path() string { return l.path }

package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// JournalName is the builder's state journal in the state directory.
const JournalName = "builder-state.json"

// journalVersion is the record layout; a record of another version is
// treated as damaged (ignored with a log line), never guessed at.
const journalVersion = 1

// maxJournalBytes bounds what is read back: a record is a few KiB (a
// filemap of a few hundred names at most); anything bigger is not ours.
const maxJournalBytes = 16 << 20

// journalRecord is the builder's state as the journal keeps it: what a
// restarted agent needs to report a finished build (WAITING) exactly as
// before, and to sweep what a running one left.
type journalRecord struct {
	Version int    `json:"version"`
	State   string `json:"state"` // BuilderIdle, BuilderBuilding, BuilderAborting, BuilderWaiting
	BuildID string `json:"build_id,omitempty"`
	Manager string `json:"manager,omitempty"`
	// Started is when build() started it (for the metrics' duration).
	Started time.Time `json:"started,omitzero"`
	// Result and Dependencies are status()'s build_status and
	// dependencies in WAITING.
	Result       string `json:"build_status,omitempty"`
	Dependencies string `json:"dependencies,omitempty"`
	// Files is the filemap, in the order results were added.
	Files []journalFile `json:"filemap,omitempty"`
	// Extras are the manager's status extras, in order; each value is
	// kept as an XML-RPC document so that its types survive.
	Extras []journalExtra `json:"extras,omitempty"`
	// Log is the build log's path (kept in WAITING until clean()).
	Log string `json:"log,omitempty"`
	// UseFetchService and RevocationEndpoint are proxy_info()'s answer.
	UseFetchService    bool   `json:"use_fetch_service,omitempty"`
	RevocationEndpoint string `json:"revocation_endpoint,omitempty"`
	// OverLimit: a result went over a [limits] size.
	OverLimit bool `json:"over_limit,omitempty"`
}

type journalFile struct {
	Name string `json:"name"`
	SHA1 string `json:"sha1"`
	// Owned: the build put the file in the cache (it was not there
	// before), so clean() may remove it. A result equal to an input or to
	// any file cached before is never owned.
	Owned bool `json:"owned,omitempty"`
	// MTime is the file's modification time once stored (Unix ns):
	// ensurepresent refreshes it on a cache hit, so a changed time means
	// a later build asked for this content and clean() must keep it.
	MTime int64 `json:"mtime,omitempty"`
}

type journalExtra struct {
	Key   string `json:"key"`
	Value string `json:"value"` // an XML-RPC methodResponse document
}

// parseJournal decodes and checks a record: every name, SHA-1 and state
// must be one the builder itself could have written. It is fuzzed: a
// damaged file (a torn write on a file system without ordering, a disk
// error, a hand edit) is an error, never a panic or a half-restored build.
func parseJournal(data []byte) (*journalRecord, error) {
	if len(data) > maxJournalBytes {
		return nil, fmt.Errorf("journal is %d bytes, more than the %d a record can be", len(data), maxJournalBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rec journalRecord
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("journal is not a valid record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("journal has data after its record")
	}
	if rec.Version != journalVersion {
		return nil, fmt.Errorf("journal version is %d, want %d", rec.Version, journalVersion)
	}
	switch rec.State {
	case BuilderIdle:
		return &rec, nil
	case BuilderBuilding, BuilderAborting, BuilderWaiting:
	default:
		return nil, fmt.Errorf("journal state %q is not a builder state", rec.State)
	}
	if _, err := checkBuildID(rec.BuildID); err != nil {
		return nil, fmt.Errorf("journal build id: %v", err)
	}
	if err := checkFileName(rec.Manager); err != nil {
		return nil, fmt.Errorf("journal manager tag: %v", err)
	}
	if rec.State == BuilderWaiting && !knownResultName(rec.Result) {
		return nil, fmt.Errorf("journal build status %q is not a build status", rec.Result)
	}
	for _, f := range rec.Files {
		if err := checkResultName(f.Name); err != nil {
			return nil, fmt.Errorf("journal filemap: %v", err)
		}
		if !ValidSHA1(f.SHA1) {
			return nil, fmt.Errorf("journal filemap: %q is not a SHA-1", f.SHA1)
		}
	}
	for _, e := range rec.Extras {
		if e.Key == "" || reservedStatus[e.Key] || !validUTF8NoControl(e.Key) {
			return nil, fmt.Errorf("journal status extra %q is not a key a manager can set", e.Key)
		}
		if _, err := DecodeResponse(strings.NewReader(e.Value)); err != nil {
			return nil, fmt.Errorf("journal status extra %q: %v", e.Key, err)
		}
	}
	if rec.Log != "" && !filepath.IsAbs(rec.Log) {
		return nil, fmt.Errorf("journal log path %q is not absolute", rec.Log)
	}
	return &rec, nil
}

func knownResultName(s string) bool {
	for r := range knownResults {
		if string(r) == s {
			return true
		}
	}
	return false
}

func validUTF8NoControl(s string) bool {
	return checkFileName(strings.ReplaceAll(s, "/", "_")) == nil
}

// checkResultName is addWaitingFile's rule for a result's name: relative,
// no NUL, no ".." component (CI results are "job:0/file").
func checkResultName(name string) error {
	if name == "" || strings.ContainsRune(name, 0) || strings.HasPrefix(name, "/") || slices.Contains(strings.Split(name, "/"), "..") {
		return fmt.Errorf("cannot add result %q: not a relative file name", name)
	}
	return nil
}

// journal writes records atomically: a temporary file in the same
// directory, fsync, rename over the journal, fsync of the directory. A
// crash at any point leaves the old record or the new one, whole.
type journal struct {
	path string
	// mu serialises writers, so that records land in the order their
	// snapshots were taken (the builder snapshots under mu).
	mu sync.Mutex
}

func newJournal(stateDir string) *journal {
	return &journal{path: filepath.Join(stateDir, JournalName)}
}

// read returns the record on disk: (nil, nil) when there is none.
func (j *journal) read() (*journalRecord, error) {
	data, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the builder journal: %w", err)
	}
	return parseJournal(data)
}

// set aside keeps a damaged journal for a post-mortem, out of the way of
// the next write.
func (j *journal) setAside() error {
	return os.Rename(j.path, j.path+".damaged")
}

// write replaces the record. j.mu must be held.
func (j *journal) write(rec *journalRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("cannot encode the builder journal: %w", err)
	}
	return writeFileAtomic(j.path, append(data, '\n'))
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old content or the new, and the new one is durable on return.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("cannot write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot write %s: opening its directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot write %s: fsync of its directory: %w", path, err)
	}
	return nil
}

// removeStaleJournalTemps removes temporary files a crash left between
// CreateTemp and rename.
func removeStaleJournalTemps(stateDir string) {
	matches, _ := filepath.Glob(filepath.Join(stateDir, "."+JournalName+".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

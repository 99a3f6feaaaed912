package debian

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
)

// Build statuses, the suffixes of launchpad-buildd's BuildStatus values.
const (
	StatusOK          = "OK"
	StatusDepFail     = "DEPFAIL"
	StatusGivenBack   = "GIVENBACK"
	StatusPackageFail = "PACKAGEFAIL"
	StatusBuilderFail = "BUILDERFAIL"
)

// sbuild exit codes as sbuild-package reports them (SBuildExitCodes).
const (
	sbuildOK          = 0
	sbuildFailed      = 1
	sbuildAttempted   = 2
	sbuildGivenBack   = 3
	sbuildBuilderFail = 4
)

// The apt messages after "Depends: <relation>" (APT_MISSING_DEP_PATTERNS
// and APT_DUBIOUS_DEP_PATTERNS). A missing dependency is a sure dep-wait
// on that relation; a dubious one needs analysis of the direct build
// dependencies against the archive.
var (
	aptMissingDepPatterns = []string{
		`but [^ ]* is to be installed`,
		`but [^ ]* is installed`,
		`but it is not installable`,
		`but it is a virtual package`,
	}
	aptDubiousDepPatterns = []string{
		`but it is not installed`,
		`but it is not going to be installed`,
	}
)

// The build log patterns (BuildLogRegexes), with the flags the reference
// compiles them with: re.M for GIVENBACK and the stop pattern, re.M|re.S
// for the dependency ones, so that ".*" spans lines and, being greedy,
// reaches the last matching "Depends:" line of the window. Go's regexp
// picks the same (leftmost-first, backtracking-preferred) match as
// Python's re, and every literal is ASCII, so byte offsets agree even on
// invalid UTF-8 (TestSearchLogPython compares the two).
const (
	unmetHeader   = "The following packages have unmet dependencies:\n"
	unmetHeaderRE = `The following packages have unmet dependencies:\n`
)

var (
	givenBackPattern    = &logPattern{lineStart: "E: There are problems and -y was used without --force-yes"}
	maybeDepFailPattern = &logPattern{
		re: sync.OnceValue(func() *regexp.Regexp {
			return regexp.MustCompile(`(?ms)` + unmetHeaderRE +
				`.* Depends: [^ ]*( \([^)]*\))? (` + strings.Join(aptDubiousDepPatterns, "|") + `)\n`)
		}),
		endings: []string{"but it is not installed\n", "but it is not going to be installed\n"},
	}
	depFailPattern = &logPattern{
		re: sync.OnceValue(func() *regexp.Regexp {
			return regexp.MustCompile(`(?ms)` + unmetHeaderRE +
				`.* Depends: (?P<p>[^ ]*( \([^)]*\))?) (` + strings.Join(aptMissingDepPatterns, "|") + `)\n`)
		}),
		endings: []string{" is to be installed\n", " is installed\n", "but it is not installable\n", "but it is a virtual package\n"},
	}
	toolchainStopPattern = &logPattern{lineStart: "Toolchain package versions:"}
	failStageDepsRE      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^Fail-Stage: install-deps$`) })
	depFailGroupP        = sync.OnceValue(func() int { return depFailPattern.re().SubexpIndex("p") })
)

const (
	logSearchChunk   = 256 << 10
	failStageTailLen = 4096
)

// logPattern is one build log pattern. Go's regexp has no fast path for a
// pattern starting with a multi-line "^", and runs a dependency pattern to
// the end of the window from every report header, so the two kinds get
// exact shortcuts: lineStart is a literal that must start a line (or the
// window), and for re the window must contain, after the report header,
// " Depends: " and one of endings, or re cannot match.
type logPattern struct {
	lineStart string
	re        func() *regexp.Regexp // compiled on first use (sync.OnceValue)
	endings   []string
}

// find returns the submatches of the pattern's first match in window, or
// nil.
func (p *logPattern) find(window []byte) [][]byte {
	if p.re == nil {
		lit := []byte(p.lineStart)
		for i := 0; i <= len(window); {
			j := bytes.Index(window[i:], lit)
			if j < 0 {
				return nil
			}
			if at := i + j; at == 0 || window[at-1] == '\n' {
				return [][]byte{window[at : at+len(lit)]}
			}
			i += j + 1
		}
		return nil
	}
	h := bytes.Index(window, []byte(unmetHeader))
	if h < 0 {
		return nil
	}
	rest := window[h+len(unmetHeader):]
	if !bytes.Contains(rest, []byte(" Depends: ")) {
		return nil
	}
	ending := false
	for _, e := range p.endings {
		if bytes.Contains(rest, []byte(e)) {
			ending = true
			break
		}
	}
	if !ending {
		return nil
	}
	return p.re().FindSubmatch(window[h:])
}

// Analysis is the outcome of an sbuild run.
type Analysis struct {
	// Status is one of the Status* constants.
	Status string
	// Dependencies is the dep-wait relation for StatusDepFail, else "".
	Dependencies string
	// Notes are lines (without "\n") for the build log, explaining a
	// failed analysis.
	Notes []string
}

// AnalyseSbuild turns the exit code of sbuild-package and its build log
// into a build status, as launchpad-buildd's iterate_SBUILD does:
//
//   - 0: OK (the caller gathers the .changes; a missing one is
//     PACKAGEFAIL).
//   - 1 (failed), 2 (attempted): PACKAGEFAIL.
//   - 3 (given back): the log is searched (searchLog) for apt's "-y was
//     used without --force-yes" (GIVENBACK) and, when the last 4 KiB of the
//     log hold "Fail-Stage: install-deps", for apt's unmet dependency
//     report. A dubious one ("but it is not going to be installed") is
//     analysed with buildDeps and avail (AnalyseDepWait): DEPFAIL on the
//     unsatisfied direct build dependencies, PACKAGEFAIL when there are
//     none or the analysis fails. A missing one ("but it is not
//     installable", "but 2.0 is to be installed") is DEPFAIL on that
//     relation, stripped. No match: PACKAGEFAIL.
//   - 4 and above: BUILDERFAIL.
//   - negative (killed by a signal): PACKAGEFAIL; a caller that aborted the
//     build reports that instead.
//
// buildDeps and avail are only called for a dubious dependency failure.
// Where the reference would raise, or would report a DEPFAIL on a relation
// it could not parse, the build fails with a note instead. A log that
// cannot be read is BUILDERFAIL.
func AnalyseSbuild(exitCode int, log io.ReaderAt, logSize int64, buildDeps func() (Relations, error), avail func() (*Available, error), arch string) Analysis {
	switch {
	case exitCode == sbuildOK:
		return Analysis{Status: StatusOK}
	case exitCode == sbuildFailed || exitCode == sbuildAttempted || exitCode < 0:
		return Analysis{Status: StatusPackageFail}
	case exitCode >= sbuildBuilderFail:
		return Analysis{Status: StatusBuilderFail}
	}

	if log == nil || logSize < 0 {
		return Analysis{Status: StatusBuilderFail, Notes: []string{"Cannot read the build log: no log"}}
	}
	patterns := []*logPattern{givenBackPattern}
	tail, err := readTail(log, logSize, failStageTailLen)
	if err != nil {
		return Analysis{Status: StatusBuilderFail, Notes: []string{"Cannot read the build log: " + err.Error()}}
	}
	if failStageDepsRE().Match(tail) {
		patterns = append(patterns, maybeDepFailPattern, depFailPattern)
	}
	m, err := searchLog(log, logSize, patterns, []*logPattern{toolchainStopPattern})
	if err != nil {
		return Analysis{Status: StatusBuilderFail, Notes: []string{"Cannot read the build log: " + err.Error()}}
	}
	failed := func(err error) Analysis {
		return Analysis{Status: StatusPackageFail, Notes: []string{"Failed to analyse dep-wait: " + err.Error()}}
	}
	switch m.pattern {
	case nil:
		// Given back, but with no reason we can see: assume it failed.
		return Analysis{Status: StatusPackageFail}
	case givenBackPattern:
		return Analysis{Status: StatusGivenBack}
	case maybeDepFailPattern:
		if buildDeps == nil || avail == nil {
			return failed(errors.New("no build dependencies or archive contents to analyse"))
		}
		deps, err := buildDeps()
		if err != nil {
			return failed(err)
		}
		av, err := avail()
		if err != nil {
			return failed(err)
		}
		missing, err := AnalyseDepWait(deps, av, arch)
		if err != nil {
			return failed(err)
		}
		if missing == "" {
			return Analysis{Status: StatusPackageFail}
		}
		return Analysis{Status: StatusDepFail, Dependencies: missing}
	default: // depFailPattern
		raw := strings.ToValidUTF8(string(m.groups[depFailGroupP()]), "\uFFFD")
		rels, err := ParseRelations(raw)
		if err != nil {
			return failed(err)
		}
		if len(rels) == 0 {
			return failed(fmt.Errorf("no dependency in %q", raw))
		}
		return Analysis{Status: StatusDepFail, Dependencies: rels.Strip().String()}
	}
}

// readTail returns the last n bytes of the log (all of it when shorter).
func readTail(log io.ReaderAt, size int64, n int) ([]byte, error) {
	off := max(size-int64(n), 0)
	buf := make([]byte, size-off)
	k, err := log.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return buf[:k], nil
}

// logMatch is the result of searchLog: which pattern matched (nil for
// none) and its submatches.
type logMatch struct {
	pattern *logPattern
	groups  [][]byte
}

// searchLog is launchpad-buildd's searchLogContents: the log is read in
// 256 KiB chunks into a window of at most two chunks (the previous and the
// current one). Each time a chunk is added, the patterns are tried in
// order on the whole window and the first that matches anywhere wins; then,
// if a stop pattern matches the window, the search ends with no match.
// So a match must fit in two aligned chunks, a match in the same window as
// the stop line still counts, and "^" also matches at the start of the
// window, wherever that falls.
func searchLog(log io.ReaderAt, size int64, patterns, stops []*logPattern) (logMatch, error) {
	chunkSize := int(min(int64(logSearchChunk), max(size, 0)))
	window := make([]byte, 0, min(2*logSearchChunk, 2*chunkSize))
	chunk := make([]byte, chunkSize)
	for off := int64(0); off < size; {
		want := min(int64(len(chunk)), size-off)
		n, err := log.ReadAt(chunk[:want], off)
		if err != nil && err != io.EOF {
			return logMatch{}, fmt.Errorf("at offset %d: %w", off, err)
		}
		if n == 0 {
			break
		}
		off += int64(n)
		window = append(window, chunk[:n]...)
		for _, p := range patterns {
			if sm := p.find(window); sm != nil {
				groups := make([][]byte, len(sm))
				for i, g := range sm {
					groups[i] = bytes.Clone(g)
				}
				return logMatch{pattern: p, groups: groups}, nil
			}
		}
		for _, p := range stops {
			if p.find(window) != nil {
				return logMatch{}, nil
			}
		}
		if len(window) > logSearchChunk {
			window = append(window[:0], window[logSearchChunk:]...)
		}
		if err == io.EOF {
			break
		}
	}
	return logMatch{}, nil
}

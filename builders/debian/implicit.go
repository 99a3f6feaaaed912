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

// The GCC warnings check-implicit-pointer-functions looks for: a function
// used without a declaration, then, on the same file and line, an integer
// turned into a pointer, which on 64-bit architectures truncates the
// function's (int) return value.
var (
	implicitRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([^:]*):(\d+):(\d+:)? warning: implicit declaration ` +
			"of function [`']([^']*)'")
	})
	pointerRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([^:]*):(\d+):(\d+:)? warning: ` +
			`(` +
			`(assignment` +
			`|initialization` +
			`|return` +
			"|passing arg \\d+ of `[^']*'" +
			`|passing arg \d+ of pointer to function` +
			`) makes pointer from integer without a cast` +
			`|` +
			`cast to pointer from integer of different size)`)
	})
)

var (
	implicitNeedle = []byte(" warning: implicit declaration of function ")
	pointerNeedle  = []byte(" makes pointer from integer without a cast")
	castNeedle     = []byte(" warning: cast to pointer from integer of different size")
)

// implicitPointerTrailer is what filter_log --inline writes after the list
// of problems.
const implicitPointerTrailer = `

Our automated build log filter detected the problem(s) above that will
likely cause your package to segfault on architectures where the size of
a pointer is greater than the size of an integer, such as ia64 and amd64.

This is often due to a missing function prototype definition.

Since use of implicitly converted pointers is always fatal to the application
on ia64, they are errors.  Please correct them for your next upload.

More information can be found at:
http://wiki.debian.org/ImplicitPointerConversions

    `

// Memory bounds of ImplicitPointerFilter. Only the first
// maxFilterLinePrefix bytes of a line are matched (a warning whose file
// and function names do not fit is not recognised); the summary repeats
// at most maxFilterSummary bytes of problems and then says how many more
// there were.
const (
	maxFilterLinePrefix = 64 << 10
	maxFilterSummary    = 1 << 20
)

// ImplicitPointerFilter is launchpad-buildd's check-implicit-pointer-functions
// (filter_log) as an io.WriteCloser for sbuild's output. With inline set
// it passes every byte through to w unchanged and in order, writes
// "Function `f' implicitly converted to pointer at file:line" after each
// line that completes such a problem, and on Close repeats the problems
// followed by an explanation. Without inline it writes only the problem
// lines. Writes may split lines anywhere. It is safe for concurrent use,
// so it can take a command's stdout and stderr, but output from two
// streams interleaves at write boundaries, which can split a warning line.
type ImplicitPointerFilter struct {
	mu     sync.Mutex
	w      io.Writer
	inline bool

	line     []byte // the current line's first maxFilterLinePrefix bytes
	lastFile []byte // last implicit declaration: file, line (normalised), function
	lastLine string
	lastFunc []byte

	problems int
	summary  []byte // "\n"-joined problems for the trailer, bounded
	omitted  int
	err      error
	closed   bool
}

// NewImplicitPointerFilter returns a filter writing to w.
func NewImplicitPointerFilter(w io.Writer, inline bool) *ImplicitPointerFilter {
	return &ImplicitPointerFilter{w: w, inline: inline}
}

// Problems returns the number of problems seen so far
// (check-implicit-pointer-functions exits 2 when it is non-zero, unless
// warn-only).
func (f *ImplicitPointerFilter) Problems() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.problems
}

func (f *ImplicitPointerFilter) write(p []byte) error {
	if f.err != nil {
		return f.err
	}
	if _, err := f.w.Write(p); err != nil {
		f.err = err
	}
	return f.err
}

// Write passes p through (inline) and checks each completed line.
func (f *ImplicitPointerFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, errors.New("write to closed implicit pointer filter")
	}
	if f.err != nil {
		return 0, f.err
	}
	written := 0
	for len(p) > 0 {
		seg := p
		i := bytes.IndexByte(p, '\n')
		if i >= 0 {
			seg = p[:i+1]
		}
		if f.inline {
			if err := f.write(seg); err != nil {
				return written, err
			}
		}
		written += len(seg)
		if room := maxFilterLinePrefix - len(f.line); room > 0 {
			f.line = append(f.line, seg[:min(room, len(seg))]...)
		}
		p = p[len(seg):]
		if i >= 0 {
			if err := f.endLine(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// endLine checks the line collected so far and starts a new one.
func (f *ImplicitPointerFilter) endLine() error {
	line := f.line
	f.line = f.line[:0]
	// Literals each pattern needs, so that ordinary lines skip the
	// (slow, for every line) regexps.
	maybeImplicit := bytes.Contains(line, implicitNeedle)
	if !maybeImplicit && !bytes.Contains(line, pointerNeedle) && !bytes.Contains(line, castNeedle) {
		return nil
	}
	if maybeImplicit {
		if m := implicitRE().FindSubmatch(line); m != nil {
			f.lastFile = append(f.lastFile[:0], m[1]...)
			f.lastLine = normaliseNumber(m[2])
			f.lastFunc = append(f.lastFunc[:0], m[4]...)
			return nil
		}
	}
	m := pointerRE().FindSubmatch(line)
	if m == nil || f.lastLine == "" || !bytes.Equal(m[1], f.lastFile) || normaliseNumber(m[2]) != f.lastLine {
		return nil
	}
	problem := fmt.Appendf(nil, "Function `%s' implicitly converted to pointer at %s:%s", f.lastFunc, f.lastFile, f.lastLine)
	f.problems++
	if len(f.summary)+len(problem)+1 <= maxFilterSummary {
		if len(f.summary) > 0 {
			f.summary = append(f.summary, '\n')
		}
		f.summary = append(f.summary, problem...)
	} else {
		f.omitted++
	}
	return f.write(append(problem, '\n'))
}

// normaliseNumber is Python's int() then %d for a run of ASCII digits of
// any length.
func normaliseNumber(d []byte) string {
	s := strings.TrimLeft(string(d), "0")
	if s == "" {
		return "0"
	}
	return s
}

// Close checks a last line without "\n" and, inline, writes the summary.
// It does not close w.
func (f *ImplicitPointerFilter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.err
	}
	f.closed = true
	if len(f.line) > 0 {
		if err := f.endLine(); err != nil {
			return err
		}
	}
	if f.problems == 0 || !f.inline {
		return f.err
	}
	var b bytes.Buffer
	b.Write(f.summary)
	b.WriteString("\n")
	if f.omitted > 0 {
		fmt.Fprintf(&b, "(%d more problems not repeated here)\n", f.omitted)
	}
	b.WriteString("\n")
	b.WriteString(implicitPointerTrailer)
	return f.write(b.Bytes())
}

// ImplicitPointerWarnOnly reports whether sbuild-package runs
// check-implicit-pointer-functions with --warnonly (problems do not fail
// the build): on 32-bit architectures, where the conversion is harmless,
// and for the Ubuntu series warty to hardy and karmic (suite prefixes, the
// case lists in sbuild-package).
func ImplicitPointerWarnOnly(arch, suite string) bool {
	switch arch {
	case "armel", "armhf", "hppa", "i386", "lpia", "mips", "mipsel", "powerpc", "s390", "sparc":
		return true
	}
	for _, s := range []string{"warty", "hoary", "breezy", "dapper", "edgy", "feisty", "gutsy", "hardy", "karmic"} {
		if strings.HasPrefix(suite, s) {
			return true
		}
	}
	return false
}

// Personality returns the setarch wrapper sbuild-package runs sbuild
// under for arch: "linux32" for 32-bit architectures, "linux64" for
// 64-bit ones, "" (none) for any other (riscv64, loong64, ...).
func Personality(arch string) string {
	switch arch {
	case "armel", "armhf", "hppa", "i386", "lpia", "mips", "mipsel", "powerpc", "s390", "sparc":
		return "linux32"
	case "alpha", "amd64", "arm64", "hppa64", "ia64", "ppc64", "ppc64el", "s390x", "sparc64", "x32":
		return "linux64"
	}
	return ""
}

// Uname26 reports whether sbuild-package adds --uname-2.6 to the
// personality wrapper, for series up to precise (when setarch supports
// it).
func Uname26(suite string) bool {
	for _, s := range []string{"hardy", "lucid", "maverick", "natty", "oneiric", "precise"} {
		if strings.HasPrefix(suite, s) {
			return true
		}
	}
	return false
}

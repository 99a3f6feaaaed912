package builders

// Build arguments: typed parsing of the XML-RPC argument struct that names
// the bad argument, and the arguments every manager reads.

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ---------------------------------------------------------------------------
// Arguments

// ArgParser reads a build's XML-RPC argument struct with the types
// launchpad-buildd's managers expect. The first problem is kept and
// reported by Err as an *ArgError naming the argument, so a Factory reads
// every argument in a row and checks once. A nil value counts as absent,
// as Python's args.get does.
type ArgParser struct {
	args map[string]any
	err  error
}

// NewArgParser reads args (which may be nil).
func NewArgParser(args map[string]any) *ArgParser { return &ArgParser{args: args} }

// Err is the first problem found, an *ArgError, or nil.
func (p *ArgParser) Err() error { return p.err }

// Fail records a problem with an argument unless one was recorded already.
func (p *ArgParser) Fail(name, format string, a ...any) {
	if p.err == nil {
		p.err = &ArgError{Arg: name, Reason: fmt.Sprintf(format, a...)}
	}
}

func (p *ArgParser) get(name string) (any, bool) {
	v, ok := p.args[name]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// Has reports whether name is present and not nil.
func (p *ArgParser) Has(name string) bool {
	_, ok := p.get(name)
	return ok
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case int, int32, int64:
		return "integer"
	case float64:
		return "double"
	case []byte:
		return "base64"
	case []any:
		return "array"
	case map[string]any:
		return "struct"
	}
	return fmt.Sprintf("%T", v)
}

// String returns a string argument; absent gives "".
func (p *ArgParser) String(name string) string {
	v, ok := p.get(name)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		p.Fail(name, "must be a string, not %s", typeName(v))
		return ""
	}
	if strings.IndexByte(s, 0) >= 0 {
		p.Fail(name, "must not contain a NUL byte")
		return ""
	}
	return s
}

// RequiredString returns a string argument that must be present and non-empty.
func (p *ArgParser) RequiredString(name string) string {
	if !p.Has(name) {
		p.Fail(name, "is required")
		return ""
	}
	s := p.String(name)
	if s == "" && p.err == nil {
		p.Fail(name, "must not be empty")
	}
	return s
}

// Bool returns a boolean argument; absent gives false.
func (p *ArgParser) Bool(name string) bool {
	v, ok := p.get(name)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		p.Fail(name, "must be a boolean, not %s", typeName(v))
	}
	return b
}

// StringList returns an array of strings; absent gives nil, an empty array
// a non-nil empty slice (the reference tells them apart for archives).
func (p *ArgParser) StringList(name string) []string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		p.Fail(name, "must be an array of strings, not %s", typeName(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			p.Fail(name, "element %d must be a string, not %s", i, typeName(e))
			return nil
		}
		out = append(out, s)
	}
	return out
}

// StringMap returns a struct whose members are all strings; absent gives nil.
func (p *ArgParser) StringMap(name string) map[string]string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.Fail(name, "must be a struct of strings, not %s", typeName(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for k, e := range m {
		s, ok := e.(string)
		if !ok {
			p.Fail(name, "member %q must be a string, not %s", k, typeName(e))
			return nil
		}
		out[k] = s
	}
	return out
}

// Scalar returns an integer or string argument as a string (Launchpad sends
// ids as either); ok is false when absent.
func (p *ArgParser) Scalar(name string) (s string, ok bool) {
	v, present := p.get(name)
	if !present {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case int:
		return strconv.Itoa(v), true
	case int32:
		return strconv.FormatInt(int64(v), 10), true
	}
	p.Fail(name, "must be an integer or a string, not %s", typeName(v))
	return "", false
}

// URL returns a URL argument with one of the given schemes and a host.
func (p *ArgParser) URL(name string, schemes ...string) string {
	s := p.String(name)
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the whole URL, which may carry credentials.
		p.Fail(name, "is not a valid URL")
		return ""
	}
	okScheme := false
	for _, sc := range schemes {
		if u.Scheme == sc {
			okScheme = true
		}
	}
	if !okScheme {
		p.Fail(name, "must be a %s URL", strings.Join(schemes, " or "))
		return ""
	}
	if u.Host == "" {
		p.Fail(name, "must name a host")
		return ""
	}
	return s
}

// Reject fails if name is present: for arguments the reference accepts but
// this agent does not support.
func (p *ArgParser) Reject(name, reason string) {
	if p.Has(name) {
		p.Fail(name, "%s", reason)
	}
}

var (
	// seriesName and archName end up in container and image names.
	seriesName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`) })
	archName   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9]{0,15}$`) })
	// snapName is snapd's rule for snap names (plus the store's length cap).
	snapName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`) })
)

// PathComponent returns a required argument used as one path component
// inside the target (/build/<name>): no slash, not "." or "..".
func (p *ArgParser) PathComponent(name string) string {
	s := p.RequiredString(name)
	if s == "" {
		return ""
	}
	if strings.ContainsRune(s, '/') || s == "." || s == ".." || strings.HasPrefix(s, "-") || len(s) > 200 || !utf8.ValidString(s) {
		p.Fail(name, "must be a plain file name (no '/', not '.' or '..', not starting with '-')")
		return ""
	}
	return s
}

// CommonArgs are the arguments every manager reads (launchpad-buildd's
// BuildManager.initiate table).
type CommonArgs struct {
	Series string
	// ArchTag is "" when not given: the builder's own architecture then.
	ArchTag string
	// ImageType is "chroot" (the default) or "lxd".
	ImageType      string
	FastCleanup    bool
	ArchivePrivate bool
	Constraints    []string
	BuildURL       string
	// Archives (sources.list lines) and TrustedKeys (base64 keys) are nil
	// when not given.
	Archives    []string
	TrustedKeys []string
}

// ParseCommonArgs reads the common arguments.
func ParseCommonArgs(p *ArgParser) CommonArgs {
	c := CommonArgs{
		Series:         p.RequiredString("series"),
		ArchTag:        p.String("arch_tag"),
		ImageType:      p.String("image_type"),
		FastCleanup:    p.Bool("fast_cleanup"),
		ArchivePrivate: p.Bool("archive_private"),
		Constraints:    p.StringList("builder_constraints"),
		BuildURL:       p.String("build_url"),
		Archives:       p.StringList("archives"),
		TrustedKeys:    p.StringList("trusted_keys"),
	}
	if c.Series != "" && !seriesName().MatchString(c.Series) {
		p.Fail("series", "must be a series name like \"noble\" (lower-case letters, digits, '-')")
	}
	if c.ArchTag != "" && !archName().MatchString(c.ArchTag) {
		p.Fail("arch_tag", "must be an architecture tag like \"amd64\"")
	}
	switch c.ImageType {
	case "":
		c.ImageType = "chroot"
	case "chroot", "lxd":
	default:
		p.Fail("image_type", "must be \"chroot\" or \"lxd\", not %q", c.ImageType)
	}
	// An empty archives list makes the reference fail its sources step
	// (an argparse error → CHROOTFAIL); refusing it up front loses nothing.
	if c.Archives != nil && len(c.Archives) == 0 {
		p.Fail("archives", "must not be an empty array (leave it out instead)")
	}
	for i, k := range c.TrustedKeys {
		if _, err := decodeBase64Key(k); err != nil {
			p.Fail("trusted_keys", "element %d: %v", i, err)
		}
	}
	for i, line := range c.Archives {
		if strings.ContainsAny(line, "\n\r") || strings.TrimSpace(line) == "" {
			p.Fail("archives", "element %d must be one non-empty sources.list line", i)
		}
	}
	return c
}

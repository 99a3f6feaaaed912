package debian

import (
	"errors"
	"fmt"
	"strings"
)

// Relations is a parsed package relationship field such as Build-Depends:
// an AND of groups, each group an OR of alternatives (python-debian's
// PkgRelation.parse_relations result).
type Relations [][]Relation

// Relation is one alternative of a relationship field, e.g.
// "foo:any (>= 1.0) [amd64 !i386] <!nocheck> <stage1 cross>".
type Relation struct {
	Name string
	// ArchQual is the multiarch qualifier after ':' ("any", "native",
	// "amd64"), empty when absent.
	ArchQual string
	// Version is nil for an unversioned relation.
	Version *VersionConstraint
	// Arch is the architecture restriction list in brackets, nil when
	// absent. It is never empty when present.
	Arch []ArchRestriction
	// Restrictions is the build-profile restriction formula: an OR of
	// <...> groups, each an AND of terms. Nil when absent.
	Restrictions [][]Restriction
}

// VersionConstraint is the parenthesised part of a relation.
type VersionConstraint struct {
	// Op is one of "<<", "<=", "=", ">=", ">>", or the obsolete "<" and
	// ">" that apt prints in its unmet-dependency messages.
	Op      string
	Version string
}

// ArchRestriction is one entry of an architecture list: Wildcard
// ("amd64", "linux-any", "any-i386") and whether it is positive (Enabled)
// or negated with '!'.
type ArchRestriction struct {
	Enabled  bool
	Wildcard string
}

// Restriction is one term of a build-profile restriction: Profile (always
// lower case, as python-debian lowercases it) and whether it is positive
// (Enabled) or negated with '!'.
type Restriction struct {
	Enabled bool
	Profile string
}

// maxRelationsLen bounds the input of ParseRelations. Real Build-Depends
// fields are a few KiB; Packages files carry Provides lines of a few
// hundred KiB (Rust feature packages).
const maxRelationsLen = 4 << 20

// ParseRelations parses a relationship field. It accepts what python-debian's
// PkgRelation.parse_relations parses into structure, but where
// python-debian falls back to returning an unparsable alternative "raw" as a
// package name (or raises on "[ ]"), ParseRelations returns an error.
// Whitespace-only input gives no relations, and empty groups after the
// last comma are ignored (as dpkg does), so "foo, " is "foo".
func ParseRelations(s string) (Relations, error) {
	if len(s) > maxRelationsLen {
		return nil, fmt.Errorf("relationship field is too long (%d bytes)", len(s))
	}
	s = trimSpace(s)
	if s == "" {
		return nil, nil
	}
	groups := strings.Split(s, ",")
	for len(groups) > 1 && trimSpace(groups[len(groups)-1]) == "" {
		groups = groups[:len(groups)-1]
	}
	rels := make(Relations, 0, len(groups))
	for _, g := range groups {
		var alts []Relation
		for _, a := range strings.Split(g, "|") {
			r, err := parseRelation(trimSpace(a))
			if err != nil {
				return nil, err
			}
			alts = append(alts, r)
		}
		rels = append(rels, alts)
	}
	return rels, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func trimSpace(s string) string {
	i, j := 0, len(s)
	for i < j && isSpace(s[i]) {
		i++
	}
	for j > i && isSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}

// relScanner walks one alternative.
type relScanner struct {
	s   string
	pos int
}

func (p *relScanner) skipSpace() {
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
}

func (p *relScanner) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

// span consumes the longest run of bytes accepted by ok.
func (p *relScanner) span(ok func(byte) bool) string {
	start := p.pos
	for p.pos < len(p.s) && ok(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos]
}

func isNameChar(c byte) bool     { return isAlnum(c) || c == '.' || c == '+' || c == '-' }
func isArchQualChar(c byte) bool { return isAlnum(c) || c == '-' }
func isRelopChar(c byte) bool    { return c == '<' || c == '=' || c == '>' }
func isRelVersionChar(c byte) bool {
	return isAlnum(c) || c == ':' || c == '-' || c == '+' || c == '~' || c == '.'
}
func isArchChar(c byte) bool    { return isAlnum(c) || c == '_' || c == '-' }
func isProfileChar(c byte) bool { return isAlnum(c) || c == '.' || c == '+' || c == '_' || c == '-' }

var validOps = map[string]bool{"<<": true, "<=": true, "=": true, ">=": true, ">>": true, "<": true, ">": true}

func parseRelation(s string) (Relation, error) {
	var r Relation
	if s == "" {
		return r, errors.New("empty relation")
	}
	fail := func(format string, args ...any) (Relation, error) {
		return Relation{}, fmt.Errorf("cannot parse relation %q: %s", s, fmt.Sprintf(format, args...))
	}
	p := &relScanner{s: s}
	if !isAlnum(p.peek()) {
		return fail("package name must start with a letter or digit")
	}
	r.Name = p.span(isNameChar)
	if p.peek() == ':' {
		p.pos++
		if !isAlnum(p.peek()) {
			return fail("bad architecture qualifier")
		}
		r.ArchQual = p.span(isArchQualChar)
	}
	p.skipSpace()
	if p.peek() == '(' {
		p.pos++
		p.skipSpace()
		op := p.span(isRelopChar)
		if !validOps[op] {
			return fail("bad version operator %q", op)
		}
		p.skipSpace()
		v := p.span(isRelVersionChar)
		if v == "" {
			return fail("missing version")
		}
		p.skipSpace()
		if p.peek() != ')' {
			return fail("expected ')' after version")
		}
		p.pos++
		r.Version = &VersionConstraint{Op: op, Version: v}
		p.skipSpace()
	}
	if p.peek() == '[' {
		p.pos++
		for {
			p.skipSpace()
			if p.peek() == ']' {
				p.pos++
				break
			}
			enabled := true
			if p.peek() == '!' {
				enabled = false
				p.pos++
			}
			w := p.span(isArchChar)
			if w == "" {
				return fail("bad architecture list")
			}
			r.Arch = append(r.Arch, ArchRestriction{Enabled: enabled, Wildcard: w})
			if c := p.peek(); c != ']' && !isSpace(c) {
				return fail("bad architecture list")
			}
		}
		if len(r.Arch) == 0 {
			return fail("empty architecture list")
		}
		p.skipSpace()
	}
	for p.peek() == '<' {
		p.pos++
		var group []Restriction
		for {
			p.skipSpace()
			if p.peek() == '>' {
				p.pos++
				break
			}
			enabled := true
			if p.peek() == '!' {
				enabled = false
				p.pos++
			}
			if !isAlnum(p.peek()) {
				return fail("bad build profile restriction")
			}
			prof := strings.ToLower(p.span(isProfileChar))
			group = append(group, Restriction{Enabled: enabled, Profile: prof})
			if c := p.peek(); c != '>' && !isSpace(c) {
				return fail("bad build profile restriction")
			}
		}
		if len(group) == 0 {
			return fail("empty build profile restriction")
		}
		r.Restrictions = append(r.Restrictions, group)
		p.skipSpace()
	}
	if p.pos != len(s) {
		return fail("unexpected %q", s[p.pos:])
	}
	return r, nil
}

// String formats the relation as python-debian's PkgRelation.str does.
func (r Relation) String() string {
	var b strings.Builder
	r.format(&b)
	return b.String()
}

func (r Relation) format(b *strings.Builder) {
	b.WriteString(r.Name)
	if r.ArchQual != "" {
		b.WriteString(":")
		b.WriteString(r.ArchQual)
	}
	if r.Version != nil {
		fmt.Fprintf(b, " (%s %s)", r.Version.Op, r.Version.Version)
	}
	if r.Arch != nil {
		b.WriteString(" [")
		for i, a := range r.Arch {
			if i > 0 {
				b.WriteString(" ")
			}
			if !a.Enabled {
				b.WriteString("!")
			}
			b.WriteString(a.Wildcard)
		}
		b.WriteString("]")
	}
	for _, g := range r.Restrictions {
		b.WriteString(" <")
		for i, t := range g {
			if i > 0 {
				b.WriteString(" ")
			}
			if !t.Enabled {
				b.WriteString("!")
			}
			b.WriteString(t.Profile)
		}
		b.WriteString(">")
	}
}

// String formats the relations as python-debian's PkgRelation.str does:
// alternatives joined with " | ", groups with ", ".
func (rs Relations) String() string {
	var b strings.Builder
	for i, g := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		for j, r := range g {
			if j > 0 {
				b.WriteString(" | ")
			}
			r.format(&b)
		}
	}
	return b.String()
}

// Strip returns a copy without architecture qualifiers, architecture lists
// and build-profile restrictions, which Launchpad's build master cannot
// handle (launchpad-buildd's stripDependencies before stringification).
func (rs Relations) Strip() Relations {
	out := make(Relations, len(rs))
	for i, g := range rs {
		out[i] = make([]Relation, len(g))
		for j, r := range g {
			out[i][j] = Relation{Name: r.Name, Version: r.Version}
		}
	}
	return out
}

package builders

// The translation-domain rules of launchpad-buildd's pottery
// (lpbuildd/pottery/intltool.py): which variable of which build file names
// a PO directory's template, with autoconf (@X@) and make ($(X)) style
// substitutions one level deep. Pure logic over file contents, so that it
// can be table-tested and fuzzed; the in-target half (find, intltool-update)
// is in translationtemplates.go.

import (
	"regexp"
	"strings"
	"sync"
)

// PotConfigFile is a build file (configure.ac, Makefile.in.in, Makevars)
// read as the reference reads it: decoded as UTF-8 with invalid bytes
// replaced.
type PotConfigFile struct {
	content string
}

// NewPotConfigFile reads data as a config file.
func NewPotConfigFile(data []byte) PotConfigFile {
	return PotConfigFile{content: strings.ToValidUTF8(string(data), "\uFFFD")}
}

// stripPotQuotes removes one pair of matching outer quotes: single, double
// or square brackets.
func stripPotQuotes(s string) string {
	if len(s) < 2 {
		return s
	}
	for _, q := range [][2]string{{`"`, `"`}, {"'", "'"}, {"[", "]"}} {
		if strings.HasPrefix(s, q[0]) && strings.HasSuffix(s, q[1]) {
			return s[1 : len(s)-1]
		}
	}
	return s
}

// Variable is the value of the first "NAME = value" line (value up to the
// first white space), unquoted; ok is false when there is none.
func (c PotConfigFile) Variable(name string) (string, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `[ \t]*=[ \t]*([^\s]*)`)
	m := re.FindStringSubmatch(c.content)
	if m == nil {
		return "", false
	}
	return stripPotQuotes(m[1]), true
}

// FunctionParams are the comma-separated parameters of the first
// "NAME(...)" call at the start of a line, trimmed and unquoted.
func (c PotConfigFile) FunctionParams(name string) ([]string, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\(([^)]*)\)`)
	m := re.FindStringSubmatch(c.content)
	if m == nil {
		return nil, false
	}
	parts := strings.Split(m[1], ",")
	for i, p := range parts {
		parts[i] = stripPotQuotes(pyStrip(p))
	}
	return parts, true
}

// pyStrip is Python's str.strip(): Unicode white space on both ends.
func pyStrip(s string) string { return strings.TrimSpace(s) }

// acPackageName is AC_PACKAGE_NAME from AC_INIT: its first parameter, or
// its fourth when it has four or more; none with fewer than two.
func (c PotConfigFile) acPackageName() (string, bool) {
	params, ok := c.FunctionParams("AC_INIT")
	if !ok || len(params) < 2 {
		return "", false
	}
	if len(params) < 4 {
		return params[0], true
	}
	return params[3], true
}

var (
	autoconfSubst = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`@([^@]+)@`) })
	makefileSubst = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$\(?([^\s\)]+)\)?`) })
)

// potSubstitution is one substitution found in a variable's value.
type potSubstitution struct {
	text        string
	replacement string // what is replaced, e.g. "@PACKAGE@" or "$(PACKAGE)"
	name        string // the variable substituted
}

func findPotSubstitution(text string) (potSubstitution, bool) {
	m := autoconfSubst().FindStringSubmatch(text)
	if m == nil {
		m = makefileSubst().FindStringSubmatch(text)
	}
	if m == nil {
		return potSubstitution{}, false
	}
	return potSubstitution{text: text, replacement: m[0], name: m[1]}, true
}

// replace is Python's str.replace: every occurrence.
func (s potSubstitution) replace(value string) string {
	return strings.ReplaceAll(s.text, s.replacement, value)
}

// trySubstitution looks the substitution's variable up in the files read
// so far, the latest first (not in the latest one when the variable is the
// one being defined); PACKAGE falls back on AC_INIT.
func trySubstitution(files []PotConfigFile, varname string, s potSubstitution) (string, bool) {
	if varname == s.name {
		files = files[:len(files)-1]
	}
	for i := len(files) - 1; i >= 0; i-- {
		v, ok := files[i].Variable(s.name)
		if !ok && s.name == "PACKAGE" {
			v, ok = files[i].acPackageName()
		}
		if ok {
			return s.replace(v), true
		}
	}
	return "", false
}

// potDomainLocations are where a PO directory's domain is looked for, in
// order, relative to it: a file, its variable, and whether a later file
// may still override a value found there.
var potDomainLocations = []struct {
	file, variable string
	keepTrying     bool
}{
	{"../configure.ac", "GETTEXT_PACKAGE", true},
	{"../configure.in", "GETTEXT_PACKAGE", true},
	{"Makefile.in.in", "GETTEXT_PACKAGE", false},
	{"Makevars", "DOMAIN", false},
}

// PotDomain is the reference's get_translation_domain for a PO directory:
// read(name) returns the file at name relative to the directory (ok false
// when it does not exist). found is false when no file defines a domain or
// a substitution cannot be resolved.
func PotDomain(read func(name string) (data []byte, ok bool)) (domain string, found bool) {
	var files []PotConfigFile
	for _, loc := range potDomainLocations {
		data, ok := read(loc.file)
		if !ok {
			continue
		}
		files = append(files, NewPotConfigFile(data))
		if v, ok := files[len(files)-1].Variable(loc.variable); ok {
			domain, found = v, true
			if v == "AC_PACKAGE_NAME" {
				domain, found = files[len(files)-1].acPackageName()
			} else if s, ok := findPotSubstitution(v); ok {
				domain, found = trySubstitution(files, loc.variable, s)
				if !found {
					// No substitution: the setup is broken.
					break
				}
			}
		}
		if found && !loc.keepTrying {
			break
		}
	}
	return domain, found
}

// EffectivePotDomain is the template name generate_pot uses: the domain,
// or "messages" when there is none or it is blank.
func EffectivePotDomain(domain string, found bool) string {
	if !found || strings.TrimSpace(domain) == "" {
		return "messages"
	}
	return domain
}

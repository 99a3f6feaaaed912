package debian

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
)

// CompareVersions compares two Debian version strings with dpkg's
// algorithm (lib/dpkg/version.c dpkg_version_compare): the epoch
// numerically, then the upstream version and the revision with verrevcmp,
// where '~' sorts before everything (even the end of the string), letters
// sort before the other non-digit characters and runs of digits compare as
// numbers. It returns -1, 0 or +1.
//
// It never fails: a string that is not a valid version (see ValidVersion)
// is still split deterministically (a non-numeric "epoch" is treated as
// part of the upstream version) so that the result is a total preorder over
// all strings. launchpad-buildd compares with apt_pkg.version_compare, which
// agrees with dpkg on every valid version.
func CompareVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if c := compareDigits(ea, eb); c != 0 {
		return c
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return sign(c)
	}
	return sign(verrevcmp(ra, rb))
}

// splitVersion splits v into epoch (digits, possibly empty meaning 0),
// upstream version and revision, as dpkg's parseversion does: the epoch
// ends at the first ':', the revision starts after the last '-'.
func splitVersion(v string) (epoch, upstream, revision string) {
	if i := strings.IndexByte(v, ':'); i >= 0 && allDigits(v[:i]) {
		epoch, v = v[:i], v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// compareDigits compares two decimal digit strings of any length by value;
// the empty string counts as zero.
func compareDigits(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return sign(len(a) - len(b))
	}
	return strings.Compare(a, b)
}

// order is dpkg's character weight for the non-digit parts of a version.
// The end of the string and a digit both weigh 0.
func order(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case isAlpha(c):
		return int(c)
	case c == '~':
		return -1
	}
	return int(c) + 256
}

// verrevcmp is dpkg's comparison of an upstream version or a revision.
func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(a, i), order(b, j)
			if ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for i < len(a) && j < len(b) && isDigit(a[i]) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return firstDiff
		}
	}
	return 0
}

// ValidVersion reports whether v is a valid Debian version, with the checks
// of dpkg's parseversion, treating its warnings (upstream version not
// starting with a digit, invalid characters) as errors. Unlike dpkg it
// also refuses leading and trailing whitespace.
func ValidVersion(v string) error {
	if v == "" {
		return errors.New("version string is empty")
	}
	if strings.ContainsAny(v, " \t\n\r\f\v") {
		return fmt.Errorf("version %q contains whitespace", v)
	}
	rest := v
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch := v[:i]
		switch {
		case epoch == "":
			return fmt.Errorf("epoch in version %q is empty", v)
		case !allDigits(epoch):
			return fmt.Errorf("epoch in version %q is not a number", v)
		case compareDigits(epoch, fmt.Sprint(math.MaxInt32)) > 0:
			return fmt.Errorf("epoch in version %q is too big", v)
		}
		rest = v[i+1:]
		if rest == "" {
			return fmt.Errorf("nothing after colon in version %q", v)
		}
	}
	upstream, revision, hasRevision := rest, "", false
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		upstream, revision, hasRevision = rest[:i], rest[i+1:], true
		if revision == "" {
			return fmt.Errorf("revision number in version %q is empty", v)
		}
	}
	if upstream == "" {
		return fmt.Errorf("upstream version in %q is empty", v)
	}
	if !isDigit(upstream[0]) {
		return fmt.Errorf("version %q does not start with a digit", v)
	}
	for i := 0; i < len(upstream); i++ {
		if c := upstream[i]; !isAlnum(c) && !strings.ContainsRune(".-+~:", rune(c)) {
			return fmt.Errorf("invalid character %q in version %q", c, v)
		}
	}
	if hasRevision {
		for i := 0; i < len(revision); i++ {
			if c := revision[i]; !isAlnum(c) && !strings.ContainsRune(".+~", rune(c)) {
				return fmt.Errorf("invalid character %q in revision of version %q", c, v)
			}
		}
	}
	return nil
}

// pythonDebianVersionRE is python-debian's BaseVersion.re_valid_version,
// which launchpad-buildd applies (through debian_support.Version) to every
// available version it compares in relationMatches.
var pythonDebianVersionRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:(\d+):)?([A-Za-z0-9.+:~-]+?)(?:-[A-Za-z0-9+.~]+)?$`)
})

// checkArchiveVersion applies python-debian's looser version check: an
// invalid version there raises ValueError and makes the dep-wait analysis
// fail.
func checkArchiveVersion(v string) error {
	m := pythonDebianVersionRE().FindStringSubmatch(v)
	if m == nil || (m[1] == "" && strings.Contains(m[2], ":")) {
		return fmt.Errorf("invalid version string %q", v)
	}
	return nil
}

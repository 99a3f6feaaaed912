package debian

//go:generate go run gen_archtable.go

import "strings"

// ArchMatches reports whether the Debian architecture arch matches the
// architecture wildcard, with the answer of
// `dpkg-architecture -a<arch> -i<wildcard>` (Dpkg::Arch::debarch_is) for
// dpkg 1.21's tables (embedded in archtable.go): "any" matches every
// architecture; "<os>-any", "any-<cpu>", "<abi>-<libc>-<os>-<cpu>" tuples
// with "any" parts match component-wise; other names match architectures
// with the same tuple ("linux-amd64" is "amd64"). "all" is not an
// architecture here: it matches nothing, as dpkg-architecture -aall fails.
// An architecture dpkg-architecture does not know matches nothing.
func ArchMatches(arch, wildcard string) bool {
	real, ok := debarchTuple(arch)
	if !ok {
		// dpkg-architecture: "unknown Debian architecture", exit 255.
		return false
	}
	if wildcard == arch || wildcard == "any" {
		return true
	}
	alias, ok := wildcardTuple(wildcard)
	if !ok {
		return false
	}
	for i := range real {
		if alias[i] != "any" && alias[i] != real[i] {
			return false
		}
	}
	return true
}

// debarchTuple is Dpkg::Arch::debarch_to_debtuple, including its quirk
// that "linux-<x>..." is looked up as <x> (up to the next '-').
func debarchTuple(arch string) ([4]string, bool) {
	if rest, ok := strings.CutPrefix(arch, "linux-"); ok {
		arch, _, _ = strings.Cut(rest, "-")
	}
	t, ok := archTuples()[arch]
	if !ok {
		return [4]string{}, false
	}
	p := strings.SplitN(t, "-", 4)
	if len(p) != 4 {
		return [4]string{}, false
	}
	return [4]string{p[0], p[1], p[2], p[3]}, true
}

// wildcardTuple is Dpkg::Arch::debwildcard_to_debtuple: a wildcard with an
// "any" part is padded on the left with "any" to four parts; anything else
// is looked up as an architecture.
func wildcardTuple(w string) ([4]string, bool) {
	if w == "" {
		return [4]string{}, false
	}
	// Perl's split /-/, $w, 4 keeps empty fields when given a limit.
	p := strings.SplitN(w, "-", 4)
	hasAny := false
	for _, s := range p {
		if s == "any" {
			hasAny = true
		}
	}
	if !hasAny {
		return debarchTuple(w)
	}
	var t [4]string
	for i := range t {
		t[i] = "any"
	}
	if len(p) >= 2 {
		copy(t[4-len(p):], p)
	}
	return t, true
}

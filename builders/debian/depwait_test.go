package debian

import (
	"strings"
	"testing"
)

func avail(entries map[string][]string) *Available {
	a := NewAvailable()
	for name, versions := range entries {
		for _, v := range versions {
			if v == "" {
				a.AddUnversioned(name)
			} else {
				a.Add(name, v)
			}
		}
	}
	return a
}

func TestAvailablePackages(t *testing.T) {
	// test_getAvailablePackages, plus disjunctions, other operators and
	// multiarch qualifiers in Provides.
	main := "Package: foo\nVersion: 1.0\nProvides: virt\n\nPackage: bar\nVersion: 2.0\nProvides: versioned-virt (= 3.0)\n\n" +
		"Package: baz\nVersion: 1\nProvides: alt1 | alt2, ge-virt (>= 1), any-virt:any (= 4), two, three (= 3)\n"
	proposed := "Package: foo\nVersion: 1.1\n"
	a, err := AvailablePackages(strings.NewReader(main), strings.NewReader(proposed))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		versions    string
		unversioned bool
		has         bool
	}{
		{"foo", "1.0 1.1", false, true},
		{"bar", "2.0", false, true},
		{"virt", "", true, true},
		{"versioned-virt", "3.0", false, true},
		{"baz", "1", false, true},
		{"alt1", "", false, false},
		{"alt2", "", false, false},
		{"ge-virt", "", false, false},
		{"any-virt", "4", false, true},
		{"two", "", true, true},
		{"three", "3", false, true},
		{"missing", "", false, false},
	} {
		v, u := a.Versions(c.name)
		if strings.Join(v, " ") != c.versions || u != c.unversioned || a.Has(c.name) != c.has {
			t.Errorf("%s: versions %q unversioned %v has %v; want %q %v %v", c.name, v, u, a.Has(c.name), c.versions, c.unversioned, c.has)
		}
	}
	for name, in := range map[string]string{
		"no package":   "Version: 1\n",
		"no version":   "Package: a\n",
		"bad provides": "Package: a\nVersion: 1\nProvides: (x\n",
		"bad control":  "Package: a\n b\nVersion 1\n",
	} {
		if _, err := AvailablePackages(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRelationMatches(t *testing.T) {
	rel := func(s string) Relation { return mustParse(t, s)[0][0] }
	for _, c := range []struct {
		dep   string
		avail map[string][]string
		arch  string
		want  bool
	}{
		// test_relationMatches_missing_package, _unversioned
		{"foo (>= 1)", map[string][]string{"bar": {"2"}}, "i386", false},
		{"foo", map[string][]string{"foo": {"1"}}, "i386", true},
		// test_relationMatches_versioned
		{"foo (<< 1)", map[string][]string{"foo": {"1"}}, "i386", false},
		{"foo (<< 1.1)", map[string][]string{"foo": {"1"}}, "i386", true},
		{"foo (<= 0.9)", map[string][]string{"foo": {"1"}}, "i386", false},
		{"foo (<= 1)", map[string][]string{"foo": {"1"}}, "i386", true},
		{"foo (= 1)", map[string][]string{"foo": {"1"}}, "i386", true},
		{"foo (= 2)", map[string][]string{"foo": {"1"}}, "i386", false},
		{"foo (>= 1)", map[string][]string{"foo": {"1"}}, "i386", true},
		{"foo (>= 1.1)", map[string][]string{"foo": {"1"}}, "i386", false},
		{"foo (>> 0.9)", map[string][]string{"foo": {"1"}}, "i386", true},
		{"foo (>> 1)", map[string][]string{"foo": {"1"}}, "i386", false},
		// test_relationMatches_multiple_versions
		{"foo (= 1)", map[string][]string{"foo": {"1", "1.1"}}, "i386", true},
		{"foo (= 1.1)", map[string][]string{"foo": {"1", "1.1"}}, "i386", true},
		{"foo (= 2)", map[string][]string{"foo": {"1", "1.1"}}, "i386", false},
		// test_relationMatches_unversioned_virtual
		{"foo", map[string][]string{"foo": {""}}, "i386", true},
		{"foo (>= 1)", map[string][]string{"foo": {""}}, "i386", false},
		// Architecture lists: a dependency for other architectures is
		// ignored ("matches"); "!other" allows this one.
		{"foo [amd64]", nil, "i386", true},
		{"foo [amd64]", nil, "amd64", false},
		{"foo [any-i386]", nil, "i386", false},
		{"foo [!amd64]", nil, "i386", false},
		{"foo [!i386]", nil, "i386", true},
		{"foo [!amd64 i386]", nil, "i386", false},
		{"foo [!i386 linux-any]", nil, "i386", true},
		{"foo [!amd64 !i386]", nil, "i386", true},
		{"foo [linux-any]", nil, "hurd-i386", true},
		// Build profiles: nothing is enabled.
		{"foo <!nocheck>", nil, "i386", false},
		{"foo <stage1>", nil, "i386", true},
		{"foo <stage1 !nocheck>", nil, "i386", true},
		{"foo <stage1> <!nocheck>", nil, "i386", false},
		{"foo <!nocheck !cross>", nil, "i386", false},
	} {
		got, err := relationMatches(rel(c.dep), avail(c.avail), c.arch)
		if err != nil || got != c.want {
			t.Errorf("relationMatches(%q, %v, %s) = %v, %v; want %v", c.dep, c.avail, c.arch, got, err, c.want)
		}
	}
	// Errors: the reference raises (KeyError on the operator, ValueError on
	// the version), which fails the analysis.
	for _, c := range []struct {
		dep   string
		avail map[string][]string
	}{
		{"foo (< 2)", map[string][]string{"foo": {"1"}}},
		{"foo (>= 2)", map[string][]string{"foo": {"1 0"}}},
		{"foo (>= 2)", map[string][]string{"foo": {"a:1"}}},
	} {
		if _, err := relationMatches(rel(c.dep), avail(c.avail), "amd64"); err == nil {
			t.Errorf("relationMatches(%q, %v) did not fail", c.dep, c.avail)
		}
	}
}

func TestAnalyseDepWait(t *testing.T) {
	for _, c := range []struct {
		name  string
		deps  string
		avail map[string][]string
		arch  string
		want  string
	}{
		{"all satisfied", "debhelper, foo (>= 1)", map[string][]string{"debhelper": {"9"}, "foo": {"1"}}, "i386", ""},
		{"unsatisfied", "debhelper (>= 9~), foo (>= 1), bar (<< 1) | bar (>= 2)",
			map[string][]string{"debhelper": {"9"}, "bar": {"1", "1.5"}}, "i386", "foo (>= 1), bar (<< 1) | bar (>= 2)"},
		{"strips arch restrictions", "foo (>= 1) [any-i386], bar (>= 1) [amd64]", nil, "i386", "foo (>= 1)"},
		{"strips arch qualifications", "foo:any, bar:any", map[string][]string{"bar": {"1"}}, "i386", "foo"},
		{"strips restrictions", "foo <!nocheck>, bar <stage1>", nil, "i386", "foo"},
		{"provides", "virt, versioned-virt (>= 3), missing-virt", map[string][]string{"virt": {""}, "versioned-virt": {"3.0"}}, "amd64", "missing-virt"},
		{"nothing", "", nil, "amd64", ""},
	} {
		got, err := AnalyseDepWait(mustParse(t, c.deps), avail(c.avail), c.arch)
		if err != nil || got != c.want {
			t.Errorf("%s: AnalyseDepWait = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := AnalyseDepWait(mustParse(t, "foo (< 2)"), avail(map[string][]string{"foo": {"1"}}), "amd64"); err == nil {
		t.Error("AnalyseDepWait with an unsupported operator did not fail")
	}
	// An alternative that matches first hides a later one that would fail.
	if got, err := AnalyseDepWait(mustParse(t, "foo | bar (< 2)"), avail(map[string][]string{"foo": {"1"}}), "amd64"); err != nil || got != "" {
		t.Errorf("short-circuit: %q, %v", got, err)
	}
}

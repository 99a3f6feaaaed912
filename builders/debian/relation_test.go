package debian

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestParseRelations(t *testing.T) {
	v := func(op, ver string) *VersionConstraint { return &VersionConstraint{Op: op, Version: ver} }
	for _, c := range []struct {
		in   string
		want Relations
		str  string // String(); "" means the input itself
	}{
		{"foo", Relations{{{Name: "foo"}}}, ""},
		{"debhelper (>= 9~), bar | baz", Relations{
			{{Name: "debhelper", Version: v(">=", "9~")}},
			{{Name: "bar"}, {Name: "baz"}},
		}, ""},
		{"ebadver:any (>= 3.0)", Relations{{{Name: "ebadver", ArchQual: "any", Version: v(">=", "3.0")}}}, ""},
		{"foo (>= 1) [any-i386], bar (>= 1) [amd64]", Relations{
			{{Name: "foo", Version: v(">=", "1"), Arch: []ArchRestriction{{true, "any-i386"}}}},
			{{Name: "bar", Version: v(">=", "1"), Arch: []ArchRestriction{{true, "amd64"}}}},
		}, ""},
		{"foo [!amd64 !i386]", Relations{{{Name: "foo", Arch: []ArchRestriction{{false, "amd64"}, {false, "i386"}}}}}, ""},
		{"foo <!nocheck>, bar <stage1>", Relations{
			{{Name: "foo", Restrictions: [][]Restriction{{{false, "nocheck"}}}}},
			{{Name: "bar", Restrictions: [][]Restriction{{{true, "stage1"}}}}},
		}, ""},
		{"foo <!Nocheck !cross> <stage1>", Relations{{{Name: "foo", Restrictions: [][]Restriction{
			{{false, "nocheck"}, {false, "cross"}}, {{true, "stage1"}},
		}}}}, "foo <!nocheck !cross> <stage1>"},
		{"  foo(>=1.0)[amd64]<nocheck>  ,\n bar:native  ", Relations{
			{{Name: "foo", Version: v(">=", "1.0"), Arch: []ArchRestriction{{true, "amd64"}}, Restrictions: [][]Restriction{{{true, "nocheck"}}}}},
			{{Name: "bar", ArchQual: "native"}},
		}, "foo (>= 1.0) [amd64] <nocheck>, bar:native"},
		{"ebadver (< 2.0)", Relations{{{Name: "ebadver", Version: v("<", "2.0")}}}, ""},
		{"foo ( = 1:2.3-4 )", Relations{{{Name: "foo", Version: v("=", "1:2.3-4")}}}, "foo (= 1:2.3-4)"},
		{"foo,", Relations{{{Name: "foo"}}}, "foo"},
		{"", nil, ""},
		{" \n ", nil, ""},
		{"libc6-dev | libc6.1-dev | libc0.3-dev", Relations{{{Name: "libc6-dev"}, {Name: "libc6.1-dev"}, {Name: "libc0.3-dev"}}}, ""},
		{"g++ (>> 4:12)", Relations{{{Name: "g++", Version: v(">>", "4:12")}}}, ""},
	} {
		got, err := ParseRelations(c.in)
		if err != nil {
			t.Errorf("ParseRelations(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseRelations(%q) = %#v, want %#v", c.in, got, c.want)
		}
		str := c.str
		if str == "" && c.want != nil {
			str = c.in
		}
		if s := got.String(); s != str {
			t.Errorf("ParseRelations(%q).String() = %q, want %q", c.in, s, str)
		}
	}
}

func TestParseRelationsErrors(t *testing.T) {
	for _, in := range []string{
		"(foo)", "foo (>= 1", "foo (>= )", "foo (=> 1)", "foo (!= 1)", "foo ()",
		"foo [ ]", "foo []", "foo [amd64", "foo [am!d64]", "foo [!]",
		"foo <>", "foo < >", "foo <!>", "foo <a> b <c>", "foo <stage1",
		"foo:", "foo: any", "foo bar", "foo <stage1> [amd64]", "foo, , bar", ", foo",
		"foo |", "| foo", "föo", "foo (>= 1) extra", "foo (>= 1.0 2.0)",
	} {
		if r, err := ParseRelations(in); err == nil {
			t.Errorf("ParseRelations(%q) = %v, want an error", in, r)
		}
	}
	if _, err := ParseRelations(strings.Repeat("a", maxRelationsLen+1)); err == nil {
		t.Error("ParseRelations accepted an oversized field")
	}
}

func TestRelationsStrip(t *testing.T) {
	for in, want := range map[string]string{
		"ebadver:any (>= 3.0)":                     "ebadver (>= 3.0)",
		"foo:any, bar:native [amd64] <!nocheck>":   "foo, bar",
		"foo (<< 1) [i386] | bar (>= 2) <stage1>":  "foo (<< 1) | bar (>= 2)",
		"libfeas-nonexistent-dev:any (>= 3.0)":     "libfeas-nonexistent-dev (>= 3.0)",
		"a <x> <y>, b [!amd64 linux-any], c:amd64": "a, b, c",
	} {
		r, err := ParseRelations(in)
		if err != nil {
			t.Fatalf("ParseRelations(%q): %v", in, err)
		}
		if got := r.Strip().String(); got != want {
			t.Errorf("Strip(%q) = %q, want %q", in, got, want)
		}
		if r.String() != mustParse(t, r.String()).String() {
			t.Errorf("%q does not round-trip", in)
		}
	}
}

func mustParse(t *testing.T, s string) Relations {
	t.Helper()
	r, err := ParseRelations(s)
	if err != nil {
		t.Fatalf("ParseRelations(%q): %v", s, err)
	}
	return r
}

// relationOracleInputs are fed to python-debian to check that ParseRelations
// and String agree with PkgRelation.parse_relations and PkgRelation.str.
var relationOracleInputs = []string{
	"foo", "foo (>= 1.0)", "foo:any (>= 3.0)", "debhelper (>= 9~), bar | baz",
	"foo (>= 1) [any-i386], bar (>= 1) [amd64]", "foo [!amd64 !i386]", "foo <!nocheck>, bar <stage1>",
	"foo <!Nocheck !cross> <stage1>", "  foo(>=1.0)[amd64]<nocheck>  ,\n bar:native  ",
	"ebadver (< 2.0)", "foo ( = 1:2.3-4 )", "a|b|c", "a , b , c", "x [linux-any] <!stage1> <!nocheck>",
	"libc6-dev [!hurd-any] | libc0.3-dev [hurd-any]", "foo:amd64 [ amd64 ]",
}

// TestParseRelationsPythonDebian compares with python-debian when it is
// installed (python3-debian).
func TestParseRelationsPythonDebian(t *testing.T) {
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import debian.deb822").Run() != nil {
		t.Skip("python3-debian not installed")
	}
	in, _ := json.Marshal(relationOracleInputs)
	cmd := exec.Command(py, "-c", `
import json, sys
from debian.deb822 import PkgRelation
out = []
for s in json.load(sys.stdin):
    rels = PkgRelation.parse_relations(s)
    stripped = [[dict(d, arch=None, archqual=None, restrictions=None) for d in g] for g in rels]
    out.append([PkgRelation.str(rels), PkgRelation.str(stripped)])
json.dump(out, sys.stdout)
`)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want [][2]string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for i, s := range relationOracleInputs {
		r := mustParse(t, s)
		if got := r.String(); got != want[i][0] {
			t.Errorf("String(%q) = %q, python-debian %q", s, got, want[i][0])
		}
		if got := r.Strip().String(); got != want[i][1] {
			t.Errorf("Strip(%q) = %q, python-debian %q", s, got, want[i][1])
		}
	}
}

package builders

import (
	"strings"
	"testing"
)

// The cases of lpbuildd/pottery/tests/test_intltool.py's domain tests,
// as file contents rather than tarballs.
func TestPotDomain(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
		found bool
	}{
		{"nothing", map[string]string{}, "", false},
		{"configure.ac", map[string]string{"../configure.ac": "AC_INIT(x)\nGETTEXT_PACKAGE=packagename-ac\n"}, "packagename-ac", true},
		{"configure.in", map[string]string{"../configure.in": "GETTEXT_PACKAGE = 'packagename-in'\n"}, "packagename-in", true},
		{"configure.in with version substitution (the reference's test data)",
			map[string]string{"../configure.in": "VERSION=42\nGETTEXT_PACKAGE=domainname-in$VERSION\n",
				"Makefile.in.in": "# No package name here.\n", "Makevars": "DOMAIN=translationdomain\n"},
			"domainname-in42", true},
		{"make-style name runs greedily to white space: unresolved",
			map[string]string{"../configure.in": "GETTEXT_PACKAGE=\"$PACKAGE-$VERSION\"\nPACKAGE=x\n"}, "", false},
		{"Makefile.in.in", map[string]string{"Makefile.in.in": "GETTEXT_PACKAGE = packagename-in-in\n"}, "packagename-in-in", true},
		{"Makevars", map[string]string{"Makevars": "DOMAIN = packagename-makevars\n"}, "packagename-makevars", true},
		{"Makefile.in.in substitutes from configure.ac",
			map[string]string{"../configure.ac": "GETTEXT_PACKAGE=packagename-ac-in-in\n", "Makefile.in.in": "GETTEXT_PACKAGE = @GETTEXT_PACKAGE@\n"},
			"packagename-ac-in-in", true},
		{"substitution of the same name is not looked up in the same file",
			map[string]string{"Makefile.in.in": "GETTEXT_PACKAGE = @GETTEXT_PACKAGE@\n"}, "", false},
		{"same file substitutes another variable",
			map[string]string{"Makefile.in.in": "PACKAGE = packagename-in-in-same\nGETTEXT_PACKAGE = @PACKAGE@\n"}, "packagename-in-in-same", true},
		{"broken substitution stops", map[string]string{"Makefile.in.in": "GETTEXT_PACKAGE = @UNKNOWN@\n", "Makevars": "DOMAIN = later\n"}, "", false},
		{"AC_PACKAGE_NAME from AC_INIT first param",
			map[string]string{"../configure.ac": "AC_INIT([packagename-ac-name], [1.0])\nGETTEXT_PACKAGE=AC_PACKAGE_NAME\n"}, "packagename-ac-name", true},
		{"AC_PACKAGE_NAME from AC_INIT fourth param",
			map[string]string{"../configure.ac": "AC_INIT([Long Name], [1.0], [bugs@x], [tarname])\nGETTEXT_PACKAGE=AC_PACKAGE_NAME\n"}, "tarname", true},
		{"AC_PACKAGE_NAME with one param is none",
			map[string]string{"../configure.ac": "AC_INIT([only])\nGETTEXT_PACKAGE=AC_PACKAGE_NAME\n"}, "", false},
		{"PACKAGE falls back on AC_INIT",
			map[string]string{"../configure.ac": "AC_INIT(pkg-init, 2.0)\nGETTEXT_PACKAGE=$(PACKAGE)\n"}, "pkg-init", true},
		{"configure.ac keeps trying, Makefile.in.in wins",
			map[string]string{"../configure.ac": "GETTEXT_PACKAGE=from-ac\n", "Makefile.in.in": "GETTEXT_PACKAGE = from-in-in\n", "Makevars": "DOMAIN = from-makevars\n"},
			"from-in-in", true},
		{"value stops at white space", map[string]string{"Makevars": "DOMAIN =\tname rest\n"}, "name", true},
		{"indented is not a definition", map[string]string{"Makevars": "  DOMAIN = x\n"}, "", false},
		{"invalid UTF-8 replaced", map[string]string{"Makevars": "DOMAIN = a\xffb\n"}, "a\uFFFDb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := PotDomain(func(name string) ([]byte, bool) {
				s, ok := tt.files[name]
				return []byte(s), ok
			})
			if got != tt.want || found != tt.found {
				t.Errorf("PotDomain = %q, %v; want %q, %v", got, found, tt.want, tt.found)
			}
		})
	}
}

func TestEffectivePotDomain(t *testing.T) {
	for _, tt := range []struct {
		domain string
		found  bool
		want   string
	}{{"", false, "messages"}, {"  ", true, "messages"}, {"hello", true, "hello"}} {
		if got := EffectivePotDomain(tt.domain, tt.found); got != tt.want {
			t.Errorf("EffectivePotDomain(%q, %v) = %q, want %q", tt.domain, tt.found, got, tt.want)
		}
	}
}

func TestStripPotQuotes(t *testing.T) {
	for in, want := range map[string]string{`"a"`: "a", "'a'": "a", "[a]": "a", `"`: `"`, `"a'`: `"a'`, "": "", "[]": ""} {
		if got := stripPotQuotes(in); got != want {
			t.Errorf("stripPotQuotes(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzPotDomain: any build files give an answer without panicking, and a
// found domain comes from one of the files' text.
func FuzzPotDomain(f *testing.F) {
	f.Add("AC_INIT([a],[1])\nGETTEXT_PACKAGE=AC_PACKAGE_NAME\n", "GETTEXT_PACKAGE = @GETTEXT_PACKAGE@\n", "DOMAIN = $(PACKAGE)\n")
	f.Add("GETTEXT_PACKAGE=\"$PACKAGE-$VERSION\"\nPACKAGE=x\n", "", "DOMAIN = d\n")
	f.Fuzz(func(t *testing.T, ac, inin, makevars string) {
		files := map[string]string{"../configure.ac": ac, "Makefile.in.in": inin, "Makevars": makevars}
		d, found := PotDomain(func(name string) ([]byte, bool) {
			s, ok := files[name]
			return []byte(s), ok && s != ""
		})
		if found && strings.ContainsAny(d, " \t\n") {
			t.Errorf("domain %q holds white space", d)
		}
		_ = EffectivePotDomain(d, found)
	})
}

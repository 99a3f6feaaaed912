package aptarchive

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// Arch says which binary packages a source package builds.
type Arch int

const (
	ArchAny  Arch = iota // <name>, Architecture: any, ships /usr/bin/<name>
	ArchAll              // <name>-data, Architecture: all, ships /usr/share/<name>/greeting.txt
	ArchBoth             // both of them
)

// Rules is what debian/rules does.
type Rules int

const (
	// RulesOK builds: a tiny C program, compiled with gcc, lands in
	// /usr/bin/<name>.
	RulesOK Rules = iota
	// RulesFailBuild exits 1 in override_dh_auto_build (sbuild: Fail-Stage
	// build, rc 2).
	RulesFailBuild
	// RulesImplicitPointer builds, but hello.c calls two functions
	// returning char * that it never declares, so gcc 12 (-Wall) prints
	//   hello.c:5:19: warning: implicit declaration of function 'feas_greeting' [...]
	//   hello.c:5:19: warning: initialization of 'char *' from 'int' makes pointer from integer without a cast [...]
	//   hello.c:6:28: warning: implicit declaration of function 'feas_farewell' [...]
	//   hello.c:6:19: warning: cast to pointer from integer of different size [...]
	// lpbuildd's check-implicit-pointer-functions regexes only know the
	// pre-gcc-8 wording "initialization makes pointer from integer", so a
	// faithful port reports line 6 only:
	//   Function `feas_farewell' implicitly converted to pointer at hello.c:6
	// The compile runs with LC_ALL=C so the quotes are ASCII, the only form
	// that regex matches.
	RulesImplicitPointer
	// RulesImplicitPointerUTF8 is RulesImplicitPointer in the build's own
	// locale: under sbuild (LC_ALL=C.UTF-8) gcc quotes the function name as
	// ‘feas_greeting’ (U+2018/U+2019), which lpbuildd's regex misses.
	RulesImplicitPointerUTF8
)

// SourceSpec describes a source package for SourcePackage.
type SourceSpec struct {
	Name    string
	Version string // a Debian revision ("1.0-1") requires Format 3.0 (quilt)
	// Format is debian/source/format; default "3.0 (native)". With
	// "3.0 (quilt)" an orig tarball is made, so the .dsc lists an
	// .orig.tar.gz and a .debian.tar.xz (a filemap of three files).
	Format            string
	BuildDepends      string // appended to "debhelper-compat (= 13)"
	BuildDependsIndep string
	Arch              Arch
	Rules             Rules
	Distribution      string // the changelog's; default DefaultSuite
}

// Ready specs. Their Build-Depends are resolved against an archive made by
// Build (the DepWait ones fail there on purpose, sbuild rc 3).
var (
	Hello      = SourceSpec{Name: "feas-hello", Version: "1.0"}
	HelloQuilt = SourceSpec{Name: "feas-hello-quilt", Version: "1.0-1", Format: "3.0 (quilt)"}
	HelloIndep = SourceSpec{Name: "feas-hello-indep", Version: "1.0", Arch: ArchBoth, BuildDependsIndep: "gettext"}
	// sbuild: "Depends: libfeas-nonexistent-dev:any (>= 3.0) but it is not installable".
	DepWaitMissing = SourceSpec{Name: "feas-depwait-a", Version: "1.0", BuildDepends: "libfeas-nonexistent-dev:any (>= 3.0)"}
	// sbuild: "Depends: debhelper (>= 99) but 13.11.4 is to be installed".
	DepWaitVersion = SourceSpec{Name: "feas-depwait-b", Version: "1.0", BuildDepends: "debhelper (>= 99)"}
	// Needs BrokenDep in the archive (Options.Extra); sbuild:
	// "feas-brokendep : Depends: libfeas-missing1 but it is not installable".
	DepWaitIndirect = SourceSpec{Name: "feas-depwait-c", Version: "1.0", BuildDepends: "feas-brokendep"}
	FailingRules    = SourceSpec{Name: "feas-fail", Version: "1.0", Rules: RulesFailBuild}
	ImplicitPointer = SourceSpec{Name: "feas-implicit", Version: "1.0", Rules: RulesImplicitPointer}
)

const maintainer = "buildd-agent tests <tests@buildd-agent.invalid>"

// changelogDate is fixed so that the same spec always makes the same source.
var changelogDate = time.Date(2026, time.December, 1, 0, 0, 0, 0, time.UTC)

var (
	packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// No epoch: it would not appear in file names and nothing needs one.
	packageVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$`)
)

// SourcePackage writes spec's tree under dir and builds it with
// dpkg-source -b; it returns the .dsc's path (dir/<name>_<version>.dsc).
// The source tree stays in dir/<name>-<upstream version>.
func SourcePackage(t testing.TB, dir string, spec SourceSpec) string {
	t.Helper()
	testenv.RequireCommand(t, "dpkg-source")
	if !packageName.MatchString(spec.Name) || !packageVersion.MatchString(spec.Version) {
		t.Fatalf("bad source package name or version: %q %q", spec.Name, spec.Version)
	}
	format := spec.Format
	if format == "" {
		format = "3.0 (native)"
	}
	upstream, revision, quilt := spec.Version, "", format == "3.0 (quilt)"
	if i := strings.LastIndexByte(spec.Version, '-'); i >= 0 {
		upstream, revision = spec.Version[:i], spec.Version[i+1:]
	}
	switch {
	case format != "3.0 (native)" && !quilt:
		t.Fatalf("SourceSpec %s: unsupported format %q", spec.Name, format)
	case quilt && revision == "":
		t.Fatalf("SourceSpec %s: 3.0 (quilt) needs a Debian revision in %q", spec.Name, spec.Version)
	case !quilt && revision != "":
		t.Fatalf("SourceSpec %s: 3.0 (native) cannot have a Debian revision in %q", spec.Name, spec.Version)
	}
	tree := filepath.Join(dir, spec.Name+"-"+upstream)
	if err := os.RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	for name, content := range upstreamFiles(spec) {
		writeFile(t, filepath.Join(tree, name), []byte(content), 0o644)
	}
	if quilt {
		orig := fmt.Sprintf("%s_%s.orig.tar.gz", spec.Name, upstream)
		run(t, dir, nil, "tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
			"--mtime=@"+fmt.Sprint(changelogDate.Unix()), "-czf", orig, filepath.Base(tree))
	}
	for name, content := range debianFiles(spec, format) {
		mode := os.FileMode(0o644)
		if name == "rules" {
			mode = 0o755
		}
		writeFile(t, filepath.Join(tree, "debian", name), []byte(content), mode)
	}
	run(t, dir, []string{"LC_ALL=C.UTF-8"}, "dpkg-source", "-b", filepath.Base(tree))
	dsc := filepath.Join(dir, fmt.Sprintf("%s_%s.dsc", spec.Name, spec.Version))
	if _, err := os.Stat(dsc); err != nil {
		t.Fatalf("dpkg-source made no %s: %v", dsc, err)
	}
	return dsc
}

func upstreamFiles(spec SourceSpec) map[string]string {
	hello := `#include <stdio.h>
#include "greeting.h"

int main(void)
{
	char *s = feas_greeting();
	puts(s);
	return 0;
}
`
	cc := "$(CC)"
	if spec.Rules == RulesImplicitPointer || spec.Rules == RulesImplicitPointerUTF8 {
		// No #include "greeting.h": both functions are implicitly int(),
		// and their results are turned into pointers on lines 5 and 6.
		hello = `#include <stdio.h>

int main(void)
{
	char *s = feas_greeting();
	char *f = (char *) feas_farewell();
	puts(s);
	puts(f);
	return 0;
}
`
		if spec.Rules == RulesImplicitPointer {
			cc = "LC_ALL=C $(CC)"
		}
	}
	return map[string]string{
		"hello.c":    hello,
		"greeting.h": "char *feas_greeting(void);\nchar *feas_farewell(void);\n",
		"greeting.c": "#include \"greeting.h\"\n\nstatic char greeting[] = \"Hello from " + spec.Name + "\";\n" +
			"static char farewell[] = \"Goodbye from " + spec.Name + "\";\n\n" +
			"char *feas_greeting(void)\n{\n\treturn greeting;\n}\n\nchar *feas_farewell(void)\n{\n\treturn farewell;\n}\n",
		"greeting.txt": "Hello from " + spec.Name + "\n",
		"Makefile": "PROG = " + spec.Name + "\n\nall: $(PROG)\n\n" +
			"$(PROG): hello.c greeting.c greeting.h\n" +
			"\t" + cc + " $(CPPFLAGS) $(CFLAGS) -Wall -o $@ hello.c greeting.c $(LDFLAGS)\n\n" +
			"clean:\n\trm -f $(PROG)\n\n.PHONY: all clean\n",
	}
}

func debianFiles(spec SourceSpec, format string) map[string]string {
	name := spec.Name
	dist := spec.Distribution
	if dist == "" {
		dist = DefaultSuite
	}
	arch := spec.Arch == ArchAny || spec.Arch == ArchBoth
	indep := spec.Arch == ArchAll || spec.Arch == ArchBoth

	var control strings.Builder
	fmt.Fprintf(&control, "Source: %s\nSection: misc\nPriority: optional\nMaintainer: %s\n", name, maintainer)
	bd := "debhelper-compat (= 13)"
	if spec.BuildDepends != "" {
		bd += ", " + spec.BuildDepends
	}
	fmt.Fprintf(&control, "Build-Depends: %s\n", bd)
	if spec.BuildDependsIndep != "" {
		fmt.Fprintf(&control, "Build-Depends-Indep: %s\n", spec.BuildDependsIndep)
	}
	control.WriteString("Standards-Version: 4.6.2\nRules-Requires-Root: no\n")
	if arch {
		fmt.Fprintf(&control, "\nPackage: %s\nArchitecture: any\nDepends: ${shlibs:Depends}, ${misc:Depends}\n"+
			"Description: buildd-agent test program\n A tiny C program that prints a greeting.\n", name)
	}
	if indep {
		fmt.Fprintf(&control, "\nPackage: %s-data\nArchitecture: all\nDepends: ${misc:Depends}\n"+
			"Description: buildd-agent test data\n The greeting, as a text file.\n", name)
	}

	rules := "#!/usr/bin/make -f\n\n%:\n\tdh $@\n"
	if spec.Rules == RulesFailBuild {
		rules += "\noverride_dh_auto_build:\n\t@echo '" + name + ": failing in the build on purpose' >&2\n\texit 1\n"
	}
	if arch {
		rules += fmt.Sprintf("\noverride_dh_auto_install-arch:\n\tinstall -D -m 0755 %[1]s debian/%[1]s/usr/bin/%[1]s\n", name)
	}
	if indep {
		rules += fmt.Sprintf("\noverride_dh_auto_install-indep:\n\tinstall -D -m 0644 greeting.txt debian/%[1]s-data/usr/share/%[1]s/greeting.txt\n", name)
	}

	changelog := fmt.Sprintf("%s (%s) %s; urgency=medium\n\n  * buildd-agent test package.\n\n -- %s  %s\n",
		name, spec.Version, dist, maintainer, changelogDate.Format(time.RFC1123Z))
	return map[string]string{
		"control":       control.String(),
		"rules":         rules,
		"changelog":     changelog,
		"copyright":     "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 2026 buildd-agent tests\nLicense: public-domain\n Written for the buildd-agent test suite.\n",
		"source/format": format + "\n",
	}
}

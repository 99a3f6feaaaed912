package debian

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// depFailLog is the log of launchpad-buildd's startDepFail: apt's unmet
// dependency report, 4 KiB of noise, then the Fail-Stage line.
func depFailLog(error string) string {
	return "The following packages have unmet dependencies:\n" +
		" sbuild-build-depends-hello-dummy : Depends: " + error + "\n" +
		"E: Unable to correct problems, you have held broken packages.\n" +
		strings.Repeat("a", 4096) + "\n" +
		"Fail-Stage: install-deps\n"
}

// sbuildLog is the shape of a real sbuild 0.85 dep-wait log (feasibility
// runs feas-depwait-a/b/c): aptLines after apt's report header, then the
// summary with Fail-Stage: install-deps and Status: given-back.
func sbuildLog(aptLines ...string) string {
	return `sbuild (Debian sbuild) 0.85.0 (04 January 2023) on vm

+==============================================================================+
| feas-depwait-a 1.0 (amd64)                   Wed, 02 Dec 2026 03:00:00 +0000 |
+==============================================================================+

Package: feas-depwait-a
Version: 1.0
Source Version: 1.0
Distribution: bookworm
Machine Architecture: amd64
Host Architecture: amd64
Build Architecture: amd64
Build Type: binary

+------------------------------------------------------------------------------+
| Install package build dependencies                                           |
+------------------------------------------------------------------------------+


Setup apt archive
-----------------

Merged Build-Depends: libfeas-nonexistent-dev:any (>= 3.0), build-essential, fakeroot
Filtered Build-Depends: libfeas-nonexistent-dev:any (>= 3.0), build-essential, fakeroot
Reading package lists...
Building dependency tree...
Reading state information...
Some packages could not be installed. This may mean that you have
requested an impossible situation or if you are using the unstable
distribution that some required packages have not yet been created
or been moved out of Incoming.
The following information may help to resolve the situation:

The following packages have unmet dependencies:
` + strings.Join(aptLines, "\n") + `
E: Unable to correct problems, you have held broken packages.
apt-get failed.
E: Package installation failed
Not removing build depends: as requested

+------------------------------------------------------------------------------+
| Summary                                                                      |
+------------------------------------------------------------------------------+

Build Architecture: amd64
Build Type: binary
Build-Space: n/a
Build-Time: 0
Distribution: bookworm
Fail-Stage: install-deps
Host Architecture: amd64
Install-Time: 1
Job: feas-depwait-a_1.0.dsc
Machine Architecture: amd64
Package: feas-depwait-a
Package-Time: 4
Source-Version: 1.0
Space: n/a
Status: given-back
Version: 1.0
--------------------------------------------------------------------------------
Finished at 2026-12-02T03:00:04Z
Build needed 00:00:04, 0k disk space
E: Package build dependencies not satisfied; skipping
`
}

type sbuildCase struct {
	name      string
	exit      int
	log       string
	deps      string // Build-Depends for the dubious branch
	depsErr   error
	avail     map[string][]string
	availErr  error
	arch      string
	want      Analysis
	wantCalls bool // whether buildDeps/avail must be called
}

func runSbuildCase(t *testing.T, c sbuildCase) {
	t.Helper()
	called := false
	buildDeps := func() (Relations, error) {
		called = true
		if c.depsErr != nil {
			return nil, c.depsErr
		}
		return ParseRelations(c.deps)
	}
	availFn := func() (*Available, error) {
		called = true
		if c.availErr != nil {
			return nil, c.availErr
		}
		return avail(c.avail), nil
	}
	arch := c.arch
	if arch == "" {
		arch = "i386"
	}
	got := AnalyseSbuild(c.exit, strings.NewReader(c.log), int64(len(c.log)), buildDeps, availFn, arch)
	if !reflect.DeepEqual(got, c.want) {
		t.Errorf("%s: AnalyseSbuild = %+v, want %+v", c.name, got, c.want)
	}
	if called != c.wantCalls {
		t.Errorf("%s: archive analysis called = %v, want %v", c.name, called, c.wantCalls)
	}
}

func TestAnalyseSbuild(t *testing.T) {
	pkgFail := Analysis{Status: StatusPackageFail}
	depFail := func(d string) Analysis { return Analysis{Status: StatusDepFail, Dependencies: d} }
	for _, c := range []sbuildCase{
		{name: "ok", exit: 0, log: "I am a build log.", want: Analysis{Status: StatusOK}},
		{name: "failed", exit: 1, log: depFailLog("enoent but it is not installable"), want: pkgFail},
		{name: "attempted", exit: 2, want: pkgFail},
		{name: "builderfail", exit: 4, want: Analysis{Status: StatusBuilderFail}},
		{name: "corrupt sbuildrc or worse", exit: 137, want: Analysis{Status: StatusBuilderFail}},
		{name: "killed", exit: -1, want: pkgFail},

		// test_detects_depfail and friends: sure dep-waits.
		{name: "not installable", exit: 3, log: depFailLog("enoent but it is not installable"), want: depFail("enoent")},
		{name: "to be installed", exit: 3, log: depFailLog("ebadver (< 2.0) but 3.0 is to be installed"), want: depFail("ebadver (< 2.0)")},
		{name: "is installed", exit: 3, log: depFailLog("ebadver (< 2.0) but 3.0 is installed"), want: depFail("ebadver (< 2.0)")},
		{name: "strips", exit: 3, log: depFailLog("ebadver:any (>= 3.0) but 2.0 is installed"), want: depFail("ebadver (>= 3.0)")},
		{name: "virtual", exit: 3, log: depFailLog("mail-transport-agent but it is a virtual package"), want: depFail("mail-transport-agent")},

		// Real sbuild 0.85 logs.
		{name: "sbuild not installable", exit: 3,
			log:  sbuildLog(" sbuild-build-depends-main-dummy : Depends: libfeas-nonexistent-dev:any (>= 3.0) but it is not installable"),
			want: depFail("libfeas-nonexistent-dev (>= 3.0)")},
		{name: "sbuild to be installed", exit: 3,
			log:  sbuildLog(" sbuild-build-depends-main-dummy : Depends: debhelper (>= 99) but 13.11.4 is to be installed"),
			want: depFail("debhelper (>= 99)")},
		{name: "sbuild indirect", exit: 3,
			log:  sbuildLog(" feas-brokendep : Depends: libfeas-missing1 but it is not installable"),
			want: depFail("libfeas-missing1")},
		{name: "sbuild last Depends line wins", exit: 3,
			log: sbuildLog(" sbuild-build-depends-main-dummy : Depends: first (>= 1) but it is not installable",
				"                                   Depends: second but 2 is to be installed"),
			want: depFail("second")},

		// test_uninstallable_deps_analysis_*: dubious dep-waits.
		{name: "dubious all satisfied", exit: 3,
			log:  depFailLog("uninstallable (>= 1) but it is not going to be installed"),
			deps: "uninstallable (>= 1)", avail: map[string][]string{"uninstallable": {"1"}},
			want: pkgFail, wantCalls: true},
		{name: "dubious depfail", exit: 3,
			log:  depFailLog("ebadver (>= 2) but it is not going to be installed"),
			deps: "ebadver (>= 2)", avail: map[string][]string{"ebadver": {"1"}},
			want: depFail("ebadver (>= 2)"), wantCalls: true},
		{name: "dubious not installed", exit: 3,
			log:  depFailLog("foo but it is not installed"),
			deps: "foo:any [i386] <!nocheck>, bar", avail: map[string][]string{"bar": {"1"}},
			want: depFail("foo"), wantCalls: true},
		{name: "mixed: analysis wins", exit: 3,
			log: "The following packages have unmet dependencies:\n" +
				" sbuild-build-depends-hello-dummy : Depends: ebadver (>= 2) but it is not going to be installed\n" +
				"                                    Depends: uninstallable but it is not installable\n" +
				"E: Unable to correct problems, you have held broken packages.\n" +
				strings.Repeat("a", 4096) + "\nFail-Stage: install-deps\n",
			deps: "ebadver (>= 2), uninstallable", avail: map[string][]string{"ebadver": {"1"}, "uninstallable": {"1"}},
			want: depFail("ebadver (>= 2)"), wantCalls: true},
		{name: "dubious build deps unreadable", exit: 3,
			log:     depFailLog("foo but it is not going to be installed"),
			depsErr: errors.New("cannot open foo.dsc"),
			want:    Analysis{Status: StatusPackageFail, Notes: []string{"Failed to analyse dep-wait: cannot open foo.dsc"}}, wantCalls: true},
		{name: "dubious archive unreadable", exit: 3,
			log: depFailLog("foo but it is not going to be installed"), deps: "foo",
			availErr: errors.New("no Packages"),
			want:     Analysis{Status: StatusPackageFail, Notes: []string{"Failed to analyse dep-wait: no Packages"}}, wantCalls: true},
		{name: "dubious analysis error", exit: 3,
			log: depFailLog("foo but it is not going to be installed"), deps: "foo (< 2)", avail: map[string][]string{"foo": {"1"}},
			want:      Analysis{Status: StatusPackageFail, Notes: []string{`Failed to analyse dep-wait: unsupported version operator "<" in "foo (< 2)"`}},
			wantCalls: true},

		// Sure dep-wait on something the reference would report raw.
		{name: "unparsable dependency", exit: 3, log: depFailLog("(weird but it is not installable"),
			want: Analysis{Status: StatusPackageFail, Notes: []string{`Failed to analyse dep-wait: cannot parse relation "(weird": package name must start with a letter or digit`}}},
		{name: "empty dependency", exit: 3, log: depFailLog(" but it is not installable"),
			want: Analysis{Status: StatusPackageFail, Notes: []string{`Failed to analyse dep-wait: no dependency in ""`}}},

		// GIVENBACK.
		{name: "givenback", exit: 3, log: "foo\nE: There are problems and -y was used without --force-yes\nbar\n",
			want: Analysis{Status: StatusGivenBack}},
		{name: "givenback beats depfail", exit: 3,
			log:  "E: There are problems and -y was used without --force-yes\n" + depFailLog("enoent but it is not installable"),
			want: Analysis{Status: StatusGivenBack}},
		{name: "givenback not at line start", exit: 3, log: "xE: There are problems and -y was used without --force-yes\n", want: pkgFail},

		// test_depfail_with_unknown_error_converted_to_packagefail.
		{name: "no reason", exit: 3, log: "E: Everything is broken.\n", want: pkgFail},
		{name: "empty log", exit: 3, log: "", want: pkgFail},
		// The dependency report is only used when the tail says install-deps.
		{name: "fail-stage not in tail", exit: 3,
			log:  depFailLog("enoent but it is not installable") + strings.Repeat("b", 4096),
			want: pkgFail},
		{name: "fail-stage build", exit: 3,
			log:  strings.Replace(depFailLog("enoent but it is not installable"), "install-deps", "build", 1),
			want: pkgFail},
		// Toolchain stop line: a match in the same window still counts …
		{name: "stop line same window", exit: 3,
			log:  "Toolchain package versions: gcc_12\n" + depFailLog("enoent but it is not installable"),
			want: depFail("enoent")},
		// … but once a window with the stop line has no match, the search ends.
		{name: "match after stop line", exit: 3,
			log:  "Toolchain package versions: gcc_12\n" + strings.Repeat("x\n", 300<<10) + depFailLog("enoent but it is not installable"),
			want: pkgFail},
		{name: "stop line not at line start", exit: 3,
			log:  " Toolchain package versions: gcc_12\n" + strings.Repeat("x\n", 300<<10) + depFailLog("enoent but it is not installable"),
			want: depFail("enoent")},
	} {
		runSbuildCase(t, c)
	}
}

// TestAnalyseSbuildWindow checks the 256 KiB sliding window with logs
// longer than 512 KiB.
func TestAnalyseSbuildWindow(t *testing.T) {
	block := "The following packages have unmet dependencies:\n" +
		" dummy : Depends: libstraddle-dev (>= 2) but it is not installable\n"
	tail := strings.Repeat("z", 5000) + "\nFail-Stage: install-deps\n"
	pad := func(n int) string { return strings.Repeat("p", n-1) + "\n" }
	chunk := logSearchChunk
	for _, c := range []struct {
		name string
		log  string
		want Analysis
	}{
		{"straddles the first boundary",
			pad(chunk-40) + block + pad(600<<10) + tail,
			Analysis{Status: StatusDepFail, Dependencies: "libstraddle-dev (>= 2)"}},
		{"straddles the second boundary",
			pad(2*chunk-40) + block + pad(300<<10) + tail,
			Analysis{Status: StatusDepFail, Dependencies: "libstraddle-dev (>= 2)"}},
		{"in the fourth chunk",
			pad(3*chunk+100) + block + pad(100<<10) + tail,
			Analysis{Status: StatusDepFail, Dependencies: "libstraddle-dev (>= 2)"}},
		{"ends in the last short chunk",
			pad(3*chunk-40) + block + tail,
			Analysis{Status: StatusDepFail, Dependencies: "libstraddle-dev (>= 2)"}},
		// Header in the first chunk, Depends line in the third: longer than
		// the window, never seen.
		{"spans three chunks",
			pad(chunk-100) + strings.Replace(block, "\n ", "\n"+pad(chunk+200)+" ", 1) + tail,
			Analysis{Status: StatusPackageFail}},
		// Greedy ".*" reaches the last Depends line of the first window
		// that matches, not one further on.
		{"last Depends line within the window",
			block + pad(1000) + strings.Replace(block, "libstraddle-dev", "later", 1) + pad(chunk) +
				strings.Replace(block, "libstraddle-dev", "beyond", 1) + pad(3*chunk) + tail,
			Analysis{Status: StatusDepFail, Dependencies: "later (>= 2)"}},
	} {
		got := AnalyseSbuild(3, strings.NewReader(c.log), int64(len(c.log)), nil, nil, "amd64")
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s (%d bytes): %+v, want %+v", c.name, len(c.log), got, c.want)
		}
	}
}

type failingReaderAt struct{ after int64 }

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.after {
		return 0, errors.New("disk on fire")
	}
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestAnalyseSbuildUnreadableLog(t *testing.T) {
	for _, after := range []int64{0, int64(logSearchChunk)} {
		got := AnalyseSbuild(3, failingReaderAt{after}, 1<<20, nil, nil, "amd64")
		if got.Status != StatusBuilderFail || len(got.Notes) != 1 || !strings.Contains(got.Notes[0], "disk on fire") {
			t.Errorf("after %d: %+v", after, got)
		}
	}
	if got := AnalyseSbuild(3, nil, 0, nil, nil, "amd64"); got.Status != StatusBuilderFail {
		t.Errorf("nil log: %+v", got)
	}
	// A log shorter than announced ends the search there.
	log := depFailLog("enoent but it is not installable")
	got := AnalyseSbuild(3, bytes.NewReader([]byte(log)), int64(len(log))+10, nil, nil, "amd64")
	if got.Status != StatusDepFail {
		t.Errorf("short log: %+v", got)
	}
}

// BenchmarkAnalyseSbuild measures the exit-3 log search on 20 MiB of
// build output: ordinary lines, and the worst case where every other line
// is apt's report header (every window then runs the dependency patterns
// to its end).
func BenchmarkAnalyseSbuild(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"plain", strings.Repeat("y", 100) + "\n"},
		{"headers", "The following packages have unmet dependencies:\n" + strings.Repeat("y", 100) + "\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			log := []byte(strings.Repeat(bc.line, 20<<20/len(bc.line)) + "Fail-Stage: install-deps\n")
			b.SetBytes(int64(len(log)))
			for b.Loop() {
				if got := AnalyseSbuild(3, bytes.NewReader(log), int64(len(log)), nil, nil, "amd64"); got.Status != StatusPackageFail {
					b.Fatal(fmt.Sprint(got))
				}
			}
		})
	}
}

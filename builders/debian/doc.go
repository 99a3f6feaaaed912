// Package debian holds the pure logic the binarypackage manager needs to
// turn an sbuild run into launchpad-buildd's BuildStatus: Debian versions,
// package relations, architecture wildcards, deb822 files (.dsc, .changes,
// Packages), the dep-wait analysis of a given-back build, and the
// implicit-pointer check sbuild's output goes through. It does no I/O of
// its own beyond the readers and writers it is given, and imports nothing
// from the rest of the agent.
//
// Everything here ports behaviour of launchpad-buildd (lpbuildd/) or of
// the Debian tools it calls; the mapping, reference first:
//
//	binarypackage.py iterate_SBUILD        AnalyseSbuild
//	binarypackage.py BuildLogRegexes,      givenBackPattern, maybeDepFailPattern,
//	  APT_MISSING/DUBIOUS_DEP_PATTERNS       depFailPattern (sbuild.go)
//	debian.py searchLogContents            searchLog (256 KiB chunks, two-chunk
//	                                         window, stop patterns)
//	binarypackage.py analyseDepWait        AnalyseDepWait
//	binarypackage.py relationMatches       relationMatches
//	binarypackage.py stripDependencies     Relations.Strip + Relations.String
//	binarypackage.py getAvailablePackages  AvailablePackages, Available.ReadPackages
//	binarypackage.py getBuildDepends       ParseDsc + Dsc.BuildDependencies
//	binarypackage.py DpkgArchitectureCache ArchMatches (dpkg-architecture -a -i,
//	                                         Dpkg::Arch::debarch_is, tables in
//	                                         archtable.go from gen_archtable.go)
//	debian.py _parseChangesFile            ParseChanges
//	check_implicit_pointer_functions.py    ImplicitPointerFilter
//	  filter_log, implicit_pattern,
//	  pointer_pattern
//	bin/check-implicit-pointer-functions   NewImplicitPointerFilter(w, inline),
//	                                         Problems() (exit 2 unless warn-only)
//	bin/sbuild-package case lists          ImplicitPointerWarnOnly, Personality,
//	                                         Uname26
//	python-debian PkgRelation              ParseRelations, Relations.String
//	python-debian / apt_pkg Version,       CompareVersions (dpkg's verrevcmp),
//	  dpkg parseversion                      ValidVersion
//	python-debian Deb822 / apt TagFile     ParseControl, ControlReader
//
// Where the reference would crash on bad input (an exception outside a
// handler) or report a DEPFAIL on a relation it could not parse (which
// python-debian returns "raw"), this package returns an error and
// AnalyseSbuild fails the build with a note for the build log instead.
// Every parser here takes hostile input: sbuild's log and .changes are
// written by the build. Sizes are bounded (MaxControlLine,
// MaxControlParagraph, MaxControlSize, the filter's line prefix), and the
// parsers are fuzzed (fuzz_test.go, corpora in testdata/fuzz).
//
// The tests compare with the real tools where they are installed:
// dpkg-architecture (TestArchMatchesDpkgArchitecture), apt_pkg and dpkg
// (TestCompareVersionsAptPkg), python-debian (TestParseRelationsPythonDebian),
// Python's re on the log search (TestSearchLogPython), and, with
// LPBUILDD_REPO set to a launchpad-buildd git repository, the reference
// filter_log itself (TestImplicitPointerFilterReference).
package debian

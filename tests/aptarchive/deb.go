package aptarchive

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// BinarySpec describes a generated binary package: just control data and a
// few files, enough for apt's resolver to see it.
type BinarySpec struct {
	Name, Version string
	Arch          string // default "all"
	Depends       string // the Depends field, verbatim
	// Files maps absolute paths in the package to their contents; default
	// one /usr/share/doc/<name>/README.
	Files map[string]string
}

// BrokenDep is in the archive but cannot be installed: it depends on a
// package no archive has. Build-Depending on it (DepWaitIndirect) makes
// apt report the missing dependency of the dependency.
var BrokenDep = BinarySpec{Name: "feas-brokendep", Version: "1.0", Depends: "libfeas-missing1"}

// BinaryPackage builds spec with dpkg-deb --build into dir and returns the
// .deb's path.
func BinaryPackage(t testing.TB, dir string, spec BinarySpec) string {
	t.Helper()
	testenv.RequireCommand(t, "dpkg-deb")
	if spec.Name == "" || spec.Version == "" {
		t.Fatalf("BinarySpec needs a name and a version: %+v", spec)
	}
	arch := spec.Arch
	if arch == "" {
		arch = "all"
	}
	tree := filepath.Join(t.TempDir(), spec.Name)
	var control strings.Builder
	fmt.Fprintf(&control, "Package: %s\nVersion: %s\nArchitecture: %s\n", spec.Name, spec.Version, arch)
	fmt.Fprintf(&control, "Maintainer: %s\nSection: misc\nPriority: optional\n", maintainer)
	if spec.Depends != "" {
		fmt.Fprintf(&control, "Depends: %s\n", spec.Depends)
	}
	fmt.Fprintf(&control, "Description: generated test package for buildd-agent\n made by tests/aptarchive.BinaryPackage.\n")
	writeFile(t, filepath.Join(tree, "DEBIAN", "control"), []byte(control.String()), 0o644)
	files := spec.Files
	if len(files) == 0 {
		files = map[string]string{"/usr/share/doc/" + spec.Name + "/README": spec.Name + " is a test package.\n"}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel := filepath.Clean(strings.TrimPrefix(p, "/"))
		if rel == "." || strings.HasPrefix(rel, "..") || strings.HasPrefix(rel, "DEBIAN") {
			t.Fatalf("BinarySpec %s: bad file path %q", spec.Name, p)
		}
		writeFile(t, filepath.Join(tree, rel), []byte(files[p]), 0o644)
	}
	deb := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", spec.Name, spec.Version, arch))
	run(t, "", nil, "dpkg-deb", "--root-owner-group", "--build", tree, deb)
	return deb
}

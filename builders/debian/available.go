package debian

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// Available is what an archive offers, by package name: the versions of
// real packages and of "=" versioned Provides, and whether some package
// provides the name without a version (launchpad-buildd's
// getAvailablePackages result, where the unversioned provide is None).
type Available struct {
	names map[string]*offer
}

type offer struct {
	versions    map[string]struct{}
	unversioned bool
}

// NewAvailable returns an empty Available.
func NewAvailable() *Available {
	return &Available{names: map[string]*offer{}}
}

func (a *Available) get(name string) *offer {
	if a.names == nil {
		a.names = map[string]*offer{}
	}
	o := a.names[name]
	if o == nil {
		o = &offer{versions: map[string]struct{}{}}
		a.names[name] = o
	}
	return o
}

// Add records that version of name is available.
func (a *Available) Add(name, version string) { a.get(name).versions[version] = struct{}{} }

// AddUnversioned records that name is provided without a version.
func (a *Available) AddUnversioned(name string) { a.get(name).unversioned = true }

// Has reports whether anything is available under name.
func (a *Available) Has(name string) bool {
	_, ok := a.names[name]
	return ok
}

// Versions returns the sorted versions available under name, and whether
// it is also provided without a version.
func (a *Available) Versions(name string) (versions []string, unversioned bool) {
	o := a.names[name]
	if o == nil {
		return nil, false
	}
	for v := range o.versions {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	return versions, o.unversioned
}

// AvailablePackages reads apt Packages files (already decompressed) and
// returns what they offer, as launchpad-buildd's getAvailablePackages:
// every stanza's Package at its Version, and for each Provides group
// without alternatives the provided name, with the provided version only
// for an "=" provide, with no version for an unversioned provide, and
// nothing for any other operator. A stanza without Package or Version, or
// an unparsable Provides, is an error (an exception in the reference).
func AvailablePackages(packagesFiles ...io.Reader) (*Available, error) {
	a := NewAvailable()
	for i, f := range packagesFiles {
		if err := a.ReadPackages(f); err != nil {
			return nil, fmt.Errorf("packages file %d: %w", i+1, err)
		}
	}
	return a, nil
}

// ReadPackages adds the stanzas of one Packages file to a.
func (a *Available) ReadPackages(r io.Reader) error {
	cr := NewControlReader(r)
	for {
		p, err := cr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name, ok := p.Get("Package")
		if !ok {
			return errors.New("stanza without Package")
		}
		version, ok := p.Get("Version")
		if !ok {
			return fmt.Errorf("package %q has no Version", name)
		}
		a.Add(name, version)
		provides, ok := p.Get("Provides")
		if !ok {
			continue
		}
		rels, err := ParseRelations(provides)
		if err != nil {
			return fmt.Errorf("package %q: Provides: %w", name, err)
		}
		for _, g := range rels {
			if len(g) > 1 {
				continue // Disjunctions are undefined here.
			}
			// apt_pkg.parse_depends strips ":any" and ":native".
			pname := g[0].Name
			if q := g[0].ArchQual; q != "" && q != "any" && q != "native" {
				pname += ":" + q
			}
			switch v := g[0].Version; {
			case v == nil:
				a.AddUnversioned(pname)
			case v.Op == "=":
				a.Add(pname, v.Version)
			}
		}
	}
}

// relationMatches is launchpad-buildd's relationMatches: whether dep is
// satisfied by avail on arch, where a dependency that does not apply to
// arch, or only applies with some build profile enabled, counts as
// satisfied.
func relationMatches(dep Relation, avail *Available, arch string) (bool, error) {
	if dep.Arch != nil {
		archMatch := false
		for _, a := range dep.Arch {
			if ArchMatches(arch, a.Wildcard) {
				archMatch = a.Enabled
				break
			} else if !a.Enabled {
				// A "!other" entry allows this architecture unless a later
				// entry excludes it.
				archMatch = true
			}
		}
		if !archMatch {
			return true, nil
		}
	}
	if dep.Restrictions != nil {
		ignored := true
		for _, group := range dep.Restrictions {
			positive := false
			for _, t := range group {
				if t.Enabled {
					positive = true
				}
			}
			if !positive {
				ignored = false
			}
		}
		if ignored {
			// No build profile is enabled, so no group holds.
			return true, nil
		}
	}
	o := avail.names[dep.Name]
	if o == nil {
		return false, nil
	}
	if dep.Version == nil {
		return true, nil
	}
	var holds func(int) bool
	switch dep.Version.Op {
	case "<<":
		holds = func(c int) bool { return c < 0 }
	case "<=":
		holds = func(c int) bool { return c <= 0 }
	case "=":
		holds = func(c int) bool { return c == 0 }
	case ">=":
		holds = func(c int) bool { return c >= 0 }
	case ">>":
		holds = func(c int) bool { return c > 0 }
	default:
		return false, fmt.Errorf("unsupported version operator %q in %q", dep.Version.Op, dep.String())
	}
	versions, _ := avail.Versions(dep.Name)
	for _, v := range versions {
		if err := checkArchiveVersion(v); err != nil {
			return false, fmt.Errorf("available %s: %w", dep.Name, err)
		}
		if holds(CompareVersions(v, dep.Version.Version)) {
			return true, nil
		}
	}
	return false, nil
}

// AnalyseDepWait works out the dep-wait for a build whose dependencies
// could not be installed, from the source package's direct build
// dependencies (launchpad-buildd's analyseDepWait): the groups that no
// alternative of satisfies on arch, stripped (Relations.Strip) and
// formatted, or "" when every group is satisfied. Indirect dependencies are
// not considered: the build should fail rather than wait on a guess. An
// error (an unsupported operator, an invalid available version) means the
// analysis failed and the build should fail.
func AnalyseDepWait(deps Relations, avail *Available, arch string) (string, error) {
	if avail == nil {
		avail = NewAvailable()
	}
	var unsat Relations
	for _, g := range deps {
		ok := false
		for _, dep := range g {
			m, err := relationMatches(dep, avail, arch)
			if err != nil {
				return "", err
			}
			if m {
				ok = true
				break
			}
		}
		if !ok {
			unsat = append(unsat, g)
		}
	}
	return unsat.Strip().String(), nil
}

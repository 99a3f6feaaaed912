package debian

import (
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"testing"
)

// TestAvailablePackagesRealArchive reads a real Packages file when
// DEBIAN_PACKAGES_FILE names one (e.g. Debian bookworm main, 50 MB) and,
// when python3-apt is installed, compares the result with
// getAvailablePackages' logic on apt_pkg.TagFile and apt_pkg.parse_depends.
func TestAvailablePackagesRealArchive(t *testing.T) {
	path := os.Getenv("DEBIAN_PACKAGES_FILE")
	if path == "" {
		t.Skip("DEBIAN_PACKAGES_FILE not set")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := AvailablePackages(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"debhelper", "libc6-dev", "debhelper-compat", "mail-transport-agent"} {
		if !a.Has(name) {
			t.Errorf("%s not available", name)
		}
	}
	got := map[string][]*string{}
	for name := range a.names {
		versions, unversioned := a.Versions(name)
		var vs []*string
		if unversioned {
			vs = append(vs, nil)
		}
		for _, v := range versions {
			vs = append(vs, &v)
		}
		got[name] = vs
	}
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import apt_pkg").Run() != nil {
		t.Skip("python3-apt not installed")
	}
	cmd := exec.Command(py, "-c", `
import json, sys, apt_pkg
from collections import defaultdict
apt_pkg.init()
available = defaultdict(set)
with open(sys.argv[1], "rb") as f:
    for section in apt_pkg.TagFile(f):
        available[section["package"]].add(section["version"])
        if "provides" in section:
            for provide in apt_pkg.parse_depends(section["provides"]):
                if len(provide) > 1:
                    continue
                if provide[0][1] and provide[0][2] != "=":
                    continue
                available[provide[0][0]].add(provide[0][1] if provide[0][1] else None)
json.dump({k: sorted(v, key=lambda x: (x is not None, x or "")) for k, v in available.items()}, sys.stdout)
`, path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want map[string][]*string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d names, apt_pkg %d", len(got), len(want))
	}
	var diffs []string
	for name, w := range want {
		if !reflect.DeepEqual(got[name], w) {
			diffs = append(diffs, name)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%d names differ, e.g. %q", len(diffs), diffs[:min(5, len(diffs))])
	}
	t.Logf("%d names agree with apt_pkg", len(want))
}

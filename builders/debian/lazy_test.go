package debian

import "testing"

// TestLazyInitCompiles builds what is made on first use rather than at
// package init (regexps, tables), so that a broken pattern fails here and
// not in the middle of a build.
func TestLazyInitCompiles(t *testing.T) {
	for _, re := range []func() string{
		func() string { return failStageDepsRE().String() },
		func() string { return implicitRE().String() },
		func() string { return pointerRE().String() },
		func() string { return pythonDebianVersionRE().String() },
		func() string { return maybeDepFailPattern.re().String() },
		func() string { return depFailPattern.re().String() },
	} {
		if re() == "" {
			t.Error("empty pattern")
		}
	}
	if depFailGroupP() < 0 {
		t.Error("depFailPattern has no group p")
	}
	if len(archTuples()) == 0 {
		t.Error("no architectures")
	}
}

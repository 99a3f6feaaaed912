package builders

import (
	"regexp"
	"testing"
)

// TestLazyRegexpsCompile compiles the patterns made on first use rather
// than at package init, so that a broken one fails here and not in the
// middle of a build.
func TestLazyRegexpsCompile(t *testing.T) {
	for _, re := range []func() *regexp.Regexp{
		recipeToken, recipeDepWait, sha1Name, autoconfSubst, makefileSubst,
		seriesName, archName, snapName, suiteName, controlWord,
	} {
		if re().String() == "" {
			t.Error("empty pattern")
		}
	}
}

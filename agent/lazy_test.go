package agent

import "testing"

// TestLazyRegexpsCompile compiles the patterns made on first use rather
// than at package init, so that a broken one fails here and not when a
// build's arguments are first logged.
func TestLazyRegexpsCompile(t *testing.T) {
	if got := urlPassword().FindAllStringSubmatch("https://u:secret@host/", -1); len(got) != 1 || got[0][1] != "secret" {
		t.Errorf("urlPassword matches %q", got)
	}
}

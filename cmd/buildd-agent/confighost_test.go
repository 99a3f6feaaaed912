package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config check finds a state directory that the chroot backend's mapped
// ids and the sbuild user cannot reach (a 0700 parent), which builds
// would otherwise meet as a bare "permission denied".
func TestConfigCheckHostDirectories(t *testing.T) {
	dir := t.TempDir()
	closed := filepath.Join(dir, "closed")
	open := filepath.Join(dir, "open")
	for p, mode := range map[string]os.FileMode{closed: 0o700, open: 0o755} {
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	// t.TempDir's own parents may be 0700 (a user's TMPDIR); open them to
	// others for the test's sake only if they are ours.
	if blocked, _ := unsearchableAncestor(open); blocked != "" {
		t.Skipf("the test's temporary directory is under %s, which others cannot search", blocked)
	}
	write := func(name, stateDir string) string {
		p := filepath.Join(dir, name)
		conf := "[builder]\nstate_dir = \"" + stateDir + "\"\n[sbuild]\nuser = \"no-such-user-buildd-agent\"\n"
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("closed.toml", filepath.Join(closed, "state"))
	good := write("open.toml", filepath.Join(open, "state"))
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		out     string
		errText string
	}{
		{"0700 parent", []string{"config", "check", bad}, 1,
			bad + ": builder.build_home: " + filepath.Join(closed, "state", "builds") + " is under " + closed + " (mode 0700), which other users cannot search", ""},
		{"syntax only", []string{"config", "check", "--syntax-only", bad}, 0, "ok\n", ""},
		{"open parent, missing sbuild user warns", []string{"config", "check", good}, 0, "ok\n",
			good + ": sbuild.user: warning: build user \"no-such-user-buildd-agent\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runBinary(t, tc.args...)
			if code != tc.code || !strings.HasPrefix(out, tc.out) || !strings.Contains(errOut, tc.errText) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q…, stderr with %q", code, out, errOut, tc.code, tc.out, tc.errText)
			}
			if tc.code == 1 && (!strings.Contains(out, "chmod o+x "+closed) || !strings.Contains(out, "subordinate ids")) {
				t.Errorf("stdout %q does not say who cannot reach it and how to fix it", out)
			}
			if strings.Count(out, "\n") > 1 && tc.code == 1 {
				t.Errorf("the same blocked directory reported twice:\n%s", out)
			}
		})
	}
}

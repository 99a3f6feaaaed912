package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/bzrserver"
)

// Charm and snap builds from a Bazaar branch (buildd-manager's `branch`)
// on LXD: the branch is fetched on the host with Breezy from the tests'
// bzr server and copied into the build tree; revision_id is its revno.
func TestCraftE2EBazaarBranch(t *testing.T) {
	f := newCraftFixture(t)
	srv := bzrserver.Start(t)
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	// Breezy runs as the build user in the build home, under the state
	// directory: a test's temporary directory is 0700 (an operator's
	// /var/lib/buildd-agent is 0755).
	for d := a.stateDir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}

	t.Run("charm", func(t *testing.T) {
		br := srv.NewBranch(t, "charm-branch")
		br.WriteFile(t, "charm/charmcraft.yaml", f.toolYAML("4.0"))
		br.Commit(t, "one")
		br.WriteFile(t, "README", "two\n")
		revno := br.Commit(t, "two")
		args := f.buildArgs("charm", "charmcraft", "", "charm")
		delete(args, "git_repository")
		args["branch"] = br.URL
		startCraftBuild(t, a, f, "CHARMBZR-1", "charm", args)
		st, log := finishedBuild(t, a)
		defer a.call(t, "clean")
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		if st["revision_id"] != revno || revno != "2" {
			t.Errorf("revision_id = %v, want revno %s (2)", st["revision_id"], revno)
		}
		filemap := st["filemap"].(map[string]any)
		m := string(a.fetch(t, filemap["hello_ubuntu-24.04-amd64.manifest"].(string)))
		for _, want := range []string{"cwd: /home/buildd/hello/charm\n", "fetched: " + f.payload + "\n"} {
			if !strings.Contains(m, want) {
				t.Errorf("manifest lacks %q:\n%s", want, m)
			}
		}
		if strings.Contains(log, snapE2EPass) {
			t.Errorf("the build log shows the proxy password")
		}
	})

	t.Run("snap", func(t *testing.T) {
		br := srv.NewBranch(t, "snap-branch")
		br.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("4.1"))
		revno := br.Commit(t, "one")
		args := f.snapFixture.buildArgs("")
		delete(args, "git_repository")
		args["branch"] = br.URL
		a.startBuild(t, f.snapFixture, "SNAPBZR-1", args)
		st, log := finishedBuild(t, a)
		defer a.call(t, "clean")
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		if st["revision_id"] != revno {
			t.Errorf("revision_id = %v, want revno %s", st["revision_id"], revno)
		}
		if got := filemapNames(st); got != "hello_4.1_amd64.manifest hello_4.1_amd64.snap" {
			t.Errorf("filemap names = %q", got)
		}
		m := string(a.fetch(t, st["filemap"].(map[string]any)["hello_4.1_amd64.manifest"].(string)))
		if !strings.Contains(m, "fetched: "+f.payload+"\n") {
			t.Errorf("manifest lacks the fetched payload:\n%s", m)
		}
	})
	if srv.Requests() == 0 {
		t.Error("the bzr server saw no request")
	}
}

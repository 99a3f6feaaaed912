package builders

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/bzrserver"
)

// bzrBranch serves a real Bazaar branch over HTTP (Breezy reads it as it
// reads Launchpad's): sub/charmcraft.yaml and a symlink link -> sub.
func bzrBranch(t *testing.T) string {
	t.Helper()
	srv := bzrserver.Start(t)
	b := srv.NewBranch(t, "hello")
	b.WriteFile(t, "sub/charmcraft.yaml", "name: hello\n")
	if err := os.Symlink("sub", filepath.Join(b.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	bzrserver.Brz(t, b.Dir, "add", "-q", "link")
	b.Commit(t, "init")
	return b.URL
}

// TestCraftToolsBazaarBranch: branch instead of git_repository (the
// reference's --branch): Breezy on the host, bzr installed in the target,
// revision_id the revno, build_path resolved in the target with no
// symlink followed.
func TestCraftToolsBazaarBranch(t *testing.T) {
	branch := bzrBranch(t)
	installSeams(t)
	args := craftBaseArgs("charmcraft")
	delete(args, "git_repository")
	delete(args, "git_path")
	delete(args, "proxy_url")
	args["branch"] = branch
	ft, fe, res := runCraft(t, "charm", args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s:\n%s", res.Status, fe.logText())
	}
	if fe.status["revision_id"] != "1" {
		t.Errorf("revision_id = %v, want the revno", fe.status["revision_id"])
	}
	if !slices.Contains(ft.argvs(), "apt-get -y install udev bzr python3-pip python3-setuptools") {
		t.Errorf("install: %q", ft.argvs())
	}
	// Archives without bzr: the branch is fetched on the host, so the
	// build goes on without it.
	noBzr := func(ft *fakeTarget, _ *fakeEnv) {
		run := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			if len(c.Args) == 3 && c.Args[0] == "apt-cache" && c.Args[2] == "bzr" {
				return fakeRun{code: 100}
			}
			return run(c)
		}
	}
	if ft, fe, res := runCraft(t, "charm", args, noBzr); res.Status != BuildOK || !slices.Contains(ft.argvs(), "apt-get -y install udev python3-pip python3-setuptools") {
		t.Errorf("without bzr in the archives: status %s, commands %q:\n%s", res.Status, ft.argvs(), fe.logText())
	}
	if ft.files["/home/buildd/hello/sub/charmcraft.yaml"] == nil {
		t.Errorf("branch not copied in")
	}
	if pack, _ := ft.command("charmcraft"); pack.Dir != "/home/buildd/hello/sub" {
		t.Errorf("pack dir %q", pack.Dir)
	}
	args["build_path"] = "link"
	_, fe, res = runCraft(t, "charm", args, nil)
	if res.Status != BuildPackageFail || !strings.Contains(fe.logText(), `build_path "link" goes through the symlink link, which is not followed here`) {
		t.Errorf("status %s:\n%s", res.Status, fe.logText())
	}
	// snap takes a branch the same way.
	sargs := baseArgs()
	delete(sargs, "git_repository")
	delete(sargs, "git_path")
	sargs["branch"] = branch
	if a, err := ParseSnapArgs(sargs); err != nil || a.Branch != branch {
		t.Errorf("snap branch: %+v %v", a.Branch, err)
	}
	for _, bad := range []map[string]any{
		{"branch": "/etc"},
		{"branch": "file:///root/branch"},
		{"branch": "sftp://host/x"},
		{"branch": "lp:x\ny"},
		{"branch": branch, "git_repository": "https://x/y.git"},
		{"branch": branch, "git_path": "main"},
		{"branch": "-x"},
		{},
	} {
		a := craftBaseArgs("charmcraft")
		delete(a, "git_repository")
		delete(a, "git_path")
		for k, v := range bad {
			a[k] = v
		}
		if _, err := charmTool.parseArgs(a); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

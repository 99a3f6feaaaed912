package main

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
)

func TestSnapBuildArgs(t *testing.T) {
	f := localSnapFlags{gitRepository: "https://git.example/team/hello.git/", gitPath: "refs/tags/1.0", series: "noble",
		channels: []string{"snapcraft=8.x/stable", "core22=latest/edge"}, targetArchs: []string{"arm64"},
		proxyURL: "http://u:p@127.0.0.1:3128", sourceTarball: true}
	args, err := snapBuildArgs(f, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if args["name"] != "hello" || args["arch_tag"] != "amd64" || args["git_path"] != "refs/tags/1.0" || args["build_source_tarball"] != true {
		t.Errorf("args = %v", args)
	}
	ch := args["channels"].(map[string]any)
	if ch["snapcraft"] != "8.x/stable" || ch["core22"] != "latest/edge" {
		t.Errorf("channels = %v", ch)
	}
	// What the flags make must pass the manager's own validation.
	if _, err := builders.ParseSnapArgs(args); err != nil {
		t.Errorf("manager refuses the flags' arguments: %v", err)
	}
	for _, bad := range []string{"snapcraft", "=stable", "snapcraft="} {
		f.channels = []string{bad}
		if _, err := snapBuildArgs(f, "amd64"); err == nil || !strings.Contains(err.Error(), "SNAP=CHANNEL") {
			t.Errorf("--channel %q: err = %v", bad, err)
		}
	}
}

func TestLocalBuildAddWaitingFile(t *testing.T) {
	dir := t.TempDir()
	lb := &localBuild{outDir: dir, extra: map[string]any{}}
	data := []byte("snap data")
	sum, err := lb.addWaitingFile("hello_1.0_amd64.snap", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if s1 := sha1.Sum(data); sum != hex.EncodeToString(s1[:]) {
		t.Errorf("sha1 = %q", sum)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "hello_1.0_amd64.snap"))
	s256 := sha256.Sum256(data)
	if !bytes.Equal(got, data) || lb.artifacts[0].SHA256 != hex.EncodeToString(s256[:]) || lb.artifacts[0].Size != int64(len(data)) {
		t.Errorf("stored %q, artifact %+v", got, lb.artifacts[0])
	}
	for _, bad := range []string{"", "../x", "a/b", "..", "summary.json", "buildlog"} {
		if _, err := lb.addWaitingFile(bad, bytes.NewReader(nil)); err == nil {
			t.Errorf("result name %q accepted", bad)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("output dir has %d entries (temporary files left?)", len(entries))
	}
}

func TestLogTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var out bytes.Buffer
	tail := startLogTail(p, &out)
	time.Sleep(20 * time.Millisecond)
	os.WriteFile(p, []byte("first\n"), 0o644)
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("second\n")
	f.Close()
	tail.stop()
	tail.stop() // idempotent
	if out.String() != "first\nsecond\n" {
		t.Errorf("tail copied %q", out.String())
	}
}

func TestBuildSnapUsageErrors(t *testing.T) {
	cases := []struct {
		f    localSnapFlags
		want string
	}{
		{localSnapFlags{}, "--git-repository is required"},
		{localSnapFlags{gitRepository: "https://x/y.git"}, "exactly one of --chroot and --image"},
		{localSnapFlags{gitRepository: "https://x/y.git", chroot: "a", image: "b"}, "exactly one of --chroot and --image"},
		{localSnapFlags{gitRepository: "https://x/y.git", image: "not-a-sha"}, "neither an image file nor a SHA-1"},
		{localSnapFlags{gitRepository: "https://x/y.git", chroot: "/nonexistent/chroot.tar.gz"}, "cannot use --chroot"},
	}
	for _, tc := range cases {
		tc.f.series = "noble"
		_, err := runLocalSnap(t.Context(), tc.f, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.f, err, tc.want)
		}
	}
}

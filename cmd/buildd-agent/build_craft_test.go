package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/builders"
)

func TestCraftBuildArgs(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key.gpg")
	os.WriteFile(key, []byte("KEY"), 0o644)
	for _, k := range localCraftKinds {
		t.Run(k.tag, func(t *testing.T) {
			f := localCraftFlags{gitRepository: "https://git.example/team/hello.git/", gitPath: "refs/tags/1.0", buildPath: "sub",
				series: "noble", channels: []string{k.example, "core24=latest/stable"}, proxyURL: "http://u:p@127.0.0.1:3128",
				archives: []string{"deb http://archive.example/ubuntu noble main"}, keys: []string{key}}
			if k.craftPlatform {
				f.craftPlatform = "ubuntu-24.04-amd64"
			}
			if k.env {
				f.env = []string{"CARGO_A_URL=https://x", "CARGO_A_READ_AUTH=u:t=1"}
			}
			args, err := craftBuildArgs(k, f, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			if args["name"] != "hello" || args["build_path"] != "sub" || args["git_path"] != "refs/tags/1.0" || args["trusted_keys"].([]any)[0] != "S0VZ" {
				t.Errorf("args = %v", args)
			}
			if k.env && args["environment_variables"].(map[string]any)["CARGO_A_READ_AUTH"] != "u:t=1" {
				t.Errorf("environment_variables = %v", args["environment_variables"])
			}
			// What the flags make must pass the manager's own validation.
			factory, ok := builders.Lookup(k.tag)
			if !ok {
				t.Fatalf("no %s manager", k.tag)
			}
			if _, err := factory(builders.Request{Args: args}); err != nil {
				t.Errorf("manager refuses the flags' arguments: %v", err)
			}
			f.channels = []string{"=x"}
			if _, err := craftBuildArgs(k, f, "amd64"); err == nil || !strings.Contains(err.Error(), "SNAP=CHANNEL") {
				t.Errorf("bad --channel: %v", err)
			}
		})
	}
	k := localCraftKinds[2]
	if _, err := craftBuildArgs(k, localCraftFlags{gitRepository: "x", env: []string{"NOVALUE"}}, "amd64"); err == nil {
		t.Errorf("--env without = accepted")
	}
}

func TestLocalImage(t *testing.T) {
	args := map[string]any{}
	if _, err := localImage("", "", args); err == nil {
		t.Errorf("neither accepted")
	}
	if _, err := localImage("a", "b", args); err == nil {
		t.Errorf("both accepted")
	}
	img, err := localImage("", strings.Repeat("ab", 20), args)
	if err != nil || img.SHA1 != strings.Repeat("ab", 20) {
		t.Errorf("sha1 image: %+v %v", img, err)
	}
	if _, err := localImage("/nonexistent/chroot.tar.gz", "", args); err == nil {
		t.Errorf("missing chroot accepted")
	}
}

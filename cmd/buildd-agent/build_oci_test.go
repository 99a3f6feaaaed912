package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders"
)

func TestOCIBuildArgs(t *testing.T) {
	args, err := ociBuildArgs(localOCIFlags{gitRepository: "https://git.example/Hello.git", gitPath: "refs/heads/main",
		buildFile: "Dockerfile", buildPath: "img", buildArgs: []string{"A=1", "B=x=y"}, series: "bookworm",
		proxyURL: "http://u:p@proxy:3128", revocation: "http://proxy/tokens/u"}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"series": "bookworm", "arch_tag": "amd64", "name": "hello", "git_repository": "https://git.example/Hello.git",
		"git_path": "refs/heads/main", "build_file": "Dockerfile", "build_path": "img", "build_args": map[string]any{"A": "1", "B": "x=y"},
		"proxy_url": "http://u:p@proxy:3128", "revocation_endpoint": "http://proxy/tokens/u"}
	if diff := cmp.Diff(want, args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	// What the flags make, the manager accepts.
	if _, err := builders.ParseOCIArgs(args); err != nil {
		t.Errorf("the oci manager refuses the local args: %v", err)
	}
	for _, f := range []localOCIFlags{
		{},
		{gitRepository: "x", branch: "lp:y"},
		{gitRepository: "x", buildArgs: []string{"novalue"}},
		{gitRepository: "x", buildArgs: []string{"=v"}},
	} {
		if _, err := ociBuildArgs(f, "amd64"); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

// TestWriteDockerArchive: the archive holds what docker load checks: each
// layer the manifest names, whose uncompressed sha256 is the config's
// diff_id, and the config.
func TestWriteDockerArchive(t *testing.T) {
	dir := t.TempDir()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer.Bytes())
	zw.Close()
	sum := sha256.Sum256(layer.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	id := strings.Repeat("a", 64)
	os.WriteFile(filepath.Join(dir, id+".tar.gz"), gz.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(`{"rootfs":{"type":"layers","diff_ids":["`+diffID+`"]}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`[{"Config":"c.json","RepoTags":["hello:latest"],"Layers":["`+id+`/layer.tar"]}]`), 0o644)
	out := filepath.Join(dir, "hello.docker.tar")
	if err := writeDockerArchive(dir, out, "hello"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	members := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		members[h.Name], _ = io.ReadAll(tr)
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(members["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest: %v %s", err, members["manifest.json"])
	}
	if manifest[0].Config != "c.json" || members["c.json"] == nil || len(manifest[0].Layers) != 1 || manifest[0].RepoTags[0] != "hello:latest" {
		t.Fatalf("manifest = %+v", manifest)
	}
	zr, err := gzip.NewReader(bytes.NewReader(members[manifest[0].Layers[0]]))
	if err != nil {
		t.Fatalf("layer %s: %v", manifest[0].Layers[0], err)
	}
	raw, _ := io.ReadAll(zr)
	if s := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(s[:]) != diffID {
		t.Errorf("layer does not match its diff_id")
	}
	// A manifest naming a path outside the results is refused.
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`[{"Config":"../etc/passwd","Layers":[]}]`), 0o644)
	if err := writeDockerArchive(dir, out, "hello"); err == nil {
		t.Errorf("a config outside the results was accepted")
	}
}

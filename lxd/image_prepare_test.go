package lxd

import (
	"archive/tar"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func TestIsChrootTarball(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		data []byte
		want bool
	}{
		"launchpad gzip": {compress(t, compGzip, chrootTar(t, []member{{name: "chroot-autobuild/", typ: tar.TypeDir}, {name: "chroot-autobuild/etc/hosts", body: "x"}})), true},
		"dot zstd":       {compress(t, compZstd, chrootTar(t, []member{{name: "./chroot-autobuild/", typ: tar.TypeDir}})), true},
		"other tarball":  {compress(t, compGzip, chrootTar(t, []member{{name: "pkg-1.0/", typ: tar.TypeDir}})), false},
		"lxd image":      {chrootTar(t, []member{{name: "metadata.yaml", body: "{}"}}), false},
		"a file":         {[]byte("Format: 3.0 (quilt)\n"), false},
		"a file named":   {chrootTar(t, []member{{name: "chroot-autobuild", body: "x"}}), false},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, tc.data, 0o644)
		if got, err := isChrootTarball(p); got != tc.want || err != nil {
			t.Errorf("%s: %v %v, want %v", name, got, err, tc.want)
		}
	}
}

// A chroot imported ahead of its build is the build's image; one imported
// for another architecture is imported again.
func TestPrepare(t *testing.T) {
	arch := debArch()
	if arch == "" {
		t.Skip("no LXD architecture for this host")
	}
	f := newFakeServer()
	ctx := context.Background()
	h, err := newHost(ctx, testHostConfig(), f)
	if err != nil {
		t.Fatal(err)
	}
	data := compress(t, compGzip, chrootTar(t, []member{{name: "chroot-autobuild/", typ: tar.TypeDir}, {name: "chroot-autobuild/etc/hosts", body: "x"}}))
	p := filepath.Join(t.TempDir(), "chroot")
	os.WriteFile(p, data, 0o644)
	s := sha1.Sum(data)
	img := target.Image{Path: p, SHA1: hex.EncodeToString(s[:]), Type: "chroot"}

	h.Prepare(img.SHA1, p)
	deadline := time.Now().Add(10 * time.Second)
	for h.Imports() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Imports() != 1 {
		t.Fatalf("%d imports after Prepare", h.Imports())
	}
	f.mu.Lock()
	if len(f.aliases) != 0 {
		t.Errorf("Prepare pointed an alias: %v", f.aliases)
	}
	f.mu.Unlock()
	fp, baked, err := h.ensureImageIdentity(ctx, img, "noble", arch, nil)
	if err != nil || h.Imports() != 1 || baked == "" {
		t.Fatalf("build after Prepare: %s %q %v, %d imports", fp, baked, err, h.Imports())
	}
	f.mu.Lock()
	if f.aliases["u-noble-"+arch].Target != fp {
		t.Errorf("alias: %+v", f.aliases)
	}
	im := f.images[fp]
	im.Architecture = lxcArch[arch]
	f.images[fp] = im
	f.mu.Unlock()

	other := "i386"
	if arch == "i386" {
		other = "amd64"
	}
	fp2, _, err := h.ensureImageIdentity(ctx, img, "noble", other, nil)
	if err != nil || fp2 == fp || h.Imports() != 2 {
		t.Fatalf("build for %s: %s %v, %d imports", other, fp2, err, h.Imports())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.images[fp]; ok {
		t.Error("the image for the other architecture is still there")
	}
}

package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/google/go-cmp/cmp"
)

func TestChrootHosts(t *testing.T) {
	if got, want := string(chrootHosts([]byte("127.0.0.1\tlocalhost\n"), "example", "example.buildd")), "127.0.0.1\tlocalhost\n\n127.0.1.1\texample.buildd example\n"; got != want {
		t.Errorf("chrootHosts = %q, want %q", got, want)
	}
	if got := string(chrootHosts(nil, "h", "h.d")); !strings.HasPrefix(got, fallbackHosts) || !strings.HasSuffix(got, "\n127.0.1.1\th.d h\n") {
		t.Errorf("chrootHosts(empty) = %q", got)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv(defaultEnv, []string{"LANG=C.UTF-8", "FOO=a=b", "FOO=c"})
	want := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "FOO=c"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", d)
	}
}

func TestSubordinateIDsAddsRange(t *testing.T) {
	dir := t.TempDir()
	uid, gid := filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	os.WriteFile(uid, []byte("_lxd:100000:10000001"), 0o644) // no final newline
	ids, err := SubordinateIDs("root", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	// Past _lxd's range in subuid; the default start in the empty subgid.
	if d := cmp.Diff([]IDMap{{HostID: 10158080, Size: 65536}}, ids.UIDs); d != "" {
		t.Errorf("uids (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]IDMap{{HostID: 1000000, Size: 65536}}, ids.GIDs); d != "" {
		t.Errorf("gids (-want +got):\n%s", d)
	}
	data, _ := os.ReadFile(uid)
	if string(data) != "_lxd:100000:10000001\nroot:10158080:65536\n" {
		t.Errorf("subuid = %q", data)
	}
	// Read back, not added twice.
	again, err := SubordinateIDs("root", uid, gid)
	if err != nil || !cmp.Equal(again, ids) {
		t.Errorf("second read = %+v, %v", again, err)
	}
}

func TestChrootFactoryRejects(t *testing.T) {
	dir := t.TempDir()
	f := NewChrootFactory(ChrootConfig{BuildHome: dir, SubUIDFile: filepath.Join(dir, "u"), SubGIDFile: filepath.Join(dir, "g")})
	for _, id := range []string{"", "..", "a/b", "."} {
		if _, err := f(context.Background(), target.Spec{BuildID: id}, target.Options{}); err == nil {
			t.Errorf("build id %q accepted", id)
		}
	}
	tg, err := f(context.Background(), target.Spec{BuildID: "1"}, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Create(context.Background(), target.Image{Type: "lxd", Path: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("Create(lxd image) = %v", err)
	}
	if tg.ProxyHost() != "127.0.0.1" {
		t.Errorf("ProxyHost = %q", tg.ProxyHost())
	}
	if _, err := tg.Run(context.Background(), target.Command{Args: []string{"true"}}); err == nil {
		t.Error("Run before Start succeeded")
	}
	if err := tg.Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start = %v", err)
	}
}

func TestDetectCompression(t *testing.T) {
	for in, want := range map[string]Compression{
		"\x1f\x8b\x08": CompressionGzip, "\xfd7zXZ\x00": CompressionXz, "\x28\xb5\x2f\xfd": CompressionZstd,
		"BZh9": CompressionBzip2, "chroot-autobuild/": CompressionNone, "": CompressionNone,
	} {
		if got := DetectCompression([]byte(in)); got != want {
			t.Errorf("DetectCompression(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzUnpack: whatever the archive, nothing appears outside the root (a
// sibling directory stays empty). Needs root (chown); skipped otherwise.
func FuzzUnpack(f *testing.F) {
	f.Add(makeTar(f, entry{name: "a/", typ: tar.TypeDir, mode: 0o755}, entry{name: "a/b", typ: tar.TypeReg, body: "x"}))
	f.Add(makeTar(f, entry{name: "l", typ: tar.TypeSymlink, link: "../outside"}, entry{name: "l/x", typ: tar.TypeReg, body: "x"}))
	f.Add(makeTar(f, entry{name: "h", typ: tar.TypeLink, link: "../outside/x"}))
	f.Add(makeTar(f, entry{name: "chroot-autobuild/", typ: tar.TypeDir}, entry{name: "chroot-autobuild/x", typ: tar.TypeSymlink, link: "/"}, entry{name: "chroot-autobuild/x/y", typ: tar.TypeFifo}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Geteuid() != 0 {
			t.Skip("needs root")
		}
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		os.Mkdir(outside, 0o755)
		// A member may claim an absurd (sparse) size: bound the time.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = Unpack(ctx, bytes.NewReader(data), filepath.Join(base, "root"), UnpackOptions{})
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("unpack wrote %d entries outside the root", len(ents))
		}
		if ents, _ := os.ReadDir(base); len(ents) != 2 {
			t.Fatalf("unpack created %d entries beside the root", len(ents))
		}
	})
}

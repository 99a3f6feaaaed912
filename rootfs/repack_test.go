package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

type tarEntry struct {
	h    tar.Header
	body string
}

func readTar(t testing.TB, data []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, tarEntry{h: *h, body: string(b)})
	}
}

func TestRepackLaunchpadChroot(t *testing.T) {
	in := makeTar(t, []entry{
		{typ: tar.TypeDir, name: "chroot-autobuild/", mode: 0o755},
		{typ: tar.TypeDir, name: "chroot-autobuild/dev/", mode: 0o755},
		{typ: tar.TypeChar, name: "chroot-autobuild/dev/null", mode: 0o666},
		{typ: tar.TypeBlock, name: "chroot-autobuild/dev/loop0", mode: 0o660},
		{typ: tar.TypeFifo, name: "chroot-autobuild/dev/initctl", mode: 0o600},
		{typ: tar.TypeDir, name: "chroot-autobuild/usr/bin/", mode: 0o755},
		{typ: tar.TypeReg, name: "chroot-autobuild/usr/bin/ping", mode: 0o755, uid: 0, gid: 0, caps: []byte("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), body: "ELF"},
		{typ: tar.TypeReg, name: "chroot-autobuild/usr/bin/sudo", mode: 0o4755, uid: 0, gid: 0, body: "sudo"},
		{typ: tar.TypeLink, name: "chroot-autobuild/usr/bin/sudoedit", link: "chroot-autobuild/usr/bin/sudo"},
		{typ: tar.TypeSymlink, name: "chroot-autobuild/bin", link: "usr/bin"},
		{typ: tar.TypeReg, name: "chroot-autobuild/home/u/file", mode: 0o600, uid: 1000, gid: 1000, body: "x"},
	}...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(in)
	zw.Close()
	var out bytes.Buffer
	st, err := Repack(context.Background(), &gz, &out, RepackOptions{ExtraDirs: []string{"/srv/buildd-agent"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.DevicesDropped != 2 || st.Compression != CompressionGzip {
		t.Errorf("stats %+v", st)
	}
	got := readTar(t, out.Bytes())
	want := []struct {
		name, link string
		typ        byte
		mode       int64
		uid        int
	}{
		{"./", "", tar.TypeDir, 0o755, 0},
		{"./dev/", "", tar.TypeDir, 0o755, 0},
		{"./dev/initctl", "", tar.TypeFifo, 0o600, 0},
		{"./usr/bin/", "", tar.TypeDir, 0o755, 0},
		{"./usr/bin/ping", "", tar.TypeReg, 0o755, 0},
		{"./usr/bin/sudo", "", tar.TypeReg, 0o4755, 0},
		{"./usr/bin/sudoedit", "./usr/bin/sudo", tar.TypeLink, 0, 0},
		{"./bin", "usr/bin", tar.TypeSymlink, 0, 0},
		{"./home/u/file", "", tar.TypeReg, 0o600, 1000},
		{"./srv/buildd-agent/", "", tar.TypeDir, 0o755, 0},
	}
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("%q", g.h.Name)
		}
		t.Fatalf("%d members, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i].h
		if g.Name != w.name || g.Linkname != w.link || g.Typeflag != w.typ || g.Mode != w.mode || g.Uid != w.uid {
			t.Errorf("member %d: %q→%q type %c mode %o uid %d; want %+v", i, g.Name, g.Linkname, g.Typeflag, g.Mode, g.Uid, w)
		}
	}
	if got[4].body != "ELF" || got[4].h.PAXRecords["SCHILY.xattr.security.capability"] == "" {
		t.Errorf("ping lost its content or capability: %q %v", got[4].body, got[4].h.PAXRecords)
	}
}

func TestRepackAcceptsDotSlashMembers(t *testing.T) {
	in := makeTar(t, []entry{
		{typ: tar.TypeDir, name: "./", mode: 0o755},
		{typ: tar.TypeReg, name: "./etc/hostname", mode: 0o644, body: "h\n"},
		{typ: tar.TypeReg, name: "etc/motd", mode: 0o644, body: "m\n"},
	}...)
	var out bytes.Buffer
	if _, err := Repack(context.Background(), bytes.NewReader(in), &out, RepackOptions{}); err != nil {
		t.Fatal(err)
	}
	got := readTar(t, out.Bytes())
	if len(got) != 3 || got[1].h.Name != "./etc/hostname" || got[2].h.Name != "./etc/motd" {
		t.Fatalf("%+v", got)
	}
}

func TestRepackRefusesUnsafeMembers(t *testing.T) {
	for name, entries := range map[string][]entry{
		"dotdot":   {{typ: tar.TypeReg, name: "chroot-autobuild/../etc/passwd"}},
		"absolute": {{typ: tar.TypeReg, name: "/etc/passwd"}},
		"outside prefix": {
			{typ: tar.TypeDir, name: "chroot-autobuild/"},
			{typ: tar.TypeReg, name: "etc/passwd"},
		},
		"hard link out": {
			{typ: tar.TypeDir, name: "./"},
			{typ: tar.TypeLink, name: "./x", link: "../../etc/shadow"},
		},
		"root as file": {{typ: tar.TypeReg, name: "."}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Repack(context.Background(), bytes.NewReader(makeTar(t, entries...)), io.Discard, RepackOptions{})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("err %v, want ErrUnsafePath", err)
			}
		})
	}
}

func TestRepackRefusesNonTarballs(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte(strings.Repeat("this is not a tarball\n", 100)),
		"bad gzip":  {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff},
		"truncated": makeTar(t, []entry{{typ: tar.TypeReg, name: "./a", body: strings.Repeat("a", 4096)}}...)[:1024],
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Repack(context.Background(), bytes.NewReader(data), io.Discard, RepackOptions{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// FuzzRepack: any input gives an error or a tarball whose every member is
// "./"-relative, with no device node and no ".." segment.
func FuzzRepack(f *testing.F) {
	f.Add(makeTar(f, []entry{
		{typ: tar.TypeDir, name: "chroot-autobuild/", mode: 0o755},
		{typ: tar.TypeChar, name: "chroot-autobuild/dev/null"},
		{typ: tar.TypeReg, name: "chroot-autobuild/a", body: "a"},
		{typ: tar.TypeLink, name: "chroot-autobuild/b", link: "chroot-autobuild/a"},
	}...))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if _, err := Repack(context.Background(), bytes.NewReader(data), &out, RepackOptions{}); err != nil {
			return
		}
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("repacked tarball unreadable: %v", err)
			}
			if !strings.HasPrefix(h.Name, "./") || h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
				t.Fatalf("member %q type %c", h.Name, h.Typeflag)
			}
			for _, n := range []string{h.Name, h.Linkname} {
				if h.Typeflag != tar.TypeLink && n == h.Linkname {
					continue
				}
				for _, seg := range strings.Split(n, "/") {
					if seg == ".." {
						t.Fatalf("member %q → %q", h.Name, h.Linkname)
					}
				}
			}
		}
	})
}

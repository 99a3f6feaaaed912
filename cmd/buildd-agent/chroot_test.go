package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

func rootTar(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, strings.Repeat("x", int(h.Size)))
		}
	}
	tw.Close()
	return b.Bytes()
}

func TestLaunchpadRepack(t *testing.T) {
	in := rootTar(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3, Uid: 0,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02 \x00\x00\x00"}},
		&tar.Header{Name: "./usr/bin/ping6", Typeflag: tar.TypeLink, Linkname: "./usr/bin/ping"},
		&tar.Header{Name: "./var/mail", Typeflag: tar.TypeDir, Mode: 0o2775, Gid: 8},
	)
	var out bytes.Buffer
	if err := launchpadRepack(bytes.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		switch h.Name {
		case "chroot-autobuild/usr/bin/ping":
			if h.PAXRecords["SCHILY.xattr.security.capability"] == "" {
				t.Errorf("file capability lost: %v", h.PAXRecords)
			}
		case "chroot-autobuild/usr/bin/ping6":
			if h.Linkname != "chroot-autobuild/usr/bin/ping" {
				t.Errorf("hard link to %q", h.Linkname)
			}
		case "chroot-autobuild/var/mail":
			if h.Gid != 8 || h.Mode != 0o2775 {
				t.Errorf("owner/mode lost: %d %o", h.Gid, h.Mode)
			}
		}
	}
	want := "chroot-autobuild/ chroot-autobuild/usr/bin/ chroot-autobuild/usr/bin/ping chroot-autobuild/usr/bin/ping6 chroot-autobuild/var/mail"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("members %q, want %q", got, want)
	}
}

func TestLaunchpadRepackRefusesEscapes(t *testing.T) {
	for _, h := range []*tar.Header{
		{Name: "./../etc/passwd", Typeflag: tar.TypeReg},
		{Name: "./x", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"},
	} {
		if err := launchpadRepack(bytes.NewReader(rootTar(t, h)), io.Discard); err == nil {
			t.Errorf("%q -> %q accepted", h.Name, h.Linkname)
		}
	}
}

func FuzzChrootMemberName(f *testing.F) {
	for _, s := range []string{"./", "./usr/bin/", "usr/lib/x", "./../x", "/abs", "a/../../b", "./a//b/./c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, n string) {
		name, ok := chrootMemberName(n)
		if !ok {
			return
		}
		if !strings.HasPrefix(name, "chroot-autobuild/") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
			t.Fatalf("%q -> %q", n, name)
		}
	})
}

func FuzzLaunchpadRepack(f *testing.F) {
	f.Add(rootTar(f, &tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "./a", Typeflag: tar.TypeReg, Size: 1}))
	f.Add([]byte("not a tarball"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		if launchpadRepack(bytes.NewReader(in), &out) != nil {
			return
		}
		zr, err := gzip.NewReader(&out)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err != nil {
				return
			}
			if !strings.HasPrefix(h.Name, "chroot-autobuild/") {
				t.Fatalf("member %q outside chroot-autobuild/", h.Name)
			}
		}
	})
}

func TestPlanChroot(t *testing.T) {
	p, err := planChroot(chrootFlags{series: "bookworm", arch: "arm64", variant: "buildd"})
	if err != nil {
		t.Fatal(err)
	}
	if p.mirror != "http://deb.debian.org/debian" || p.components != "main" {
		t.Errorf("bookworm plan %+v", p)
	}
	args := strings.Join(p.mmdebstrapArgs(), " ")
	if args != "--variant=buildd --architectures=arm64 --format=tar --components=main --include=apt bookworm - http://deb.debian.org/debian" {
		t.Errorf("mmdebstrap %s", args)
	}
	if _, err := planChroot(chrootFlags{arch: "amd64"}); err == nil {
		t.Error("no series accepted")
	}
	if _, err := planChroot(chrootFlags{series: "bookworm", arch: "amd64", include: "a b"}); err == nil {
		t.Error("a space in --include accepted")
	}
	a, _ := planChroot(chrootFlags{series: "bookworm", arch: "amd64", variant: "buildd"})
	b, _ := planChroot(chrootFlags{series: "bookworm", arch: "amd64", variant: "minbase"})
	if a.key() == b.key() {
		t.Error("the cache key ignores the variant")
	}
}

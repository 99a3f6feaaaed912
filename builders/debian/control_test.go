package debian

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const signedDsc = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: hello
Binary: hello
Architecture: any
Version: 2.10-3
Build-Depends: debhelper-compat (= 13),
 libfoo-dev:any (>= 1.0) [linux-any] <!nocheck>
Build-Depends-Arch: qux
Build-Depends-Indep: texlive-base
Checksums-Sha1:
 f7bebf6f9c62a2295e889f66e05ce9bfaed9ace3 725946 hello_2.10.orig.tar.gz
 a81bc7e1b2b2a2ad8b7b0c2bfd5c8ab6f0d1a91f 12688 hello_2.10-3.debian.tar.xz
Checksums-Sha256:
 31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b 725946 hello_2.10.orig.tar.gz
 4ea69de913428a4034d30dcdcb34ab84f5c4a76acf9040f3091f0d3fac411b60 12688 hello_2.10-3.debian.tar.xz
Files:
 6cd0ffea3884a4e79330338dcc2987d6 725946 hello_2.10.orig.tar.gz
 27a3ee3bae5cc7ea1d2f5b2f1bf1c8ad 12688 hello_2.10-3.debian.tar.xz

-----BEGIN PGP SIGNATURE-----

iQIzBAEBCgAdFiEE
=abcd
-----END PGP SIGNATURE-----
`

func TestParseControl(t *testing.T) {
	in := "# comment\nPackage: foo\nVersion: 1.0\nDescription: short\n long line\n .\n more  \n\n \t \nPackage: bar\r\nversion:2.0\n#c\nX-Multi:\n a\n\tb\n\n\n"
	got, err := ParseControl(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Paragraph{
		{{"Package", "foo"}, {"Version", "1.0"}, {"Description", "short\n long line\n .\n more"}},
		{{"Package", "bar"}, {"version", "2.0"}, {"X-Multi", "\n a\n\tb"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseControl = %q, want %q", got, want)
	}
	if v, _ := got[1].Get("VERSION"); v != "2.0" {
		t.Errorf("case-insensitive Get = %q", v)
	}
	// One byte at a time gives the same.
	got2, err := ParseControl(iotest.OneByteReader(strings.NewReader(in)))
	if err != nil || !reflect.DeepEqual(got2, want) {
		t.Errorf("one byte at a time: %q, %v", got2, err)
	}
}

func TestParseControlErrors(t *testing.T) {
	for name, in := range map[string]string{
		"continuation first":   " foo\n",
		"no colon":             "Package foo\n",
		"empty name":           ": foo\n",
		"dash name":            "-Foo: bar\n",
		"space in name":        "Foo Bar: baz\n",
		"duplicate":            "Package: a\npackage: b\n",
		"truncated signed":     "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA1\n\nPackage: a\n",
		"truncated signature":  "-----BEGIN PGP SIGNED MESSAGE-----\n\nPackage: a\n-----BEGIN PGP SIGNATURE-----\nabc\n",
		"after signature":      "-----BEGIN PGP SIGNED MESSAGE-----\n\nPackage: a\n-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\nPackage: evil\n",
		"unescaped dash":       "-----BEGIN PGP SIGNED MESSAGE-----\n\nPackage: a\n-----BEGIN PGP SIGNED MESSAGE-----\n-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n",
		"long line":            "A: " + strings.Repeat("x", MaxControlLine) + "\n",
		"nul in name":          "A\x00: b\n",
		"unsigned pgp trailer": "Package: a\n-----BEGIN PGP SIGNATURE-----\n",
	} {
		if p, err := ParseControl(strings.NewReader(in)); err == nil {
			t.Errorf("%s: ParseControl = %q, want an error", name, p)
		}
	}
}

func TestParseControlReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ParseControl(iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Errorf("ParseControl error = %v, want %v", err, boom)
	}
}

func TestParseControlTotalLimit(t *testing.T) {
	// Many small paragraphs past MaxControlSize.
	r := strings.NewReader(strings.Repeat("A: b\n\n", MaxControlSize/6+10))
	if _, err := ParseControl(r); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ParseControl of %d bytes: %v", r.Size(), err)
	}
}

func TestParseDsc(t *testing.T) {
	d, err := ParseDsc(strings.NewReader(signedDsc))
	if err != nil {
		t.Fatal(err)
	}
	if d.Source != "hello" || d.Version != "2.10-3" || d.BuildDependsArch != "qux" || d.BuildDependsIndep != "texlive-base" {
		t.Errorf("ParseDsc = %+v", d)
	}
	if d.BuildDepends != "debhelper-compat (= 13),\n libfoo-dev:any (>= 1.0) [linux-any] <!nocheck>" {
		t.Errorf("Build-Depends = %q", d.BuildDepends)
	}
	wantFiles := []FileEntry{
		{"6cd0ffea3884a4e79330338dcc2987d6", 725946, "hello_2.10.orig.tar.gz"},
		{"27a3ee3bae5cc7ea1d2f5b2f1bf1c8ad", 12688, "hello_2.10-3.debian.tar.xz"},
	}
	if !reflect.DeepEqual(d.Files, wantFiles) {
		t.Errorf("Files = %+v", d.Files)
	}
	if len(d.ChecksumsSha1) != 2 || len(d.ChecksumsSha256) != 2 || d.ChecksumsSha256[1].Size != 12688 {
		t.Errorf("checksums = %+v %+v", d.ChecksumsSha1, d.ChecksumsSha256)
	}
}

// TestParseDscDashEscaped checks that a dash-escaped line in the signed
// text is unescaped.
func TestParseDscDashEscaped(t *testing.T) {
	in := "-----BEGIN PGP SIGNED MESSAGE-----\n\nSource: a\n- X-Escaped: yes\n-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n"
	d, err := ParseDsc(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if d.Paragraph.Value("X-Escaped") != "yes" {
		t.Errorf("fields = %q", d.Paragraph)
	}
}

func TestDscBuildDependencies(t *testing.T) {
	// getBuildDepends: Build-Depends, Build-Depends-Arch, and -Indep for
	// arch-indep builds; missing fields are fine.
	dsc := "Package: foo\nBuild-Depends: debhelper (>= 9~), bar | baz\nBuild-Depends-Arch: qux\nBuild-Depends-Indep: texlive-base\n"
	d, err := ParseDsc(strings.NewReader(dsc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		indep bool
		want  string
	}{
		{false, "debhelper (>= 9~), bar | baz, qux"},
		{true, "debhelper (>= 9~), bar | baz, qux, texlive-base"},
	} {
		deps, err := d.BuildDependencies(c.indep)
		if err != nil || deps.String() != c.want {
			t.Errorf("BuildDependencies(%v) = %q, %v; want %q", c.indep, deps, err, c.want)
		}
	}
	d, err = ParseDsc(strings.NewReader("Package: foo\n"))
	if err != nil {
		t.Fatal(err)
	}
	if deps, err := d.BuildDependencies(true); err != nil || len(deps) != 0 {
		t.Errorf("no fields: %v, %v", deps, err)
	}
	d, _ = ParseDsc(strings.NewReader("Package: foo\nBuild-Depends: (broken\n"))
	if _, err := d.BuildDependencies(false); err == nil {
		t.Error("unparsable Build-Depends accepted")
	}
}

const goodChanges = `Format: 1.8
Source: feas-hello
Binary: feas-hello
Architecture: amd64
Version: 1.0
Distribution: bookworm
Checksums-Sha256:
 0f343b0931126a20f133d67c2b018a3b1e2a8d6a0e0d1a5ff2b4b4b1c9e7a3b1 5128 feas-hello_1.0_amd64.buildinfo
 1f343b0931126a20f133d67c2b018a3b1e2a8d6a0e0d1a5ff2b4b4b1c9e7a3b1 2656 feas-hello_1.0_amd64.deb
Files:
 31b5f26bb600b7c112831ee6d140e96a 5128 misc optional feas-hello_1.0_amd64.buildinfo
 c60a7021ad09766678cd16a2c1b3834a 2656 misc optional feas-hello_1.0_amd64.deb
`

func TestParseChanges(t *testing.T) {
	c, err := ParseChanges(strings.NewReader(goodChanges))
	if err != nil {
		t.Fatal(err)
	}
	want := []ChangesFile{
		{FileEntry{"31b5f26bb600b7c112831ee6d140e96a", 5128, "feas-hello_1.0_amd64.buildinfo"}, "misc", "optional"},
		{FileEntry{"c60a7021ad09766678cd16a2c1b3834a", 2656, "feas-hello_1.0_amd64.deb"}, "misc", "optional"},
	}
	if !reflect.DeepEqual(c.Files, want) || c.Source != "feas-hello" || c.Architecture != "amd64" || c.Version != "1.0" {
		t.Errorf("ParseChanges = %+v", c)
	}
	if len(c.ChecksumsSha256) != 2 {
		t.Errorf("Checksums-Sha256 = %+v", c.ChecksumsSha256)
	}
}

func TestParseChangesHostile(t *testing.T) {
	files := func(lines ...string) string {
		return "Source: x\nFiles:\n " + strings.Join(lines, "\n ") + "\n"
	}
	const md5 = "31b5f26bb600b7c112831ee6d140e96a"
	for name, in := range map[string]string{
		"no files":      "Source: x\n",
		"slash":         files(md5 + " 1 misc optional ../../etc/passwd"),
		"abs":           files(md5 + " 1 misc optional /etc/passwd"),
		"dotdot":        files(md5 + " 1 misc optional .."),
		"dot":           files(md5 + " 1 misc optional ."),
		"dash":          files(md5 + " 1 misc optional -rf"),
		"control char":  files(md5 + " 1 misc optional a\x1bb"),
		"four words":    files(md5 + " 1 misc a.deb"),
		"six words":     files(md5 + " 1 misc optional a.deb b.deb"),
		"bad md5":       files("xyz 1 misc optional a.deb"),
		"short md5":     files("31b5f26b 1 misc optional a.deb"),
		"negative size": files(md5 + " -1 misc optional a.deb"),
		"plus size":     files(md5 + " +1 misc optional a.deb"),
		"huge size":     files(md5 + " 99999999999999999999 misc optional a.deb"),
		"twice":         files(md5+" 1 misc optional a.deb", md5+" 1 misc optional a.deb"),
		"first line":    "Files: " + md5 + " 1 misc optional a.deb\n",
		"two paras":     files(md5+" 1 misc optional a.deb") + "\nFiles:\n " + md5 + " 1 misc optional b.deb\n",
		"long name":     files(md5 + " 1 misc optional " + strings.Repeat("a", 256)),
		"bad sha256":    "Checksums-Sha256:\n 00 1 a.deb\n" + files(md5 + " 1 misc optional a.deb")[len("Source: x\n"):],
	} {
		if c, err := ParseChanges(strings.NewReader(in)); err == nil {
			t.Errorf("%s: ParseChanges = %+v, want an error", name, c)
		}
	}
}

func TestCheckFileName(t *testing.T) {
	for _, ok := range []string{"a.deb", "foo_1.0_amd64.changes", "a b", ".hidden", "a..b", "x-"} {
		if err := CheckFileName(ok); err != nil {
			t.Errorf("CheckFileName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "-x", "a/b", "/", "a\nb", "a\x00b", "a\x7fb", strings.Repeat("x", 256)} {
		if err := CheckFileName(bad); err == nil {
			t.Errorf("CheckFileName(%q) accepted", bad)
		}
	}
}

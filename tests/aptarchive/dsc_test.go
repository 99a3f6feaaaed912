package aptarchive

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const quiltDsc = `Format: 3.0 (quilt)
Source: feas-hello-quilt
Binary: feas-hello-quilt
Architecture: any
Version: 1.0-1
Checksums-Sha256:
 3d0b0f6d7e2f8ffbb39c4c3f93a2a4d4d2e4e8a7b8e3a0d3c2b1a0f9e8d7c6b5 430 feas-hello-quilt_1.0.orig.tar.gz
Files:
 0cc175b9c0f1b6a831c399e269772661 430 feas-hello-quilt_1.0.orig.tar.gz
 92eb5ffee6ae2fec3ad71c777531578f 1240 feas-hello-quilt_1.0-1.debian.tar.xz
`

func TestParseDscFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{"quilt", quiltDsc, []string{"feas-hello-quilt_1.0.orig.tar.gz", "feas-hello-quilt_1.0-1.debian.tar.xz"}, ""},
		{"crlf and lower-case field", "Source: x\r\nfiles:\r\n 0 1 x_1.tar.xz\r\n", []string{"x_1.tar.xz"}, ""},
		{"signed", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nSource: x\nFiles:\n 0 1 x_1.tar.xz\n-----BEGIN PGP SIGNATURE-----\n\nFiles:\n 0 1 evil.tar.xz\n-----END PGP SIGNATURE-----\n",
			[]string{"x_1.tar.xz"}, ""},
		{"dash-escaped", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n- Source: x\nFiles:\n 0 1 x_1.tar.xz\n-----BEGIN PGP SIGNATURE-----\n", []string{"x_1.tar.xz"}, ""},
		{"field after Files", "Files:\n 0 1 a.tar.xz\nChecksums-Sha1:\n 0 1 b.tar.xz\n", []string{"a.tar.xz"}, ""},
		{"empty Files", "Source: x\nFiles:\n", nil, ""},
		{"no Files", "Source: x\n", nil, "no Files field"},
		{"slash", "Files:\n 0 1 ../../etc/passwd\n", nil, "unsafe"},
		{"dot-dot", "Files:\n 0 1 ..\n", nil, "unsafe"},
		{"absolute", "Files:\n 0 1 /etc/passwd\n", nil, "unsafe"},
		{"short line", "Files:\n 0 x.tar.xz\n", nil, "malformed Files line"},
		{"value on Files line", "Files: 0 1 x.tar.xz\n", nil, "first line"},
		{"two Files fields", "Files:\n 0 1 a\nFiles:\n 0 1 b\n", nil, "more than one"},
		{"no colon", "Source x\n", nil, "malformed line"},
		{"long line", "Files:\n 0 1 " + strings.Repeat("a", maxDscLine+1) + "\n", nil, "cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDscFiles(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFilesMapsNextToTheDsc(t *testing.T) {
	dir := t.TempDir()
	dsc := filepath.Join(dir, "feas-hello-quilt_1.0-1.dsc")
	if err := os.WriteFile(dsc, []byte(quiltDsc), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Files(dsc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"feas-hello-quilt_1.0-1.dsc":           dsc,
		"feas-hello-quilt_1.0.orig.tar.gz":     filepath.Join(dir, "feas-hello-quilt_1.0.orig.tar.gz"),
		"feas-hello-quilt_1.0-1.debian.tar.xz": filepath.Join(dir, "feas-hello-quilt_1.0-1.debian.tar.xz"),
	}
	if len(got) != len(want) {
		t.Fatalf("Files = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Files[%s] = %q, want %q", k, got[k], v)
		}
	}
	if _, err := Files(filepath.Join(dir, "missing.dsc")); err == nil {
		t.Error("Files of a missing .dsc succeeded")
	}
}

func FuzzParseDscFiles(f *testing.F) {
	f.Add([]byte(quiltDsc))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nFiles:\n 0 1 x\n-----BEGIN PGP SIGNATURE-----\n"))
	f.Add([]byte("Files:\n 0 1 ../x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := ParseDscFiles(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		for _, n := range names {
			// Whatever the input, a name stays inside the .dsc's directory.
			if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") || filepath.Base(n) != n {
				t.Fatalf("unsafe name %q from %q", n, data)
			}
		}
	})
}

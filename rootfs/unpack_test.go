package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

type entry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	body       string
	caps       []byte
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if e.typ == tar.TypeChar {
			h.Devmajor, h.Devminor = 1, 3
		}
		if e.caps != nil {
			h.PAXRecords = map[string]string{"SCHILY.xattr." + CapsXattr: string(e.caps)}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var testIDs = IDMapping{
	UIDs: []IDMap{{NSID: 0, HostID: 1000000, Size: 65536}},
	GIDs: []IDMap{{NSID: 0, HostID: 1000000, Size: 65536}},
}

func compressors(t *testing.T) map[Compression]func([]byte) []byte {
	return map[Compression]func([]byte) []byte{
		CompressionNone: func(b []byte) []byte { return b },
		CompressionGzip: func(b []byte) []byte {
			var o bytes.Buffer
			w := gzip.NewWriter(&o)
			w.Write(b)
			w.Close()
			return o.Bytes()
		},
		CompressionXz: func(b []byte) []byte {
			var o bytes.Buffer
			w, _ := xz.NewWriter(&o)
			w.Write(b)
			w.Close()
			return o.Bytes()
		},
		CompressionZstd: func(b []byte) []byte {
			var o bytes.Buffer
			w, _ := zstd.NewWriter(&o)
			w.Write(b)
			w.Close()
			return o.Bytes()
		},
		CompressionBzip2: func(b []byte) []byte {
			testenv.RequireCommand(t, "bzip2")
			cmd := exec.Command("bzip2", "-c")
			cmd.Stdin = bytes.NewReader(b)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}

func TestUnpack(t *testing.T) {
	testenv.RequireRoot(t)
	v2 := Caps{Permitted: 1 << unix.CAP_NET_RAW, Effective: true}.EncodeV2()
	data := makeTar(t,
		entry{name: "chroot-autobuild/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "chroot-autobuild/usr/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "chroot-autobuild/usr/bin/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "chroot-autobuild/usr/bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", caps: v2},
		entry{name: "chroot-autobuild/usr/bin/sudo", typ: tar.TypeReg, mode: 0o4755, body: "sudo"},
		entry{name: "chroot-autobuild/usr/bin/wall", typ: tar.TypeReg, mode: 0o2755, gid: 5, body: "wall"},
		entry{name: "chroot-autobuild/usr/bin/sudoedit", typ: tar.TypeLink, link: "chroot-autobuild/usr/bin/sudo"},
		entry{name: "chroot-autobuild/bin", typ: tar.TypeSymlink, link: "usr/bin"},
		entry{name: "chroot-autobuild/home/user/file", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, body: "x"},
		entry{name: "chroot-autobuild/dev/null", typ: tar.TypeChar, mode: 0o666},
		entry{name: "chroot-autobuild/run/fifo", typ: tar.TypeFifo, mode: 0o600},
		entry{name: "chroot-autobuild/tmp/", typ: tar.TypeDir, mode: 0o1777},
	)
	for comp, compress := range compressors(t) {
		for _, privileged := range []bool{false, true} {
			t.Run(string(comp)+map[bool]string{true: "-privileged", false: ""}[privileged], func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "root")
				st, err := Unpack(context.Background(), bytes.NewReader(compress(data)), dir, UnpackOptions{IDs: testIDs, Privileged: privileged})
				if err != nil {
					t.Fatal(err)
				}
				if st.Compression != comp || st.SkippedDevices != 1 || st.Caps != 1 || st.Hardlinks != 1 || st.Fifos != 1 {
					t.Errorf("stats = %+v", st)
				}
				for name, want := range map[string]struct {
					mode     os.FileMode
					uid, gid uint32
				}{
					".":              {os.ModeDir | 0o755, 1000000, 1000000},
					"usr/bin/ping":   {0o755, 1000000, 1000000},
					"usr/bin/sudo":   {os.ModeSetuid | 0o755, 1000000, 1000000},
					"usr/bin/wall":   {os.ModeSetgid | 0o755, 1000000, 1000005},
					"bin":            {os.ModeSymlink | 0o777, 1000000, 1000000},
					"home/user/file": {0o600, 1001000, 1001000},
					"run/fifo":       {os.ModeNamedPipe | 0o600, 1000000, 1000000},
					"tmp":            {os.ModeDir | os.ModeSticky | 0o777, 1000000, 1000000},
				} {
					fi, err := os.Lstat(filepath.Join(dir, name))
					if err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					sys := fi.Sys().(*syscallStat)
					if fi.Mode() != want.mode || sys.Uid != want.uid || sys.Gid != want.gid {
						t.Errorf("%s: %v %d:%d, want %v %d:%d", name, fi.Mode(), sys.Uid, sys.Gid, want.mode, want.uid, want.gid)
					}
					if name != "bin" && !fi.ModTime().Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) && name != "home/user/file" {
						t.Errorf("%s: mtime %v", name, fi.ModTime())
					}
				}
				if l, _ := os.Readlink(filepath.Join(dir, "bin")); l != "usr/bin" {
					t.Errorf("bin -> %q", l)
				}
				a, _ := os.Stat(filepath.Join(dir, "usr/bin/sudo"))
				b, _ := os.Stat(filepath.Join(dir, "usr/bin/sudoedit"))
				if !os.SameFile(a, b) {
					t.Error("hard link not kept")
				}
				if _, err := os.Lstat(filepath.Join(dir, "dev/null")); err == nil {
					t.Error("device node created")
				}
				c, ok, err := GetCaps(filepath.Join(dir, "usr/bin/ping"))
				if err != nil || !ok {
					t.Fatalf("GetCaps = %v, %v", ok, err)
				}
				want := Caps{Permitted: 1 << unix.CAP_NET_RAW, Effective: true, Version: 3, RootID: 1000000}
				if privileged {
					want = Caps{Permitted: 1 << unix.CAP_NET_RAW, Effective: true, Version: 2}
				}
				if c != want {
					t.Errorf("caps = %+v, want %+v", c, want)
				}
			})
		}
	}
}

// TestUnpackAttacks: no member can write or link outside the root; a
// canary file on the host keeps its content and mtime.
func TestUnpackAttacks(t *testing.T) {
	testenv.RequireRoot(t)
	host := t.TempDir()
	canary := filepath.Join(host, "canary")
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) {
		if err := os.WriteFile(canary, []byte("canary"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(canary, old, old)
	}
	check := func(t *testing.T) {
		t.Helper()
		data, err := os.ReadFile(canary)
		fi, _ := os.Lstat(canary)
		if err != nil || string(data) != "canary" || !fi.ModTime().Equal(old) || fi.Mode() != 0o644 {
			t.Errorf("canary touched: %q %v %v", data, fi.ModTime(), err)
		}
		if n := fi.Sys().(*syscallStat).Nlink; n != 1 {
			t.Errorf("canary has %d links", n)
		}
		ents, _ := os.ReadDir(host)
		if len(ents) != 1 {
			t.Errorf("host dir has %d entries", len(ents))
		}
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		wantErr bool
	}{
		{"dotdot", []entry{{name: "../canary", typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, true},
		{"dotdot inside", []entry{{name: "a/../../canary", typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, true},
		{"absolute name", []entry{{name: canary, typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, false},
		{"write through dir symlink", []entry{
			{name: "l", typ: tar.TypeSymlink, link: host},
			{name: "l/canary", typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, true},
		{"write through relative dir symlink", []entry{
			{name: "l", typ: tar.TypeSymlink, link: "../../../../../../../../.." + host},
			{name: "l/canary", typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, true},
		{"write through file symlink", []entry{
			{name: "f", typ: tar.TypeSymlink, link: canary},
			{name: "f", typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, false},
		{"chmod through symlink", []entry{
			{name: "f", typ: tar.TypeSymlink, link: canary},
			{name: "f", typ: tar.TypeDir, mode: 0o777}}, false},
		{"hard link to host file", []entry{{name: "h", typ: tar.TypeLink, link: canary}}, true},
		{"hard link via dotdot", []entry{{name: "h", typ: tar.TypeLink, link: "../canary"}}, true},
		{"hard link through symlink dir", []entry{
			{name: "l", typ: tar.TypeSymlink, link: host},
			{name: "h", typ: tar.TypeLink, link: "l/canary"}}, true},
		{"hard link to symlink then write", []entry{
			{name: "s", typ: tar.TypeSymlink, link: canary},
			{name: "h", typ: tar.TypeLink, link: "s"},
			{name: "h", typ: tar.TypeReg, mode: 0o644, body: "pwned"}}, false},
		{"fifo through symlink", []entry{
			{name: "l", typ: tar.TypeSymlink, link: host},
			{name: "l/fifo", typ: tar.TypeFifo, mode: 0o644}}, true},
		{"mkdir through symlink", []entry{
			{name: "l", typ: tar.TypeSymlink, link: host},
			{name: "l/newdir/", typ: tar.TypeDir, mode: 0o755}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withWithoutOpenat2(t, func(t *testing.T) {
				setup(t)
				dir := filepath.Join(t.TempDir(), "root")
				_, err := Unpack(context.Background(), bytes.NewReader(makeTar(t, tc.entries...)), dir, UnpackOptions{IDs: testIDs})
				if tc.wantErr != (err != nil) {
					t.Errorf("Unpack = %v, want error %v", err, tc.wantErr)
				}
				if err != nil && !strings.Contains(err.Error(), "member") {
					t.Errorf("error does not name the member: %v", err)
				}
				check(t)
			})
		})
	}
}

func TestUnpackBadInput(t *testing.T) {
	testenv.RequireRoot(t)
	for name, data := range map[string][]byte{
		"truncated gzip": compressors(t)[CompressionGzip](makeTar(t, entry{name: "a", typ: tar.TypeReg, body: "aaaa"}))[:20],
		"garbage":        bytes.Repeat([]byte("not a tar file "), 100),
		"bad caps":       makeTar(t, entry{name: "a", typ: tar.TypeReg, body: "a", caps: []byte{1, 2, 3}}),
		"unmapped uid":   makeTar(t, entry{name: "a", typ: tar.TypeReg, uid: 70000}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Unpack(context.Background(), bytes.NewReader(data), filepath.Join(t.TempDir(), "r"), UnpackOptions{IDs: testIDs})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "cannot unpack into") {
				t.Errorf("error = %v", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var many []entry
	for i := 0; i < 600; i++ {
		many = append(many, entry{name: "f" + string(rune('a'+i%26)) + strings.Repeat("x", i%7), typ: tar.TypeReg})
	}
	if _, err := Unpack(ctx, bytes.NewReader(makeTar(t, many...)), filepath.Join(t.TempDir(), "r"), UnpackOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Unpack = %v", err)
	}
}

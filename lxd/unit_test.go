package lxd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// security.capability layout constants, to build test values.
const (
	vfsCapRevision1 = 0x01000000
	vfsCapRevision2 = 0x02000000
	vfsCapRevision3 = 0x03000000
	vfsCapFlagsEff  = 0x000001
)

func capsV(rev uint32, eff bool, perm0, inh0, perm1, inh1 uint32, rootid *uint32) []byte {
	magic := rev
	if eff {
		magic |= vfsCapFlagsEff
	}
	words := []uint32{magic, perm0, inh0}
	if rev != vfsCapRevision1 {
		words = append(words, perm1, inh1)
	}
	if rootid != nil {
		words = append(words, *rootid)
	}
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

func TestCapsToV2(t *testing.T) {
	root := uint32(100000)
	netRaw := uint32(1 << 13)
	v2 := capsV(vfsCapRevision2, true, netRaw, 0, 0, 0, nil)
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []byte
		wantErr bool
	}{
		{"v2 unchanged", v2, v2, false},
		{"v3 foreign rootid", capsV(vfsCapRevision3, true, netRaw, 0, 0, 0, &root), v2, false},
		{"v1 upgraded", capsV(vfsCapRevision1, true, netRaw, 0, 0, 0, nil), v2, false},
		{"high caps kept", capsV(vfsCapRevision3, false, 0, 1, 2, 3, &root), capsV(vfsCapRevision2, false, 0, 1, 2, 3, nil), false},
		{"short", []byte{1, 2}, nil, true},
		{"bad size for revision", append(v2, 0), nil, true},
		{"unknown revision", capsV(0x04000000, false, 0, 0, 0, 0, &root), nil, true},
		{"unknown flag", capsV(vfsCapRevision2|0x2, false, 0, 0, 0, 0, nil), nil, true},
	} {
		got, err := capsToV2(tc.in)
		if (err != nil) != tc.wantErr || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %x, %v; want %x (err %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

type member struct {
	name, body, link string
	typ              byte
	pax              map[string]string
}

func chrootTar(t testing.TB, members []member) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Linkname: m.link, Mode: 0o755, Uid: 0, Gid: 0,
			ModTime: time.Unix(1700000000, 0), PAXRecords: m.pax}
		if typ == tar.TypeReg {
			h.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, m.body)
	}
	tw.Close()
	return b.Bytes()
}

func compress(t testing.TB, kind compression, data []byte) []byte {
	var b bytes.Buffer
	switch kind {
	case compNone:
		return data
	case compGzip:
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case compXZ:
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case compZstd:
		w, _ := zstd.NewWriter(&b)
		w.Write(data)
		w.Close()
	case compBzip2:
		if _, err := exec.LookPath("bzip2"); err != nil {
			t.Skip("no bzip2 program to make the test input")
		}
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b.Bytes()
}

type imageMember struct {
	Name, Link, Body string
	Type             byte
	Caps             string
}

func readImage(t testing.TB, data []byte) []imageMember {
	tr := tar.NewReader(bytes.NewReader(data))
	var out []imageMember
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out = append(out, imageMember{Name: h.Name, Link: h.Linkname, Body: string(body), Type: h.Typeflag,
			Caps: hex.EncodeToString([]byte(h.PAXRecords[paxXattrCaps]))})
	}
}

func TestConvertChroot(t *testing.T) {
	root := uint32(1000000)
	netRaw := uint32(1 << 13)
	v3 := string(capsV(vfsCapRevision3, true, netRaw, 0, 0, 0, &root))
	v2hex := hex.EncodeToString(capsV(vfsCapRevision2, true, netRaw, 0, 0, 0, nil))
	meta := imageMetadata{Architecture: "x86_64", Properties: map[string]string{
		"architecture": "amd64", "description": "Launchpad chroot for Ubuntu noble (amd64)", "os": "Ubuntu", "series": "noble",
	}}
	wantMeta := `{
    "architecture": "x86_64",
    "creation_date": 1700000000,
    "properties": {
        "architecture": "amd64",
        "description": "Launchpad chroot for Ubuntu noble (amd64)",
        "os": "Ubuntu",
        "series": "noble"
    }
}
`
	for _, prefix := range []string{"chroot-autobuild/", "./", ""} {
		in := chrootTar(t, []member{
			{name: prefix, typ: tar.TypeDir},
			{name: prefix + "usr/bin/ping", body: "ELF", pax: map[string]string{paxXattrCaps: v3, "SCHILY.xattr.user.x": "y"}},
			{name: prefix + "usr/bin/ping4", typ: tar.TypeLink, link: prefix + "usr/bin/ping"},
			{name: prefix + "bin", typ: tar.TypeSymlink, link: "usr/bin"},
		})
		if prefix == "" {
			in = chrootTar(t, []member{
				{name: "usr/bin/ping", body: "ELF", pax: map[string]string{paxXattrCaps: v3, "SCHILY.xattr.user.x": "y"}},
				{name: "usr/bin/ping4", typ: tar.TypeLink, link: "usr/bin/ping"},
				{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
			})
		}
		for _, kind := range []compression{compNone, compGzip, compXZ, compZstd, compBzip2} {
			t.Run(prefix+string(kind), func(t *testing.T) {
				var out bytes.Buffer
				if err := convertChroot(&out, bytes.NewReader(compress(t, kind, in)), meta); err != nil {
					t.Fatal(err)
				}
				got := readImage(t, out.Bytes())
				want := []imageMember{
					{Name: "metadata.yaml", Body: wantMeta, Type: tar.TypeReg},
					{Name: "rootfs/", Type: tar.TypeDir},
					{Name: "rootfs/usr/bin/ping", Body: "ELF", Type: tar.TypeReg, Caps: v2hex},
					{Name: "rootfs/usr/bin/ping4", Link: "rootfs/usr/bin/ping", Type: tar.TypeLink},
					{Name: "rootfs/bin", Link: "usr/bin", Type: tar.TypeSymlink},
				}
				if prefix == "" {
					want = append(want[:1], want[2:]...)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("image (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestConvertChrootRejects(t *testing.T) {
	meta := imageMetadata{Architecture: "x86_64"}
	for name, in := range map[string][]byte{
		"empty tar":     chrootTar(t, nil),
		"not a tarball": []byte("hello, this is not a tar archive at all, and it is long enough to fill a header? no"),
		"dotdot":        chrootTar(t, []member{{name: "chroot-autobuild/../../etc/x", body: "x"}}),
		"hardlink out":  chrootTar(t, []member{{name: "a", typ: tar.TypeLink, link: "../etc/shadow"}}),
		"bad caps":      chrootTar(t, []member{{name: "a", body: "x", pax: map[string]string{paxXattrCaps: "\x01\x02"}}}),
		"truncated gz":  compress(t, compGzip, chrootTar(t, []member{{name: "a", body: strings.Repeat("x", 10000)}}))[:100],
	} {
		if err := convertChroot(io.Discard, bytes.NewReader(in), meta); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzConvertChroot(f *testing.F) {
	f.Add(chrootTar(f, []member{{name: "chroot-autobuild/", typ: tar.TypeDir}, {name: "chroot-autobuild/a", body: "x"}}))
	f.Add(compress(f, compGzip, chrootTar(f, []member{{name: "./a", typ: tar.TypeLink, link: "./b"}})))
	f.Add([]byte("\x28\xb5\x2f\xfd garbage"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		errc := make(chan error, 1)
		go func() { errc <- convertChroot(&out, bytes.NewReader(in), imageMetadata{Architecture: "x86_64"}) }()
		select {
		case err := <-errc:
			if err != nil {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("HANG on %x", in)
		}
		// Whatever was accepted is a tar whose first member is
		// metadata.yaml and whose others are all under rootfs/.
		tr := tar.NewReader(&out)
		for i := 0; ; i++ {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("output is not a tar: %v", err)
			}
			if i == 0 && h.Name != "metadata.yaml" || i > 0 && !strings.HasPrefix(h.Name, "rootfs/") {
				t.Fatalf("member %d: %q", i, h.Name)
			}
			if h.Typeflag == tar.TypeLink && !strings.HasPrefix(h.Linkname, "rootfs/") {
				t.Fatalf("hard link %q -> %q", h.Name, h.Linkname)
			}
			for _, p := range strings.Split(h.Name, "/") {
				if p == ".." {
					t.Fatalf("member %q climbs out", h.Name)
				}
			}
		}
	})
}

func TestImageMemberName(t *testing.T) {
	for in, want := range map[string]string{
		"chroot-autobuild":          "rootfs/",
		"chroot-autobuild/":         "rootfs/",
		"chroot-autobuild/etc/x":    "rootfs/etc/x",
		"./chroot-autobuild/etc/":   "rootfs/etc/",
		"/etc/x":                    "rootfs/etc/x",
		"./":                        "rootfs/",
		".":                         "rootfs/",
		"etc/chroot-autobuild/x":    "rootfs/etc/chroot-autobuild/x",
		"chroot-autobuildx/etc":     "rootfs/chroot-autobuildx/etc",
		"chroot-autobuild/a..b/c..": "rootfs/a..b/c..",
	} {
		got, err := imageMemberName(in)
		if err != nil || got != want {
			t.Errorf("imageMemberName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"../x", "chroot-autobuild/../x", "a/../../b", "a/.."} {
		if got, err := imageMemberName(bad); err == nil {
			t.Errorf("imageMemberName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestPlanNetwork(t *testing.T) {
	for _, tc := range []struct {
		subnet, addr, host, container string
		bad                           bool
	}{
		{"10.10.10.1/24", "", "10.10.10.1", "10.10.10.2", false},
		{"10.10.10.2/24", "", "10.10.10.2", "10.10.10.1", false},
		{"10.10.10.1/24", "10.10.10.120", "10.10.10.1", "10.10.10.120", false},
		{"10.10.10.1/24", "10.10.10.1", "", "", true},
		{"10.10.10.1/24", "10.10.10.255", "", "", true},
		{"10.10.10.1/24", "10.10.11.5", "", "", true},
		{"10.10.10.0/24", "", "", "", true},
		{"10.10.10.1/31", "", "", "", true},
		{"fd00::1/64", "", "", "", true},
		{"nonsense", "", "", "", true},
	} {
		n, err := planNetwork(tc.subnet, tc.addr)
		if tc.bad {
			if err == nil {
				t.Errorf("%s %s: accepted", tc.subnet, tc.addr)
			}
			continue
		}
		if err != nil || n.host.String() != tc.host || n.container.String() != tc.container {
			t.Errorf("%s %s: %v %v", tc.subnet, tc.addr, n, err)
		}
	}
}

func TestRawLXC(t *testing.T) {
	n, _ := planNetwork("10.10.10.1/24", "")
	want := "lxc.net.0.ipv4.address=10.10.10.2/24\nlxc.net.0.ipv4.gateway=10.10.10.1\nlxc.uts.name=buildd07\n"
	if got := rawLXC(n, "buildd07", false); got != want {
		t.Errorf("unprivileged raw.lxc:\n%s\nwant:\n%s", got, want)
	}
	if got := rawLXC(n, "buildd07", true); !strings.HasPrefix(got, want) || !strings.Contains(got, "lxc.mount.entry=udev dev devtmpfs") {
		t.Errorf("privileged raw.lxc:\n%s", got)
	}
}

func TestContainerHosts(t *testing.T) {
	got := string(containerHosts([]byte("127.0.0.1\tlocalhost\n"), "example", "example.buildd"))
	if want := "127.0.0.1\tlocalhost\n\n127.0.1.1\texample.buildd example\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = string(containerHosts(nil, "h", "h.d"))
	if !strings.HasPrefix(got, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n") || !strings.HasSuffix(got, "\n\n127.0.1.1\th.d h\n") {
		t.Errorf("fallback: %q", got)
	}
}

func TestHostResolvConf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	os.WriteFile(p, []byte("nameserver 192.0.2.1\n"), 0o640)
	data, mode, err := hostResolvConf(p)
	if err != nil || string(data) != "nameserver 192.0.2.1\n" || mode != 0o640 {
		t.Errorf("%q %v %v", data, mode, err)
	}
	// A dangling link to the systemd-resolved stub falls back to the link's
	// target (missing here): an error, not an empty resolv.conf.
	l := filepath.Join(dir, "stub")
	os.Symlink(systemdResolvStub, l)
	if _, err := os.Stat(systemdResolvReal); err != nil {
		if _, _, err := hostResolvConf(l); err == nil {
			t.Error("dangling stub link accepted")
		}
	}
}

func TestPersonality(t *testing.T) {
	for arch, want := range map[string]string{"amd64": "linux64", "arm64": "linux64", "i386": "linux32", "armhf": "linux32", "riscv64": "linux64"} {
		if got := personality(arch); got != want {
			t.Errorf("%s: %s, want %s", arch, got, want)
		}
	}
}

func TestImagesToPrune(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	img := func(fp string, age time.Duration, sha string) api.Image {
		i := api.Image{Fingerprint: fp, UploadedAt: now.Add(-age)}
		i.Properties = map[string]string{labelSHA1: sha}
		return i
	}
	imgs := []api.Image{
		img("new", time.Hour, "1"),
		img("mid", 24*time.Hour, "2"),
		img("old", 10*24*time.Hour, "3"),
		img("older", 11*24*time.Hour, "4"),
		img("partial", time.Minute, ""),
		img("current", 30*24*time.Hour, "5"),
	}
	got := imagesToPrune(imgs, "current", 7*24*time.Hour, 2, now)
	want := []string{"partial", "mid", "old", "older"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := imagesToPrune(imgs, "", 0, 0, now); !cmp.Equal(got, []string{"partial"}) {
		t.Errorf("no limits: %v", got)
	}
}

func TestParseFindOutput(t *testing.T) {
	got, err := parseFindOutput([]byte("f 4755 10 passwd\x00d 1777 4096 tmp\x00l 777 11 link with space\x00c 666 0 null\x00"))
	if err != nil {
		t.Fatal(err)
	}
	want := []target.FileInfo{
		{Name: "passwd", Mode: 0o755 | fs.ModeSetuid, Size: 10},
		{Name: "tmp", Mode: 0o777 | fs.ModeDir | fs.ModeSticky, Size: 4096},
		{Name: "link with space", Mode: 0o777 | fs.ModeSymlink, Size: 11},
		{Name: "null", Mode: 0o666 | fs.ModeDevice | fs.ModeCharDevice},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"f 644 1 x", "x 644 1 x\x00", "f 9 1 x\x00", "f 644 -1 x\x00", "f 644 1 \x00", "f644\x00"} {
		if _, err := parseFindOutput([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseFindOutput(f *testing.F) {
	f.Add([]byte("f 4755 10 passwd\x00d 1777 4096 tmp\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		infos, err := parseFindOutput(in)
		if err != nil {
			return
		}
		for _, fi := range infos {
			if fi.Name == "" || fi.Size < 0 || fi.Mode.Perm() != fi.Mode.Perm()&0o777 {
				t.Fatalf("bad entry %+v", fi)
			}
		}
	})
}

func TestCheckTree(t *testing.T) {
	ok := tarOf(t, []tarEntry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "a/", typ: tar.TypeDir, mode: 0o755},
		{name: "a/f", body: "x"},
		{name: "a/l", typ: tar.TypeSymlink, link: "/etc/passwd"},
		{name: "a/h", typ: tar.TypeLink, link: "a/f"},
		{name: "p", typ: tar.TypeFifo},
	})
	var out bytes.Buffer
	if err := checkTree(&out, bytes.NewReader(ok)); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "./ a/ a/f a/l a/h p" {
		t.Errorf("checked tree: %q", got)
	}
	for name, evil := range map[string][]tarEntry{
		"dotdot":          {{name: "a/../../x", body: "x"}},
		"absolute":        {{name: "/etc/x", body: "x"}},
		"through-symlink": {{name: "l", typ: tar.TypeSymlink, link: "/etc"}, {name: "l/x/y", body: "x"}},
		"replace-symlink": {{name: "l", typ: tar.TypeSymlink, link: "/etc"}, {name: "l", typ: tar.TypeDir}},
		"hardlink-out":    {{name: "h", typ: tar.TypeLink, link: "/etc/shadow"}},
		"hardlink-via-symlink": {
			{name: "l", typ: tar.TypeSymlink, link: "/etc"}, {name: "h", typ: tar.TypeLink, link: "l/shadow"},
		},
		"block device": {{name: "b", typ: tar.TypeBlock}},
		"top-file":     {{name: ".", body: "x"}},
	} {
		if err := checkTree(io.Discard, bytes.NewReader(tarOf(t, evil))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var b bytes.Buffer
	mu := &sync.Mutex{}
	a, c := &lineWriter{mu: mu, w: &b}, &lineWriter{mu: mu, w: &b}
	a.Write([]byte("out1 part"))
	c.Write([]byte("err1\nerr2 par"))
	a.Write([]byte("ial\nout2"))
	c.Write([]byte("tial\n"))
	a.flush()
	c.flush()
	if got, want := b.String(), "err1\nout1 partial\nerr2 partial\nout2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A line longer than maxLine is not held forever.
	b.Reset()
	a.Write(bytes.Repeat([]byte("x"), maxLine+1))
	if b.Len() != maxLine+1 {
		t.Errorf("long line held: %d bytes out", b.Len())
	}
}

func testHostConfig() Config {
	return Config{Instance: "unit", NamePrefix: "u", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestNewHostEnsuresAndRepairs(t *testing.T) {
	f := newFakeServer()
	ctx := context.Background()
	h, err := newHost(ctx, testHostConfig(), f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CreateStoragePool default", "CreateNetwork lpbuilddbr0", "CreateProfile buildd-agent"}
	if diff := cmp.Diff(want, f.calls); diff != "" {
		t.Errorf("first start (-want +got):\n%s", diff)
	}
	nw := f.networks["lpbuilddbr0"]
	if nw.Config["ipv4.address"] != "10.10.10.1/24" || nw.Config["ipv4.nat"] != "false" || nw.Config["ipv6.address"] != "none" || nw.Config["ipv4.routing"] != "false" {
		t.Errorf("bridge config: %v", nw.Config)
	}
	p := f.profiles["buildd-agent"]
	if p.Config["security.privileged"] != "false" || p.Devices["eth0"]["parent"] != "lpbuilddbr0" || p.Devices["root"]["pool"] != "default" {
		t.Errorf("profile: %+v", p)
	}
	// Idempotent: nothing to do the second time.
	f.calls = nil
	if err := h.ensure(ctx); err != nil || len(f.calls) != 0 {
		t.Errorf("second ensure: %v, calls %v", err, f.calls)
	}
	// Hand-edited objects are repaired; unrelated bridge keys are kept.
	nw.Config["ipv4.nat"] = "true"
	nw.Config["dns.domain"] = "mine"
	f.networks["lpbuilddbr0"] = nw
	p.Config["security.privileged"] = "true"
	delete(p.Devices, "eth0")
	f.profiles["buildd-agent"] = p
	if err := h.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"UpdateNetwork lpbuilddbr0", "UpdateProfile buildd-agent"}, f.calls); diff != "" {
		t.Errorf("repair (-want +got):\n%s", diff)
	}
	if c := f.networks["lpbuilddbr0"].Config; c["ipv4.nat"] != "false" || c["dns.domain"] != "mine" {
		t.Errorf("repaired bridge: %v", c)
	}
	if !equalDevices(f.profiles["buildd-agent"].Devices, h.profilePut().Devices) {
		t.Errorf("repaired profile: %+v", f.profiles["buildd-agent"])
	}
	// NAT only on request.
	cfg := testHostConfig()
	cfg.NAT = true
	f2 := newFakeServer()
	if _, err := newHost(ctx, cfg, f2); err != nil {
		t.Fatal(err)
	}
	if c := f2.networks["lpbuilddbr0"].Config; c["ipv4.nat"] != "true" {
		t.Errorf("NAT bridge: %v", c)
	}
}

func TestNewHostRemovesOnlyOwnLeftovers(t *testing.T) {
	f := newFakeServer()
	ours := map[string]string{labelInstance: "unit", labelBuildID: "7"}
	f.instances["u-noble-amd64"] = api.Instance{Name: "u-noble-amd64", StatusCode: api.Running, Config: ours}
	f.instances["other-instance"] = api.Instance{Name: "other-instance", StatusCode: api.Running,
		Config: map[string]string{labelInstance: "someone-else"}}
	f.instances["foreign"] = api.Instance{Name: "foreign", StatusCode: api.Running}
	f.profiles["old-profile"] = api.Profile{Name: "old-profile", Config: map[string]string{labelInstance: "unit"}}
	f.profiles["default"] = api.Profile{Name: "default"}
	f.images["cached"] = api.Image{Fingerprint: "cached", UploadedAt: time.Now(), Properties: map[string]string{labelInstance: "unit", labelSHA1: "abc"}}
	f.images["partial"] = api.Image{Fingerprint: "partial", Properties: map[string]string{labelInstance: "unit"}}
	f.images["foreign"] = api.Image{Fingerprint: "foreign"}
	if _, err := newHost(context.Background(), testHostConfig(), f); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"other-instance", "foreign"} {
		if _, ok := f.instances[name]; !ok {
			t.Errorf("container %s removed", name)
		}
	}
	if _, ok := f.instances["u-noble-amd64"]; ok {
		t.Error("leftover container kept")
	}
	if _, ok := f.profiles["old-profile"]; ok {
		t.Error("leftover profile kept")
	}
	if _, ok := f.profiles["default"]; !ok {
		t.Error("default profile removed")
	}
	if _, ok := f.images["cached"]; !ok {
		t.Error("cached image removed")
	}
	if _, ok := f.images["partial"]; ok {
		t.Error("incomplete image kept")
	}
	if _, ok := f.images["foreign"]; !ok {
		t.Error("foreign image removed")
	}
	if !strings.Contains(strings.Join(f.calls, "\n"), "UpdateInstanceState u-noble-amd64 stop force=true") {
		t.Errorf("leftover not force-stopped: %v", f.calls)
	}
}

func TestEnsureImageCaches(t *testing.T) {
	f := newFakeServer()
	ctx := context.Background()
	h, err := newHost(ctx, testHostConfig(), f)
	if err != nil {
		t.Fatal(err)
	}
	data := compress(t, compGzip, chrootTar(t, []member{{name: "chroot-autobuild/", typ: tar.TypeDir}, {name: "chroot-autobuild/etc/hosts", body: "x"}}))
	p := filepath.Join(t.TempDir(), "chroot.tar.gz")
	os.WriteFile(p, data, 0o644)
	s := sha1.Sum(data)
	img := target.Image{Path: p, SHA1: hex.EncodeToString(s[:]), Type: "chroot"}
	var log bytes.Buffer
	fp, err := h.ensureImage(ctx, img, "noble", "amd64", &log)
	if err != nil {
		t.Fatal(err)
	}
	// The chroot's members, then the host identity's (image_identity_test.go).
	if len(f.uploads) != 1 || len(f.uploads[0]) < 3 || !cmp.Equal(f.uploads[0][:3], []string{"metadata.yaml", "rootfs/", "rootfs/etc/hosts"}) ||
		!slices.Contains(f.uploads[0], "rootfs"+policyRCPath) {
		t.Errorf("upload: %q", f.uploads)
	}
	if props := f.images[fp].Properties; props[labelInstance] != "unit" || props[labelSHA1] != img.SHA1 || props["series"] != "noble" {
		t.Errorf("image properties: %v", props)
	}
	if a := f.aliases["u-noble-amd64"]; a.Target != fp {
		t.Errorf("alias: %+v", a)
	}
	fp2, err := h.ensureImage(ctx, img, "noble", "amd64", &log)
	if err != nil || fp2 != fp || len(f.uploads) != 1 || h.Imports() != 1 {
		t.Errorf("second import: %s %v, %d uploads", fp2, err, len(f.uploads))
	}
	if !strings.Contains(log.String(), "Using cached LXD image") {
		t.Errorf("log: %s", log.String())
	}
	// A wrong SHA-1 never becomes an image.
	bad := img
	bad.SHA1 = strings.Repeat("0", 40)
	if _, err := h.ensureImage(ctx, bad, "noble", "amd64", nil); err == nil || !strings.Contains(err.Error(), "SHA-1") {
		t.Errorf("wrong SHA-1: %v", err)
	}
	if len(f.images) != 1 {
		t.Errorf("%d images after a bad import", len(f.images))
	}
	// Unknown types and architectures are refused before any work.
	if _, err := h.ensureImage(ctx, target.Image{Path: p, Type: "squashfs"}, "noble", "amd64", nil); err == nil {
		t.Error("squashfs accepted")
	}
	if _, err := h.ensureImage(ctx, img, "noble", "vax", nil); err == nil {
		t.Error("vax accepted")
	}
	// A ready LXD image is uploaded unchanged, labelled through the request.
	unified := chrootTar(t, []member{{name: "metadata.yaml", body: `{"architecture": "x86_64", "creation_date": 1}`}, {name: "rootfs/", typ: tar.TypeDir}})
	up := filepath.Join(t.TempDir(), "image.tar")
	os.WriteFile(up, unified, 0o644)
	s = sha1.Sum(unified)
	fp3, err := h.ensureImage(ctx, target.Image{Path: up, SHA1: hex.EncodeToString(s[:]), Type: "lxd"}, "noble", "amd64", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.uploads[len(f.uploads)-1]; !cmp.Equal(got, []string{"metadata.yaml", "rootfs/"}) {
		t.Errorf("lxd image upload: %v", got)
	}
	if f.images[fp3].Properties[labelInstance] != "unit" || f.aliases["u-noble-amd64"].Target != fp3 {
		t.Errorf("lxd image not labelled or aliased: %+v", f.images[fp3])
	}
}

func TestFactoryValidates(t *testing.T) {
	h, err := newHost(context.Background(), testHostConfig(), newFakeServer())
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []target.Spec{
		{BuildID: "1", Series: "No Series", Arch: "amd64"},
		{BuildID: "1", Series: "noble", Arch: "vax"},
		{BuildID: "../x", Series: "noble", Arch: "amd64"},
		{BuildID: "", Series: "noble", Arch: "amd64"},
	} {
		if _, err := h.Factory()(context.Background(), spec, target.Options{}); err == nil {
			t.Errorf("%+v accepted", spec)
		}
	}
	tgt, err := h.Factory()(context.Background(), target.Spec{BuildID: "1", Series: "noble", Arch: "amd64"}, target.Options{})
	if err != nil || tgt.(*Container).Name() != "u-noble-amd64" || tgt.ProxyHost() != "10.10.10.1" {
		t.Errorf("%v %v", tgt, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "lpbuilddbr0" || c.Subnet != "10.10.10.1/24" || c.StoragePool != "default" || c.Profile != "buildd-agent" ||
		c.Instance != "default" || c.NamePrefix != "lp" || c.ReadyTimeout != 120*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	for _, bad := range []Config{{NamePrefix: "LP"}, {NamePrefix: "a_b"}, {Subnet: "x"}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestReadAhead(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, chunk := range []int{1, 1000, 1 << 20, 8 << 20} {
		ra := newReadAhead(bytes.NewReader(data), chunk, 3)
		got, err := io.ReadAll(ra)
		ra.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("chunk %d: %d bytes, %v", chunk, len(got), err)
		}
	}
	boom := errors.New("boom")
	ra := newReadAhead(io.MultiReader(bytes.NewReader(data[:100]), iotestErrReader{boom}), 64, 2)
	got, err := io.ReadAll(ra)
	if !errors.Is(err, boom) || len(got) != 100 {
		t.Errorf("error: %d bytes, %v", len(got), err)
	}
	// Close with the consumer gone does not leak a blocked producer.
	ra = newReadAhead(bytes.NewReader(data), 16, 1)
	ra.Close()
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

package lxd

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testIdentity = hostIdentity{hostname: "builder", fqdn: "builder.example", resolvConf: []byte("nameserver 10.0.0.1\n"), resolvMode: 0o644}

func TestBakeIdentity(t *testing.T) {
	meta := imageMetadata{Architecture: "x86_64"}
	hosts := string(containerHosts([]byte("127.0.0.1\tlocalhost\n"), "builder", "builder.example"))
	fallback := string(containerHosts(nil, "builder", "builder.example"))
	resolv := imageMember{Name: "rootfs/etc/resolv.conf", Body: "nameserver 10.0.0.1\n", Type: tar.TypeReg}
	tail := []imageMember{
		{Name: "rootfs/etc/hostname", Body: "builder\n", Type: tar.TypeReg},
		resolv,
		{Name: "rootfs" + policyRCPath, Body: policyRC, Type: tar.TypeReg},
		{Name: "rootfs" + snapdNoCDNPath, Body: snapdNoCDN, Type: tar.TypeReg},
		{Name: "rootfs" + snapdRefreshTmr, Link: "/dev/null", Type: tar.TypeSymlink},
	}
	for _, tc := range []struct {
		name string
		in   []member
		want []imageMember
	}{{
		// The identity's files replace the chroot's where they are (a
		// symlink becomes a file); what is missing comes at the end,
		// existing directories are left as they are.
		name: "replaced in place",
		in: []member{
			{name: "chroot-autobuild/", typ: tar.TypeDir},
			{name: "chroot-autobuild/etc/", typ: tar.TypeDir},
			{name: "chroot-autobuild/etc/hosts", body: "127.0.0.1\tlocalhost\n"},
			{name: "chroot-autobuild/etc/resolv.conf", typ: tar.TypeSymlink, link: "../run/systemd/resolve/stub-resolv.conf"},
			{name: "chroot-autobuild/etc/systemd/system/", typ: tar.TypeDir},
			{name: "chroot-autobuild/etc/systemd/system/snapd.refresh.timer", body: "[Timer]\n"},
			{name: "chroot-autobuild/usr/local/sbin/", typ: tar.TypeDir},
			{name: "chroot-autobuild/usr/local/sbin/policy-rc.d", typ: tar.TypeSymlink, link: "/bin/true"},
		},
		want: []imageMember{
			{Name: "metadata.yaml", Type: tar.TypeReg},
			{Name: "rootfs/", Type: tar.TypeDir},
			{Name: "rootfs/etc/", Type: tar.TypeDir},
			{Name: "rootfs/etc/hosts", Body: hosts, Type: tar.TypeReg},
			resolv,
			{Name: "rootfs/etc/systemd/system/", Type: tar.TypeDir},
			{Name: "rootfs" + snapdRefreshTmr, Link: "/dev/null", Type: tar.TypeSymlink},
			{Name: "rootfs/usr/local/sbin/", Type: tar.TypeDir},
			{Name: "rootfs" + policyRCPath, Body: policyRC, Type: tar.TypeReg},
			{Name: "rootfs" + snapdDropInDir + "/", Type: tar.TypeDir},
			{Name: "rootfs/etc/hostname", Body: "builder\n", Type: tar.TypeReg},
			{Name: "rootfs" + snapdNoCDNPath, Body: snapdNoCDN, Type: tar.TypeReg},
		},
	}, {
		// Nothing there: every parent (outermost first) and every file.
		name: "added",
		in:   []member{{name: "./", typ: tar.TypeDir}, {name: "./bin/sh", body: "ELF"}},
		want: append([]imageMember{
			{Name: "metadata.yaml", Type: tar.TypeReg},
			{Name: "rootfs/", Type: tar.TypeDir},
			{Name: "rootfs/bin/sh", Body: "ELF", Type: tar.TypeReg},
			{Name: "rootfs/etc/", Type: tar.TypeDir},
			{Name: "rootfs/usr/", Type: tar.TypeDir},
			{Name: "rootfs/etc/systemd/", Type: tar.TypeDir},
			{Name: "rootfs/usr/local/", Type: tar.TypeDir},
			{Name: "rootfs/etc/systemd/system/", Type: tar.TypeDir},
			{Name: "rootfs/usr/local/sbin/", Type: tar.TypeDir},
			{Name: "rootfs" + snapdDropInDir + "/", Type: tar.TypeDir},
			{Name: "rootfs/etc/hosts", Body: fallback, Type: tar.TypeReg},
		}, tail...),
	}, {
		// A hosts symlink is not followed: the fallback entries are used.
		name: "hosts symlink",
		in: []member{
			{name: "etc/hosts", typ: tar.TypeSymlink, link: "/proc/self/environ"},
			{name: "etc/systemd/system/snapd.service.d/", typ: tar.TypeDir},
			{name: "usr/local/sbin/x", body: "x"},
		},
		want: append([]imageMember{
			{Name: "metadata.yaml", Type: tar.TypeReg},
			{Name: "rootfs/etc/hosts", Body: fallback, Type: tar.TypeReg},
			{Name: "rootfs" + snapdDropInDir + "/", Type: tar.TypeDir},
			{Name: "rootfs/usr/local/sbin/x", Body: "x", Type: tar.TypeReg},
		}, tail...),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := convertChrootBaked(&out, bytes.NewReader(chrootTar(t, tc.in)), meta, newIdentityBaker(testIdentity)); err != nil {
				t.Fatal(err)
			}
			got := readImage(t, out.Bytes())
			got[0].Body = ""
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("image (-want +got):\n%s", diff)
			}
			checkIdentityModes(t, out.Bytes())
		})
	}
}

// checkIdentityModes: root-owned, with writeIdentity's modes.
func checkIdentityModes(t *testing.T, image []byte) {
	t.Helper()
	want := map[string]int64{
		"rootfs/etc/hosts": 0o644, "rootfs/etc/hostname": 0o644, "rootfs/etc/resolv.conf": 0o644,
		"rootfs" + policyRCPath: 0o755, "rootfs" + snapdNoCDNPath: 0o644, "rootfs" + snapdRefreshTmr: 0o777,
	}
	tr := tar.NewReader(bytes.NewReader(image))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		m, ok := want[h.Name]
		if h.Typeflag == tar.TypeDir && strings.HasPrefix(h.Name, "rootfs"+snapdDropInDir) {
			m, ok = 0o755, true
		}
		if ok && (h.Mode != m || h.Uid != 0 || h.Gid != 0) {
			t.Errorf("%s: mode %o owner %d:%d, want %o root", h.Name, h.Mode, h.Uid, h.Gid, m)
		}
	}
}

// What writeIdentity refuses fails the conversion (it would fail Create).
func TestBakeIdentityRejects(t *testing.T) {
	for name, in := range map[string][]member{
		"hosts directory":   {{name: "etc/hosts/", typ: tar.TypeDir}},
		"hosts parent":      {{name: "etc/hostname/x", body: "x"}},
		"etc symlink":       {{name: "etc", typ: tar.TypeSymlink, link: "/tmp"}},
		"systemd file":      {{name: "etc/systemd", body: "x"}},
		"hostname hardlink": {{name: "etc/passwd", body: "x"}, {name: "etc/hostname", typ: tar.TypeLink, link: "etc/passwd"}},
	} {
		err := convertChrootBaked(io.Discard, bytes.NewReader(chrootTar(t, in)), imageMetadata{Architecture: "x86_64"}, newIdentityBaker(testIdentity))
		if err == nil || !strings.Contains(err.Error(), "host identity") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The digest changes with every input of the identity files.
func TestIdentityDigest(t *testing.T) {
	base := testIdentity
	seen := map[string]string{base.digest(): "base"}
	for name, id := range map[string]hostIdentity{
		"hostname": {hostname: "other", fqdn: base.fqdn, resolvConf: base.resolvConf, resolvMode: base.resolvMode},
		"fqdn":     {hostname: base.hostname, fqdn: "other", resolvConf: base.resolvConf, resolvMode: base.resolvMode},
		"resolv":   {hostname: base.hostname, fqdn: base.fqdn, resolvConf: []byte("nameserver 10.0.0.2\n"), resolvMode: base.resolvMode},
		"mode":     {hostname: base.hostname, fqdn: base.fqdn, resolvConf: base.resolvConf, resolvMode: 0o600},
		"shifted":  {hostname: "builderb", fqdn: "uilder.example", resolvConf: base.resolvConf, resolvMode: base.resolvMode},
	} {
		d := id.digest()
		if other, ok := seen[d]; ok {
			t.Errorf("%s: same digest as %s", name, other)
		}
		seen[d] = name
	}
}

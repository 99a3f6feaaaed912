package standins

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAppend appends to a small Launchpad-style tarball and reads the result
// back with Go and with GNU tar: the original members (a PAX xattr
// included) are intact, the new ones follow, the archive ends properly.
func TestAppend(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.tar.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	write := func(h *tar.Header, data string) {
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, data)
	}
	write(&tar.Header{Name: "chroot-autobuild/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	write(&tar.Header{Name: "chroot-autobuild/usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}}, strings.Repeat("\x00", 1024))
	write(&tar.Header{Name: "chroot-autobuild/etc/zeros", Typeflag: tar.TypeReg, Mode: 0o644}, strings.Repeat("\x00", 700))
	tw.Close()
	zw.Close()
	os.WriteFile(in, buf.Bytes(), 0o644)

	out := filepath.Join(dir, "out.tar.gz")
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := Append(in, out, files); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(out)
	defer f.Close()
	zr, err := gzip.NewReader(f)
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
		data, _ := io.ReadAll(tr)
		switch h.Name {
		case "chroot-autobuild/usr/bin/ping":
			if len(data) != 1024 || h.PAXRecords["SCHILY.xattr.security.capability"] == "" {
				t.Errorf("ping changed: %d bytes, %v", len(data), h.PAXRecords)
			}
		case "chroot-autobuild/etc/zeros":
			if len(data) != 700 {
				t.Errorf("zeros has %d bytes", len(data))
			}
		case "chroot-autobuild/usr/local/bin/snapcraft":
			if !bytes.Equal(data, Snapcraft) || h.Mode != 0o755 || h.Uid != 0 {
				t.Errorf("snapcraft stand-in wrong: mode %o uid %d", h.Mode, h.Uid)
			}
		}
	}
	want := "chroot-autobuild/ chroot-autobuild/usr/bin/ping chroot-autobuild/etc/zeros chroot-autobuild/etc/systemd/system/snapd.service " +
		"chroot-autobuild/usr/local/bin/charmcraft chroot-autobuild/usr/local/bin/lpci chroot-autobuild/usr/local/bin/lxd " +
		"chroot-autobuild/usr/local/bin/rockcraft chroot-autobuild/usr/local/bin/snap " +
		"chroot-autobuild/usr/local/bin/snapcraft chroot-autobuild/usr/local/bin/sourcecraft chroot-autobuild/usr/local/bin/xz chroot-autobuild/usr/local/bin/zip"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("members = %s\nwant      %s", got, want)
	}
	if _, err := exec.LookPath("tar"); err == nil {
		if outb, err := exec.Command("tar", "-tzf", out).CombinedOutput(); err != nil || !strings.Contains(string(outb), "usr/local/bin/snapcraft") {
			t.Errorf("GNU tar: %v\n%s", err, outb)
		}
	}
}

// runStandin runs a stand-in with /bin/sh in dir with exactly env.
func runStandin(t *testing.T, script []byte, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "standin")
	os.WriteFile(p, script, 0o755)
	cmd := exec.Command("/bin/sh", append([]string{p}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestSnapcraftStandin(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("needs mksquashfs")
	}
	base := []string{"LANG=C.UTF-8", "SHELL=/bin/sh", "SNAPCRAFT_BUILD_ENVIRONMENT=host", `SNAPCRAFT_IMAGE_INFO={"build-request-id": "lp-1"}`}
	pull := append(append([]string{}, base...), "SNAPCRAFT_LOCAL_SOURCES=1", "SNAPCRAFT_SETUP_CORE=1")
	build := append(append([]string{}, base...), "SNAPCRAFT_BUILD_FOR=amd64", "SNAPCRAFT_BUILD_INFO=1")
	mk := func(yaml string) string {
		d := t.TempDir()
		os.MkdirAll(filepath.Join(d, "snap"), 0o755)
		os.WriteFile(filepath.Join(d, "snap", "snapcraft.yaml"), []byte(yaml), 0o644)
		return d
	}
	d := mk("name: hello\nversion: '1.0'\n")
	if code, out := runStandin(t, Snapcraft, d, pull, "pull"); code != 0 {
		t.Fatalf("pull: %d %s", code, out)
	}
	if code, out := runStandin(t, Snapcraft, d, build); code != 0 {
		t.Fatalf("build: %d %s", code, out)
	}
	for _, f := range []string{"hello_1.0_amd64.snap", "hello_1.0_amd64.manifest"} {
		if fi, err := os.Lstat(filepath.Join(d, f)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v", f, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(d, "hello_latest.snap")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("no symlink: %v", err)
	}
	m, _ := os.ReadFile(filepath.Join(d, "hello_1.0_amd64.manifest"))
	if !strings.Contains(string(m), "env SNAPCRAFT_BUILD_FOR=amd64\n") {
		t.Errorf("manifest:\n%s", m)
	}

	cases := []struct {
		name string
		yaml string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"pull env in build", "name: a\n", pull, nil, 2, "SNAPCRAFT_LOCAL_SOURCES must not be set"},
		{"no setup core", "name: a\n", append(append([]string{}, base...), "SNAPCRAFT_LOCAL_SOURCES=1"), []string{"pull"}, 2, "SNAPCRAFT_SETUP_CORE is '<unset>'"},
		{"build-for in pull", "name: a\n", append(append([]string{}, pull...), "SNAPCRAFT_BUILD_FOR=amd64"), []string{"pull"}, 2, "SNAPCRAFT_BUILD_FOR must not be set"},
		{"wrong LANG", "name: a\n", append(append([]string{}, pull[1:]...), "LANG=C"), []string{"pull"}, 2, "LANG is 'C'"},
		{"bad args", "name: a\n", pull, []string{"pull", "--x"}, 2, "unexpected arguments"},
		{"half proxy env", "name: a\n", append(append([]string{}, pull...), "http_proxy=http://10.10.10.1:8222/"), []string{"pull"}, 2, "https_proxy is '<unset>'"},
		{"fail pull 201", "name: a\nstandin-fail-pull: 201\n", pull, []string{"pull"}, 201, "failing the pull"},
		{"fail pull 200", "name: a\nstandin-fail-pull: 200\n", pull, []string{"pull"}, 200, ""},
		{"build before pull", "name: a\n", build, nil, 2, "before snapcraft pull"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runStandin(t, Snapcraft, mk(tc.yaml), tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.msg) {
				t.Errorf("exit %d (want %d), output:\n%s", code, tc.code, out)
			}
		})
	}
	d = mk("name: a\nstandin-fail-build: 1\n")
	runStandin(t, Snapcraft, d, pull, "pull")
	if code, out := runStandin(t, Snapcraft, d, build); code != 1 {
		t.Errorf("fail build: %d %s", code, out)
	}
	if code, out := runStandin(t, Snapcraft, t.TempDir(), pull, "pull"); code != 2 || !strings.Contains(out, "no snap/snapcraft.yaml") {
		t.Errorf("no yaml: %d %s", code, out)
	}
}

func TestSnapStandin(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "snap.log")
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"install", "--channel=stable", "core22"}, 0},
		{[]string{"refresh", "--channel=stable", "core22"}, 0},
		{[]string{"install", "--classic", "--channel=8.x/stable", "snapcraft"}, 0},
		{[]string{"install", "--channel=8.x/stable", "snapcraft"}, 2},
		{[]string{"install", "core22"}, 2},
		{[]string{"install", "--classic", "charmcraft"}, 0},
		{[]string{"install", "--classic", "--channel=latest/edge/craftctl", "sourcecraft"}, 0},
		{[]string{"install", "rockcraft"}, 2},
		{[]string{"install", "--channel=3.x/stable", "charmcraft"}, 2},
		{[]string{"refresh", "core22"}, 2},
		{[]string{"install", "--devmode", "--channel=x", "core22"}, 2},
		{[]string{"set", "core", "proxy.store=abc"}, 0},
		{[]string{"set", "core", "other=1"}, 2},
		{[]string{"set", "system", "proxy.http=http://10.10.10.1:8222/"}, 0},
		{[]string{"set", "system", "proxy.https=http://10.10.10.1:8222/"}, 0},
		{[]string{"set", "system", "proxy.store=x"}, 2},
		{[]string{"remove", "core22"}, 2},
	}
	for _, tc := range cases {
		if code, out := runStandin(t, Snap, t.TempDir(), []string{"SNAP_STANDIN_LOG=" + logPath}, tc.args...); code != tc.code {
			t.Errorf("snap %q: exit %d, want %d\n%s", tc.args, code, tc.code, out)
		}
	}
	if code, out := runStandin(t, Snap, t.TempDir(), []string{"SNAP_STANDIN_LOG=" + logPath}, "ack", "/dev/null"); code != 2 {
		t.Errorf("ack of nothing: %d %s", code, out)
	}
	if b, _ := os.ReadFile(logPath); !strings.HasPrefix(string(b), "install --channel=stable core22\n") {
		t.Errorf("log:\n%s", b)
	}
}

// runCraftPack runs the craftpack stand-in as tool in <home>/<name>/<sub>.
func runCraftPack(t *testing.T, tool, home, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	bin := t.TempDir()
	p := filepath.Join(bin, tool)
	os.WriteFile(p, CraftPack, 0o755)
	cmd := exec.Command("/bin/sh", append([]string{p}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "CRAFTPACK_HOME=" + home}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestCraftPackStandin(t *testing.T) {
	for _, c := range []string{"zip", "xz", "dpkg", "sha256sum"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s", c)
		}
	}
	base := []string{"LANG=C.UTF-8", "SHELL=/bin/sh"}
	pack := []string{"pack", "-v", "--destructive-mode"}
	mk := func(tool, yaml string) (home, dir string) {
		home = t.TempDir()
		dir = filepath.Join(home, "hello", "sub")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, tool+".yaml"), []byte(yaml), 0o644)
		return home, dir
	}
	arch, _ := exec.Command("dpkg", "--print-architecture").Output()
	a := strings.TrimSpace(string(arch))
	for _, tc := range []struct {
		tool, artifact, magic string
		env                   []string
	}{
		{"charmcraft", "hello_ubuntu-22.04-" + a + ".charm", "PK\x03\x04", []string{"CRAFT_PLATFORM=ubuntu-22.04-" + a}},
		{"rockcraft", "hello_1.0_" + a + ".rock", "", []string{"LAUNCHPAD_INSTANCE=production"}},
		{"sourcecraft", "hello_1.0.tar.xz", "\xfd7zXZ\x00", []string{"CARGO_REGISTRIES_A_INDEX=x"}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			home, dir := mk(tc.tool, "name: hello\nversion: '1.0'\n")
			if tc.tool == "sourcecraft" {
				os.MkdirAll(filepath.Join(home, "hello", ".m2"), 0o755)
				os.WriteFile(filepath.Join(home, "hello", ".m2", "settings.xml"), []byte("<settings/>\n"), 0o600)
			}
			code, out := runCraftPack(t, tc.tool, home, dir, append(append([]string{}, base...), tc.env...), pack...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			data, err := os.ReadFile(filepath.Join(dir, tc.artifact))
			if err != nil || !strings.HasPrefix(string(data), tc.magic) {
				t.Fatalf("%s: %v, starts %q", tc.artifact, err, data[:min(len(data), 8)])
			}
			switch tc.tool {
			case "rockcraft":
				if out, err := exec.Command("tar", "-tf", filepath.Join(dir, tc.artifact)).CombinedOutput(); err != nil || !strings.Contains(string(out), "oci-layout") {
					t.Errorf("rock is not an OCI layout tar: %v\n%s", err, out)
				}
			case "sourcecraft":
				if out, err := exec.Command("tar", "-xJOf", filepath.Join(dir, tc.artifact), "./m2-settings.xml").CombinedOutput(); err != nil || string(out) != "<settings/>\n" {
					t.Errorf("settings.xml not in the tarball: %v\n%s", err, out)
				}
			case "charmcraft":
				if fi, err := os.Lstat(filepath.Join(dir, "hello_latest.charm")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("no symlink: %v", err)
				}
				m, _ := os.ReadFile(filepath.Join(dir, "hello_ubuntu-22.04-"+a+".manifest"))
				if !strings.Contains(string(m), "cwd: "+dir+"\n") || !strings.Contains(string(m), "env CRAFT_PLATFORM=ubuntu-22.04-"+a+"\n") {
					t.Errorf("manifest:\n%s", m)
				}
			}
		})
	}
	cases := []struct {
		name, tool, yaml string
		env, args        []string
		code             int
		msg              string
	}{
		{"bad args", "rockcraft", "name: a\n", base, []string{"pack"}, 2, "unexpected arguments: pack"},
		{"no yaml", "rockcraft", "", base, pack, 2, "no rockcraft.yaml"},
		{"wrong LANG", "charmcraft", "name: a\n", []string{"LANG=C", "SHELL=/bin/sh"}, pack, 2, "LANG is 'C'"},
		{"half proxy", "charmcraft", "name: a\n", append(append([]string{}, base...), "http_proxy=http://p/"), pack, 2, "https_proxy is '<unset>'"},
		{"charm with LAUNCHPAD_INSTANCE", "charmcraft", "name: a\n", append(append([]string{}, base...), "LAUNCHPAD_INSTANCE=x"), pack, 2, "LAUNCHPAD_INSTANCE must not be set"},
		{"rock with CRAFT_PLATFORM", "rockcraft", "name: a\n", append(append([]string{}, base...), "CRAFT_PLATFORM=x"), pack, 2, "CRAFT_PLATFORM must not be set"},
		{"raw READ_AUTH", "sourcecraft", "name: a\n", append(append([]string{}, base...), "CARGO_A_READ_AUTH=u:t"), pack, 2, "exported as they were: CARGO_A_READ_AUTH"},
		{"raw MAVEN", "sourcecraft", "name: a\n", append(append([]string{}, base...), "MAVEN_A_URL=u"), pack, 2, "MAVEN_A_URL"},
		{"cargo without token", "sourcecraft", "name: a\nstandin-cargo: yes\n", append(append([]string{}, base...), "CARGO_REGISTRIES_A_INDEX=http://x"), pack, 2, "without CARGO_REGISTRIES_A_TOKEN"},
		{"fail 201", "sourcecraft", "name: a\nstandin-fail: 201\n", base, pack, 201, "failing with exit status 201"},
		{"wrong name", "snapcraft", "name: a\n", base, pack, 2, "called as snapcraft"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home, dir := mk(tc.tool, tc.yaml)
			if tc.yaml == "" {
				os.Remove(filepath.Join(dir, tc.tool+".yaml"))
			}
			code, out := runCraftPack(t, tc.tool, home, dir, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.msg) {
				t.Errorf("exit %d (want %d), output:\n%s", code, tc.code, out)
			}
		})
	}
	// Outside <home>/<name>: refused.
	home, _ := mk("rockcraft", "name: a\n")
	if code, out := runCraftPack(t, "rockcraft", home, home, base, pack...); code != 2 || !strings.Contains(out, "is not under") {
		t.Errorf("cwd outside: %d %s", code, out)
	}
}

package builders

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/rootfs"
)

// lpBinaryArgs is a build() args struct shaped like buildd-manager's for a
// binary package (buildd-manager-args.md §2 and §4.1).
func lpBinaryArgs() map[string]any {
	return map[string]any{
		"arch_tag":             "amd64",
		"archive_private":      false,
		"build_url":            "https://launchpad.test/ubuntu/+source/hello/1.0/+build/1",
		"builder_constraints":  []any{},
		"fast_cleanup":         true,
		"series":               "noble",
		"launchpad_instance":   "devel",
		"launchpad_server_url": "launchpad.test",
		"image_type":           "chroot",
		"arch_indep":           true,
		"suite":                "noble-updates",
		"archive_purpose":      "PRIMARY",
		"ogrecomponent":        "main",
		"archives":             []any{"deb http://ftpmaster.internal/ubuntu noble main", "deb http://ftpmaster.internal/ubuntu noble-updates main"},
		"trusted_keys":         []any{base64.StdEncoding.EncodeToString([]byte("\x99binary key"))},
		"build_debug_symbols":  false,
	}
}

// srcPkg writes a .dsc and its files into dir and returns the filemap
// (name → path) a build() with them would have.
func srcPkg(t *testing.T, dir, name, version string, files map[string]string) map[string]string {
	t.Helper()
	var sums, md5s strings.Builder
	out := map[string]string{}
	for fn, content := range files {
		p := filepath.Join(dir, fn)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256([]byte(content))
		m := md5.Sum([]byte(content))
		fmt.Fprintf(&sums, " %x %d %s\n", s, len(content), fn)
		fmt.Fprintf(&md5s, " %x %d %s\n", m, len(content), fn)
		out[fn] = p
	}
	dsc := fmt.Sprintf("Format: 3.0 (native)\nSource: %s\nBinary: %s\nArchitecture: any\nVersion: %s\n"+
		"Build-Depends: debhelper-compat (= 13), libfoo-dev [amd64]\nChecksums-Sha256:\n%sFiles:\n%s",
		name, name, version, sums.String(), md5s.String())
	dscName := name + "_" + version + ".dsc"
	p := filepath.Join(dir, dscName)
	if err := os.WriteFile(p, []byte(dsc), 0o644); err != nil {
		t.Fatal(err)
	}
	out[dscName] = p
	return out
}

func TestParseBinaryPackageArgs(t *testing.T) {
	a, err := ParseBinaryPackageArgs(lpBinaryArgs())
	if err != nil {
		t.Fatal(err)
	}
	if a.Suite != "noble-updates" || a.Component != "main" || a.ArchivePurpose != "PRIMARY" || !a.ArchIndep || a.BuildDebugSymbols || len(a.Common.Archives) != 2 {
		t.Errorf("%+v", a)
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"no suite", func(m map[string]any) { delete(m, "suite") }, `"suite"`},
		{"no component", func(m map[string]any) { delete(m, "ogrecomponent") }, `"ogrecomponent"`},
		{"no series", func(m map[string]any) { delete(m, "series") }, `"series"`},
		{"bad suite", func(m map[string]any) { m["suite"] = "noble updates" }, `"suite"`},
		{"option-like component", func(m map[string]any) { m["ogrecomponent"] = "-x" }, `"ogrecomponent"`},
		{"arch_indep not bool", func(m map[string]any) { m["arch_indep"] = "yes" }, `"arch_indep"`},
		{"lxd image", func(m map[string]any) { m["image_type"] = "lxd" }, `"image_type"`},
		{"empty archives", func(m map[string]any) { m["archives"] = []any{} }, `"archives"`},
		{"bad key", func(m map[string]any) { m["trusted_keys"] = []any{"!!"} }, `"trusted_keys"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := lpBinaryArgs()
			tc.edit(args)
			_, err := ParseBinaryPackageArgs(args)
			var ae *ArgError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want an ArgError naming %s", err, tc.want)
			}
		})
	}
}

func TestBinaryPackageFactoryChecksTheFilemap(t *testing.T) {
	dir := t.TempDir()
	files := srcPkg(t, dir, "hello", "1.0", map[string]string{"hello_1.0.tar.xz": "tarball"})
	req := func(f map[string]string) Request {
		return Request{BuildID: "PACKAGEBUILD-1", Files: f, Args: lpBinaryArgs()}
	}
	if _, err := NewBinaryPackageManager(req(files)); err != nil {
		t.Fatalf("a good filemap: %v", err)
	}
	without := func(name string) map[string]string {
		m := map[string]string{}
		for k, v := range files {
			if k != name {
				m[k] = v
			}
		}
		return m
	}
	other := srcPkg(t, t.TempDir(), "other", "2.0", map[string]string{"other_2.0.tar.xz": "x"})
	two := without("")
	two["other_2.0.dsc"] = other["other_2.0.dsc"]
	short := without("hello_1.0.tar.xz")
	shortPath := filepath.Join(t.TempDir(), "short")
	os.WriteFile(shortPath, []byte("tar"), 0o644)
	short["hello_1.0.tar.xz"] = shortPath
	garbage := filepath.Join(t.TempDir(), "garbage.dsc")
	os.WriteFile(garbage, []byte("\x00\x01 not a control file\n\n\nFoo"), 0o644)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no .dsc", without("hello_1.0.dsc"), "has no .dsc"},
		{"two .dsc", two, "2 .dsc files"},
		{"a listed file missing", without("hello_1.0.tar.xz"), "which the filemap does not have"},
		{"size differs", short, "has 7 bytes; the file sent has 3"},
		{"unparsable .dsc", map[string]string{"hello_1.0.dsc": garbage}, "hello_1.0.dsc"},
		{"no underscore", map[string]string{"hello.dsc": files["hello_1.0.dsc"]}, "not a .dsc file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBinaryPackageManager(req(tc.files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCurrentlyBuilding(t *testing.T) {
	m := &BinaryPackageManager{dscName: "hello_1.0-1.dsc", args: BinaryPackageArgs{Suite: "noble-proposed", Component: "universe", ArchivePurpose: "PPA"}}
	want := "Package: hello\nComponent: universe\nSuite: noble-proposed\nPurpose: PPA\n"
	if got := m.CurrentlyBuilding(); got != want {
		t.Errorf("got %q", got)
	}
	m.args.BuildDebugSymbols = true
	if got := m.CurrentlyBuilding(); got != want+"Build-Debug-Symbols: yes\n" {
		t.Errorf("got %q", got)
	}
}

func TestDebBuildOptions(t *testing.T) {
	for _, tc := range []struct {
		debug bool
		cpus  int
		want  string
	}{
		{false, 1, "noautodbgsym"},
		{false, 4, "noautodbgsym parallel=4"},
		{true, 1, ""},
		{true, 2, "parallel=2"},
	} {
		if got := debBuildOptions(tc.debug, tc.cpus); got != tc.want {
			t.Errorf("debBuildOptions(%v, %d) = %q, want %q", tc.debug, tc.cpus, got, tc.want)
		}
	}
}

func TestSbuildSetupScript(t *testing.T) {
	setup, err := NewAptSetup("PACKAGEBUILD-1", "noble", []string{"deb http://a/ubuntu noble main"}, []string{base64.StdEncoding.EncodeToString([]byte("k"))}, "")
	if err != nil {
		t.Fatal(err)
	}
	setup.Files = append(setup.Files, AptFile{Path: "/CurrentlyBuilding"})
	want := `set -e
rm -f /etc/apt/sources.list.d/ubuntu.sources
rm -f /etc/apt/sources.list
install -m 0644 /srv/buildd-agent/files/0 /etc/apt/sources.list.d/lp-buildd.sources
install -m 0644 /srv/buildd-agent/files/1 /etc/apt/apt.conf.d/99retries
install -m 0644 /srv/buildd-agent/files/2 /etc/apt/apt.conf.d/99phasing
install -m 0644 /srv/buildd-agent/files/3 /etc/apt/preferences.d/proposed.pref
install -m 0644 /srv/buildd-agent/files/4 /etc/apt/preferences.d/backports.pref
install -m 0644 /srv/buildd-agent/files/5 /etc/apt/trusted.gpg.d/launchpad-buildd-0.gpg
install -m 0644 /srv/buildd-agent/files/6 /CurrentlyBuilding
`
	if got := sbuildSetupScript(setup); got != want {
		t.Errorf("got:\n%s", got)
	}
}

func TestPerlQuote(t *testing.T) {
	for in, want := range map[string]string{`a`: `'a'`, `it's`: `'it\'s'`, `a\b`: `'a\\b'`, `'\'`: `'\'\\\''`} {
		if got := perlQuote(in); got != want {
			t.Errorf("perlQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// fakeSbuild plays sbuild: it runs in the build directory and does what
// the test says, writing output as sbuild would.
type fakeSbuild struct {
	mu      sync.Mutex
	cmd     rootfs.IsolatedCommand
	started bool
	killed  chan struct{}
	once    sync.Once
	// run does the build; it returns the exit code. It may block on kill.
	run func(c rootfs.IsolatedCommand, killed <-chan struct{}) int
}

func (f *fakeSbuild) start(c rootfs.IsolatedCommand) (sbuildProcess, error) {
	f.mu.Lock()
	f.cmd, f.started = c, true
	f.mu.Unlock()
	done := make(chan int, 1)
	go func() { done <- f.run(c, f.killed) }()
	return &fakeSbuildProc{f: f, done: done}, nil
}

type fakeSbuildProc struct {
	f    *fakeSbuild
	done chan int
}

func (p *fakeSbuildProc) Wait() (int, error) { return <-p.done, nil }
func (p *fakeSbuildProc) Kill()              { p.f.once.Do(func() { close(p.f.killed) }) }
func (p *fakeSbuildProc) Release() error     { return nil }
func (p *fakeSbuildProc) Listen(ctx context.Context, network, _ string) (net.Listener, error) {
	return net.Listen(network, "127.0.0.1:0")
}

type sbuildFixture struct {
	t     *testing.T
	env   *fakeEnv
	m     *BinaryPackageManager
	fake  *fakeSbuild
	state string
}

func newSbuildFixture(t *testing.T, run func(c rootfs.IsolatedCommand, killed <-chan struct{}) int) *sbuildFixture {
	t.Helper()
	src := t.TempDir()
	files := srcPkg(t, src, "hello", "1.0", map[string]string{"hello_1.0.tar.xz": "tarball"})
	chroot := filepath.Join(src, "chroot.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "chroot-autobuild/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeChar, Name: "chroot-autobuild/dev/null", Mode: 0o666})
	tw.Close()
	os.WriteFile(chroot, buf.Bytes(), 0o644)
	sum := sha1.Sum(buf.Bytes())
	args := lpBinaryArgs()
	args["series"] = "bookworm"
	args["suite"] = "bookworm"
	mgr, err := NewBinaryPackageManager(Request{BuildID: "PACKAGEBUILD-42", Files: files, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	m := mgr.(*BinaryPackageManager)
	m.req.Chroot.Path, m.req.Chroot.SHA1, m.req.Chroot.Type = chroot, hex.EncodeToString(sum[:]), "chroot"
	env := newFakeEnv(&fakeTarget{})
	state := t.TempDir()
	// The build home must be searchable by the build user (checkSearchable);
	// the testing package makes its directories 0700.
	for d := state; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	env.Config.StateDir = state
	env.Config.BuildHome = filepath.Join(state, "builds")
	env.Config.SbuildUser = "buildd"
	fake := &fakeSbuild{run: run, killed: make(chan struct{})}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	oldLookup, oldStart := lookupSbuildUser, startSbuild
	lookupSbuildUser = func(name string) (SbuildUser, error) {
		return SbuildUser{Name: name, UID: uid, GID: gid, SubUID: uid, SubGID: gid}, nil
	}
	startSbuild = fake.start
	t.Cleanup(func() { lookupSbuildUser, startSbuild = oldLookup, oldStart })
	return &sbuildFixture{t: t, env: env, m: m, fake: fake, state: state}
}

func (fx *sbuildFixture) run(ctx context.Context) Result {
	res := fx.m.Run(ctx, &fx.env.Env)
	if _, err := os.Stat(filepath.Join(fx.env.Config.BuildHome, "build-PACKAGEBUILD-42")); !errors.Is(err, os.ErrNotExist) {
		fx.t.Errorf("the build directory is left behind: %v", err)
	}
	return res
}

// sbuildOK writes what a successful sbuild leaves: a .changes and its files.
func sbuildOK(extra func(dir string)) func(rootfs.IsolatedCommand, <-chan struct{}) int {
	return func(c rootfs.IsolatedCommand, _ <-chan struct{}) int {
		fmt.Fprintln(c.Stdout, "sbuild (Debian sbuild) 0.85.0 (04 January 2023) on vm")
		os.WriteFile(filepath.Join(c.Dir, "hello_1.0_amd64.deb"), []byte("!<arch>\n"), 0o644)
		os.WriteFile(filepath.Join(c.Dir, "hello_1.0_amd64.buildinfo"), []byte("Format: 1.0\n"), 0o644)
		changes := "Format: 1.8\nSource: hello\nVersion: 1.0\nArchitecture: amd64\nFiles:\n" +
			" 0123456789abcdef0123456789abcdef 8 misc optional hello_1.0_amd64.deb\n" +
			" 0123456789abcdef0123456789abcdef 12 misc optional hello_1.0_amd64.buildinfo\n"
		os.WriteFile(filepath.Join(c.Dir, "hello_1.0_amd64.changes"), []byte(changes), 0o644)
		if extra != nil {
			extra(c.Dir)
		}
		fmt.Fprintln(c.Stdout, "Status: successful")
		return 0
	}
}

func TestBinaryPackageBuildOK(t *testing.T) {
	var seen struct {
		argv, env []string
		rc        string
		setup     string
		files     []string
		dsc       []byte
	}
	fx := newSbuildFixture(t, func(c rootfs.IsolatedCommand, k <-chan struct{}) int {
		seen.argv, seen.env = c.Args, c.Env
		rc, _ := os.ReadFile(filepath.Join(c.Dir, ".sbuildrc"))
		seen.rc = string(rc)
		setup, _ := os.ReadFile(filepath.Join(c.Dir, "agent", "setup.sh"))
		seen.setup = string(setup)
		ents, _ := os.ReadDir(filepath.Join(c.Dir, "agent", "files"))
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(c.Dir, "agent", "files", e.Name()))
			seen.files = append(seen.files, string(b))
		}
		seen.dsc, _ = os.ReadFile(filepath.Join(c.Dir, "hello_1.0.dsc"))
		return sbuildOK(nil)(c, k)
	})
	res := fx.run(context.Background())
	if res.Status != BuildOK {
		t.Fatalf("status %s; log:\n%s", res.Status, fx.env.logText())
	}
	for _, name := range []string{"hello_1.0_amd64.changes", "hello_1.0_amd64.deb", "hello_1.0_amd64.buildinfo"} {
		if _, ok := fx.env.waiting[name]; !ok {
			t.Errorf("result %s not gathered (have %v)", name, fx.env.waitOrder)
		}
	}
	if fx.env.waitOrder[0] != "hello_1.0_amd64.changes" {
		t.Errorf("gathered in order %v", fx.env.waitOrder)
	}
	argv := strings.Join(seen.argv, " ")
	wantArgv := "linux64 sbuild --chroot-mode=unshare -c " + filepath.Join(fx.state, "sbuild-chroots", fx.m.req.Chroot.SHA1+".tar") +
		" --arch=amd64 --dist=bookworm --nolog -A hello_1.0.dsc"
	if argv != wantArgv {
		t.Errorf("argv\n%s\nwant\n%s", argv, wantArgv)
	}
	env := strings.Join(seen.env, "\n")
	if !strings.Contains(env, "DEB_BUILD_OPTIONS=noautodbgsym") || !strings.Contains(env, "HOME="+filepath.Join(fx.env.Config.BuildHome, "build-PACKAGEBUILD-42")) {
		t.Errorf("env %v", seen.env)
	}
	for _, want := range []string{"$chroot_mode = 'unshare';", "$apt_update = 1;", "$stalled_pkg_timeout = 150;",
		"$environment_filter = [\n    '^DEB_BUILD_OPTIONS$',\n];", "mountpoint => '/srv/buildd-agent'", "'build-deps-failed-commands'",
		"$maintainer_name = 'Launchpad Build Daemon <buildd@"} {
		if !strings.Contains(seen.rc, want) {
			t.Errorf(".sbuildrc lacks %q:\n%s", want, seen.rc)
		}
	}
	if perl, err := exec.LookPath("perl"); err == nil {
		p := filepath.Join(t.TempDir(), "rc")
		os.WriteFile(p, []byte(seen.rc), 0o644)
		if out, err := exec.Command(perl, "-c", p).CombinedOutput(); err != nil {
			t.Errorf("perl -c .sbuildrc: %v\n%s", err, out)
		}
	}
	all := strings.Join(seen.files, "\n")
	for _, want := range []string{"URIs: http://ftpmaster.internal/ubuntu\n", "Suites: noble-updates\n",
		"Package: hello\nComponent: main\nSuite: bookworm\nPurpose: PRIMARY\n", "\x99binary key"} {
		if !strings.Contains(all, want) {
			t.Errorf("setup files lack %q", want)
		}
	}
	if !strings.Contains(seen.setup, "rm -f /etc/apt/sources.list\n") {
		t.Errorf("setup.sh:\n%s", seen.setup)
	}
	if !strings.HasPrefix(string(seen.dsc), "Format: 3.0 (native)") {
		t.Errorf("the .dsc was not copied in: %q", seen.dsc)
	}
	log := fx.env.logText()
	for _, want := range []string{"Overriding sources.list in build-PACKAGEBUILD-42", "Initiating build PACKAGEBUILD-42 with ",
		"Kernel reported to sbuild: ", "RUN: linux64 sbuild --chroot-mode=unshare", "Repacking chroot " + fx.m.req.Chroot.SHA1, "Status: successful"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The chroot was repacked once and is reused.
	if _, err := os.Stat(filepath.Join(fx.state, "sbuild-chroots", fx.m.req.Chroot.SHA1+".tar")); err != nil {
		t.Error(err)
	}
}

func TestBinaryPackageStatusMapping(t *testing.T) {
	depwait := "The following packages have unmet dependencies:\n" +
		" sbuild-build-depends-main-dummy : Depends: libfeas-nonexistent-dev:any (>= 3.0) but it is not installable\n" +
		"E: Unable to correct problems, you have held broken packages.\n" +
		"+------+\n| Summary |\nFail-Stage: install-deps\nStatus: given-back\n"
	// The reference's patterns are gcc's old wording (gcc 8 and later
	// say "initialization of 'char *' from 'int' makes pointer …", which
	// it does not match, and neither do we: same results as the farm).
	implicit := "hello.c:3:12: warning: implicit declaration of function 'mkstr'\n" +
		"hello.c:3:12: warning: initialization makes pointer from integer without a cast\n"
	for _, tc := range []struct {
		name   string
		output string
		code   int
		want   BuildStatus
		deps   string
		inLog  string
	}{
		{"failed", "Status: failed\nFail-Stage: build\n", 1, BuildPackageFail, "", "Returning build status: PACKAGEFAIL"},
		{"attempted", "Status: attempted\nFail-Stage: build\n", 2, BuildPackageFail, "", ""},
		{"depwait", depwait, 3, BuildDepFail, "libfeas-nonexistent-dev (>= 3.0)", "Dependencies: libfeas-nonexistent-dev (>= 3.0)"},
		{"given back", "E: There are problems and -y was used without --force-yes\nFail-Stage: install-deps\n", 3, BuildGivenBack, "", "Returning build status: GIVENBACK"},
		{"given back without a reason", "Fail-Stage: fetch-src\n", 3, BuildPackageFail, "", ""},
		{"create-session", "E: Error creating chroot session: skipping hello\nFail-Stage: create-session\n", 1, BuildChrootFail, "", "Fail-Stage: create-session"},
		{"apt-get update", "Fail-Stage: apt-get-update\n", 3, BuildChrootFail, "", ""},
		{"setup commands", "Fail-Stage: run-chroot-setup-commands\n", 1, BuildChrootFail, "", ""},
		{"builder fail", "", 4, BuildBuilderFail, "", ""},
		{"killed", "", 137, BuildBuilderFail, "", ""},
		{"faked fail stage before the summary", "Fail-Stage: create-session\nlots of build output\nFail-Stage: build\n", 2, BuildPackageFail, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newSbuildFixture(t, func(c rootfs.IsolatedCommand, _ <-chan struct{}) int {
				fmt.Fprint(c.Stdout, tc.output)
				return tc.code
			})
			res := fx.run(context.Background())
			if res.Status != tc.want || res.Dependencies != tc.deps {
				t.Fatalf("status %s deps %q, want %s %q; log:\n%s", res.Status, res.Dependencies, tc.want, tc.deps, fx.env.logText())
			}
			if tc.inLog != "" && !strings.Contains(fx.env.logText(), tc.inLog) {
				t.Errorf("log lacks %q", tc.inLog)
			}
			if len(fx.env.waiting) != 0 {
				t.Errorf("a failed build gathered %v", fx.env.waitOrder)
			}
		})
	}
	t.Run("implicit pointer function", func(t *testing.T) {
		fx := newSbuildFixture(t, func(c rootfs.IsolatedCommand, k <-chan struct{}) int {
			fmt.Fprint(c.Stdout, implicit)
			return sbuildOK(nil)(c, k)
		})
		if res := fx.run(context.Background()); res.Status != BuildPackageFail {
			t.Fatalf("status %s; log:\n%s", res.Status, fx.env.logText())
		}
	})
}

// TestBinaryPackageDepWaitFromAptLists: "… but it is not going to be
// installed" is analysed against the lists the build root left.
func TestBinaryPackageDepWaitFromAptLists(t *testing.T) {
	fx := newSbuildFixture(t, func(c rootfs.IsolatedCommand, _ <-chan struct{}) int {
		lists := "Package: debhelper\nVersion: 13.11.4\n\nPackage: debhelper-compat\nVersion: 13\nProvides: debhelper-compat (= 13)\n\n"
		os.WriteFile(filepath.Join(c.Dir, "agent", "lists", "Packages"), []byte(lists), 0o644)
		fmt.Fprint(c.Stdout, "The following packages have unmet dependencies:\n"+
			" sbuild-build-depends-main-dummy : Depends: libfoo-dev but it is not going to be installed\n"+
			"Fail-Stage: install-deps\n")
		return 3
	})
	res := fx.run(context.Background())
	if res.Status != BuildDepFail || res.Dependencies != "libfoo-dev" {
		t.Fatalf("status %s deps %q; log:\n%s", res.Status, res.Dependencies, fx.env.logText())
	}
}

func TestBinaryPackageGatherRefusesHostileResults(t *testing.T) {
	for name, extra := range map[string]func(dir string){
		"no .changes":         func(dir string) { os.Remove(filepath.Join(dir, "hello_1.0_amd64.changes")) },
		"listed file missing": func(dir string) { os.Remove(filepath.Join(dir, "hello_1.0_amd64.deb")) },
		"listed file is a symlink": func(dir string) {
			p := filepath.Join(dir, "hello_1.0_amd64.deb")
			os.Remove(p)
			os.Symlink("/etc/shadow", p)
		},
		"listed file is a FIFO": func(dir string) {
			p := filepath.Join(dir, "hello_1.0_amd64.deb")
			os.Remove(p)
			syscall.Mkfifo(p, 0o644)
		},
		".changes names a path": func(dir string) {
			os.WriteFile(filepath.Join(dir, "hello_1.0_amd64.changes"),
				[]byte("Format: 1.8\nFiles:\n 0123456789abcdef0123456789abcdef 8 misc optional ../../../etc/passwd\n"), 0o644)
		},
		".changes is a symlink": func(dir string) {
			p := filepath.Join(dir, "hello_1.0_amd64.changes")
			os.Remove(p)
			os.Symlink("/etc/passwd", p)
		},
	} {
		t.Run(name, func(t *testing.T) {
			fx := newSbuildFixture(t, sbuildOK(extra))
			done := make(chan Result, 1)
			go func() { done <- fx.run(context.Background()) }()
			select {
			case res := <-done:
				if res.Status != BuildPackageFail {
					t.Fatalf("status %s; log:\n%s", res.Status, fx.env.logText())
				}
				if !strings.Contains(fx.env.logText(), "Failed to gather results") {
					t.Errorf("log:\n%s", fx.env.logText())
				}
				for n, data := range fx.env.waiting {
					if strings.Contains(string(data), "root:") {
						t.Errorf("gathered a host file as %s", n)
					}
				}
			case <-time.After(30 * time.Second):
				t.Fatal("gathering hangs")
			}
		})
	}
}

func TestBinaryPackageChecksumMismatch(t *testing.T) {
	fx := newSbuildFixture(t, sbuildOK(nil))
	// Same size, other content: only the checksum can tell.
	os.WriteFile(fx.m.req.Files["hello_1.0.tar.xz"], []byte("TARBALL"), 0o644)
	res := fx.run(context.Background())
	if res.Status != BuildPackageFail || fx.fake.started {
		t.Fatalf("status %s, sbuild started %v", res.Status, fx.fake.started)
	}
	if !strings.Contains(fx.env.logText(), "hello_1.0.tar.xz does not match hello_1.0.dsc: its SHA-256 is") {
		t.Errorf("log:\n%s", fx.env.logText())
	}
}

func TestBinaryPackageAbortKillsSbuild(t *testing.T) {
	fx := newSbuildFixture(t, func(c rootfs.IsolatedCommand, killed <-chan struct{}) int {
		fmt.Fprintln(c.Stdout, "Install-Time: …")
		<-killed
		return 137
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { done <- fx.run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fx.fake.mu.Lock()
		started := fx.fake.started
		fx.fake.mu.Unlock()
		if started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sbuild never started; log:\n%s", fx.env.logText())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case res := <-done:
		if res.Status != BuildAborted {
			t.Fatalf("status %s", res.Status)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("abort did not end the build")
	}
}

func TestBinaryPackageChrootNotATarball(t *testing.T) {
	fx := newSbuildFixture(t, sbuildOK(nil))
	os.WriteFile(fx.m.req.Chroot.Path, []byte("this is not a tarball at all\n"), 0o644)
	if res := fx.run(context.Background()); res.Status != BuildChrootFail || fx.fake.started {
		t.Fatalf("status %s started %v; log:\n%s", res.Status, fx.fake.started, fx.env.logText())
	}
}

func TestBinaryPackageLeftoversOfACrashAreRemoved(t *testing.T) {
	fx := newSbuildFixture(t, sbuildOK(nil))
	old := filepath.Join(fx.env.Config.BuildHome, "build-PACKAGEBUILD-42", "tmp", "tmp.sbuild.x")
	os.MkdirAll(old, 0o755)
	if res := fx.run(context.Background()); res.Status != BuildOK {
		t.Fatalf("status %s; log:\n%s", res.Status, fx.env.logText())
	}
}

func TestCheckSearchable(t *testing.T) {
	dir := t.TempDir()
	inner := filepath.Join(dir, "a", "b")
	os.MkdirAll(inner, 0o755)
	os.Chmod(filepath.Join(dir, "a"), 0o700)
	if err := checkSearchable(inner); err == nil || !strings.Contains(err.Error(), "chmod o+x "+filepath.Join(dir, "a")) {
		t.Errorf("0700 parent: %v", err)
	}
}

func TestLookupSbuildUserErrors(t *testing.T) {
	dir := t.TempDir()
	oldU, oldG := subUIDFile, subGIDFile
	t.Cleanup(func() { subUIDFile, subGIDFile = oldU, oldG })
	subUIDFile, subGIDFile = filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	name := currentUserName(t)
	if os.Getuid() == 0 {
		if _, err := LookupSbuildUser("root"); err == nil || !strings.Contains(err.Error(), "is root") {
			t.Errorf("root: %v", err)
		}
		t.Skip("the rest needs an unprivileged current user")
	}
	os.WriteFile(subUIDFile, []byte(name+":100000:1000\n"), 0o644)
	os.WriteFile(subGIDFile, []byte(""), 0o644)
	if _, err := LookupSbuildUser(name); err == nil || !strings.Contains(err.Error(), "sbuild needs 65536") {
		t.Errorf("small range: %v", err)
	}
	os.WriteFile(subUIDFile, []byte(name+":100000:65536\n"), 0o644)
	if _, err := LookupSbuildUser(name); err == nil || !strings.Contains(err.Error(), "usermod --add-subgids") {
		t.Errorf("no subgid: %v", err)
	}
	if _, err := LookupSbuildUser("no-such-user-buildd-agent"); err == nil || !strings.Contains(err.Error(), "useradd") {
		t.Errorf("no user: %v", err)
	}
}

func currentUserName(t *testing.T) string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Skip("no id command")
	}
	return strings.TrimSpace(string(out))
}

func TestSweepSbuildChroots(t *testing.T) {
	state := t.TempDir()
	dir := SbuildChrootDir(state)
	os.MkdirAll(dir, 0o755)
	sum := strings.Repeat("a", 40)
	keep := filepath.Join(dir, sum+".tar")
	tmp := filepath.Join(dir, "."+sum+".123.tmp")
	os.WriteFile(keep, nil, 0o644)
	os.WriteFile(tmp, nil, 0o644)
	if err := sweepSbuildChroots(context.Background(), state, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a killed repack's temporary file is left: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a cached chroot was removed: %v", err)
	}
}

func TestPruneSbuildChroots(t *testing.T) {
	state := t.TempDir()
	dir := SbuildChrootDir(state)
	os.MkdirAll(dir, 0o755)
	var paths []string
	for i := 0; i < 4; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%040d", i)+".tar")
		os.WriteFile(p, nil, 0o644)
		used := time.Now().Add(-time.Duration(i) * time.Hour)
		os.Chtimes(p, used, used)
		paths = append(paths, p)
	}
	old := filepath.Join(dir, fmt.Sprintf("%040d", 9)+".tar")
	os.WriteFile(old, nil, 0o644)
	os.Chtimes(old, time.Now().Add(-30*24*time.Hour), time.Now().Add(-30*24*time.Hour))
	pruneSbuildChroots(ManagerConfig{StateDir: state, ImageMaxAge: 7 * 24 * time.Hour, ImageMaxCount: 2})
	for i, p := range paths {
		_, err := os.Stat(p)
		if kept := err == nil; kept != (i < 2) {
			t.Errorf("chroot used %dh ago: kept %v", i, kept)
		}
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("a chroot unused for 30 days was kept")
	}
}

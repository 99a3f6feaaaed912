package aptarchive

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// sbuildUser is the unprivileged user with a subuid/subgid range that
// tests/setup.sh creates for sbuild's unshare mode.
const sbuildUser = "sbuild-harness"

// aptFetch matches apt's progress lines ("Get:1 http://… bookworm InRelease").
var aptFetch = regexp.MustCompile(`^(?:Get|Hit|Ign|Err):\d+ (\S+ .*)$`)

// TestSbuildHarnessSmoke proves the harness against the real sbuild 0.85
// in --chroot-mode=unshare, run as an unprivileged user, offline except
// for the served archive on loopback: Hello builds (rc 0, a .deb with
// /usr/bin/feas-hello), and the three dep-wait packages are given back
// (rc 3) with the apt lines buildd-manager's dependency analysis reads.
func TestSbuildHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real sbuild builds (a few minutes)")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "sbuild")
	testenv.RequireCommand(t, "newuidmap")
	u, err := user.Lookup(sbuildUser)
	if err != nil {
		testenv.Unavailable(t, "needs the user %s with a subuid range (run tests/setup.sh): %v", sbuildUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	chroot := SbuildTarball(t)
	a := Build(t, Options{Extra: []string{BinaryPackage(t, t.TempDir(), BrokenDep)}})
	url := a.Serve(t, "")

	// The user must read the sources and write the results: not t.TempDir(),
	// whose parents are private to root.
	work, err := os.MkdirTemp("", "sbuild-harness-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SBUILD_HARNESS_KEEP") == "" {
		t.Cleanup(func() { _ = os.RemoveAll(work) })
	} else {
		t.Logf("keeping %s", work)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(work, "sbuildrc")
	writeFile(t, rc, []byte(sbuildrc(a.SourcesLine(url), a.PublicKey())), 0o644)

	for _, tc := range []struct {
		spec  SourceSpec
		rc    int
		lines []string // each must be a whole line of the log
	}{
		{Hello, 0, []string{"Status: successful"}},
		{DepWaitMissing, 3, []string{
			" sbuild-build-depends-main-dummy : Depends: libfeas-nonexistent-dev:any (>= 3.0) but it is not installable",
			"Fail-Stage: install-deps", "Status: given-back"}},
		{DepWaitVersion, 3, []string{
			" sbuild-build-depends-main-dummy : Depends: debhelper (>= 99) but 13.11.4 is to be installed",
			"Fail-Stage: install-deps", "Status: given-back"}},
		{DepWaitIndirect, 3, []string{
			" feas-brokendep : Depends: libfeas-missing1 but it is not installable",
			"Fail-Stage: install-deps", "Status: given-back"}},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			dir := filepath.Join(work, tc.spec.Name)
			mkdir(t, dir)
			dsc := SourcePackage(t, dir, tc.spec)
			if err := os.Chown(dir, uid, gid); err != nil {
				t.Fatal(err)
			}
			before := len(a.Requests())
			start := time.Now()
			log, code := runSbuild(t, dir, rc, chroot, dsc)
			t.Logf("sbuild %s: rc %d in %s, %d log lines", filepath.Base(dsc), code, time.Since(start).Round(time.Second), strings.Count(log, "\n"))
			if code != tc.rc {
				t.Fatalf("sbuild rc %d, want %d; log tail:\n%s", code, tc.rc, tail(log, 60))
			}
			for _, want := range tc.lines {
				if !hasLine(log, want) {
					t.Errorf("log has no line %q; tail:\n%s", want, tail(log, 60))
				}
			}
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "Depends:") && strings.Contains(l, " : ") {
					t.Logf("apt: %s", l)
				}
			}
			// apt's own account: every source it touched is the served
			// archive or sbuild's local dummy archive.
			served := 0
			for _, l := range strings.Split(log, "\n") {
				m := aptFetch.FindStringSubmatch(l)
				switch {
				case m == nil || strings.HasPrefix(m[1], "copy:/") || strings.HasPrefix(m[1], "file:/"):
				case strings.HasPrefix(m[1], url+" "):
					served++
				default:
					t.Errorf("apt fetched from elsewhere: %q", l)
				}
			}
			if served == 0 {
				t.Errorf("the log shows no apt fetch from %s", url)
			}
			reqs := a.Requests()[before:]
			if len(reqs) == 0 {
				t.Errorf("sbuild fetched nothing from the archive")
			}
			for _, r := range reqs {
				host, _, _ := net.SplitHostPort(r.RemoteAddr)
				if !net.ParseIP(host).IsLoopback() || r.Status != 200 && r.Status != 304 {
					t.Errorf("archive request %+v: not a loopback 200", r)
				}
			}
			if tc.rc != 0 {
				return
			}
			if !strings.Contains(log, "\nToolchain package versions: ") {
				t.Errorf("no Toolchain package versions line")
			}
			fetched := strings.Join(a.RequestedPaths()[before:], "\n")
			for _, p := range []string{"/dists/bookworm/InRelease", "/pool/main/gcc-12_", "/pool/main/debhelper_"} {
				if !strings.Contains(fetched, p) {
					t.Errorf("sbuild did not fetch %s from the archive", p)
				}
			}
			deb := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", tc.spec.Name, tc.spec.Version, a.Arch))
			out, err := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "./usr/bin/"+tc.spec.Name+"\n") {
				t.Errorf("dpkg-deb -c %s: %v\n%s", deb, err, out)
			}
			if _, err := os.Stat(strings.TrimSuffix(deb, ".deb") + ".changes"); err != nil {
				t.Errorf("no .changes: %v", err)
			}
		})
	}
}

// sbuildrc is launchpad-buildd's sbuildrc adapted to a fresh unshare
// chroot: apt lists are fetched (the tarball has none), unsigned archives
// are refused (so the signature is what lets apt in), and the chroot setup
// commands, run inside the chroot as root before "Update chroot", point apt
// at the archive and trust its key.
func sbuildrc(sourcesLine string, key []byte) string {
	// sbuild runs each of them as /bin/sh -c <command> inside the chroot, as
	// root (an array ref would be joined with spaces first, losing its
	// quoting), so each is one shell command line.
	setup := []string{
		"rm -f /etc/apt/sources.list.d/*; echo '" + sourcesLine + "' > /etc/apt/sources.list",
		"echo " + base64.StdEncoding.EncodeToString(key) + " | base64 -d > /etc/apt/trusted.gpg.d/buildd-agent-test.gpg",
		// The chroot is thrown away after the build: dpkg need not fsync
		// every file of the ~100 packages it installs (test speed only).
		"echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/buildd-agent-test-unsafe-io",
	}
	var cmds []string
	for _, s := range setup {
		cmds = append(cmds, perlQuote(s))
	}
	return `$maintainer_name = 'buildd-agent tests <tests@buildd-agent.invalid>';
$build_arch_all = 0;
$apt_update = 1;
$apt_distupgrade = 0;
$apt_allow_unauthenticated = 0;
$resolve_alternatives = 1;
$build_environment = { 'LANG' => 'C.UTF-8', 'TERM' => 'unknown', 'V' => '1' };
$environment_filter = [ '^DEB_BUILD_OPTIONS$' ];
$purge_build_deps = 'never';
$stalled_pkg_timeout = 150;
$run_lintian = 0;
$bd_uninstallable_explainer = '';
$sbuild_mode = 'buildd';
$check_space = 0;
$chroot_mode = 'unshare';
$external_commands = { 'chroot-setup-commands' => [ ` + strings.Join(cmds, ", ") + ` ] };
1;
`
}

// perlQuote makes a single-quoted Perl string literal.
func perlQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// runSbuild runs sbuild as sbuildUser in dir and returns its log (stdout
// and stderr; --nolog) and exit status.
func runSbuild(t *testing.T, dir, rc, chroot, dsc string, extra ...string) (string, int) {
	t.Helper()
	u, _ := user.Lookup(sbuildUser)
	logPath := filepath.Join(dir, "sbuild.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := []string{"-u", sbuildUser, "--", "env", "-i",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + u.HomeDir, "USER=" + sbuildUser, "LOGNAME=" + sbuildUser,
		"SBUILD_CONFIG=" + rc, "DEB_BUILD_OPTIONS=noautodbgsym parallel=2",
		"sbuild", "--chroot-mode=unshare", "--chroot=" + chroot, "--arch=amd64", "--dist=" + DefaultSuite, "--nolog"}
	args = append(append(args, extra...), filepath.Base(dsc))
	cmd := exec.Command("runuser", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Run()
	data, rerr := os.ReadFile(logPath)
	if rerr != nil {
		t.Fatal(rerr)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(data), 0
	case errors.As(err, &exit):
		return string(data), exit.ExitCode()
	default:
		t.Fatalf("cannot run sbuild: %v", err)
		return "", -1
	}
}

func hasLine(log, line string) bool {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if sc.Text() == line {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

package aptarchive

import (
	"bytes"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// aptClient is apt-get/apt-cache with every directory private to the test,
// so the host's own apt state is neither used nor touched. Only the keys in
// trusted are trusted: no [trusted=yes], no host keyrings.
type aptClient struct {
	t    *testing.T
	opts []string
}

func newAptClient(t *testing.T, sourcesLine string, trusted map[string][]byte) *aptClient {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"parts", "trusted.gpg.d", "lists/partial", "cache/archives/partial", "etc", "prefs"} {
		mkdir(t, filepath.Join(dir, d))
	}
	for name, key := range trusted {
		writeFile(t, filepath.Join(dir, "trusted.gpg.d", name), key, 0o644)
	}
	writeFile(t, filepath.Join(dir, "sources.list"), []byte(sourcesLine+"\n"), 0o644)
	writeFile(t, filepath.Join(dir, "status"), nil, 0o644)
	return &aptClient{t: t, opts: []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(dir, "parts"),
		"-o", "Dir::Etc::Trusted=" + filepath.Join(dir, "etc", "trusted.gpg"),
		"-o", "Dir::Etc::TrustedParts=" + filepath.Join(dir, "trusted.gpg.d"),
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(dir, "prefs"),
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::State::status=" + filepath.Join(dir, "status"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Debug::NoLocking=1",
		// The test's temporary directories are private to the test's user;
		// the _apt sandbox user could not write the lists there.
		"-o", "APT::Sandbox::User=" + currentUser(),
		"-o", "Acquire::Languages=none",
	}}
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "nobody"
}

func (c *aptClient) run(tool string, args ...string) (string, error) {
	c.t.Helper()
	cmd := exec.Command(tool, append(append([]string(nil), c.opts...), args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestArchiveVerifiesWithApt(t *testing.T) {
	testenv.RequireCommand(t, "apt-get")
	extra := BinaryPackage(t, t.TempDir(), BrokenDep)
	a := Build(t, Options{Extra: []string{extra}})
	url := a.Serve(t, "")
	if got, want := a.SourcesLine(url), "deb "+url+" bookworm main"; got != want {
		t.Errorf("SourcesLine = %q, want %q", got, want)
	}
	key, err := base64.StdEncoding.DecodeString(a.TrustedKey())
	if err != nil || !bytes.Equal(key, a.PublicKey()) {
		t.Fatalf("TrustedKey is not base64 of the public key: %v", err)
	}

	apt := newAptClient(t, a.SourcesLine(url), map[string][]byte{"test-archive.gpg": key})
	out, err := apt.run("apt-get", "update")
	if err != nil {
		t.Fatalf("apt-get update against the signed archive: %v\n%s", err, out)
	}
	t.Logf("apt-get update:\n%s", out)
	if strings.Contains(out, "W:") || strings.Contains(out, "E:") {
		t.Errorf("apt-get update warned:\n%s", out)
	}
	out, err = apt.run("apt-cache", "policy", "build-essential", "debhelper", "feas-brokendep")
	if err != nil {
		t.Fatalf("apt-cache policy: %v\n%s", err, out)
	}
	for _, pkg := range []string{"build-essential:", "debhelper:", "feas-brokendep:"} {
		i := strings.Index(out, pkg)
		if i < 0 || !strings.Contains(out[i:], "Candidate: ") || strings.Contains(out[i:], "Candidate: (none)") {
			t.Errorf("apt-cache policy has no candidate for %s:\n%s", pkg, out)
		}
	}
	if !strings.Contains(out, url+" bookworm/main") {
		t.Errorf("apt-cache policy does not name the served archive %s:\n%s", url, out)
	}
	out, err = apt.run("apt-cache", "show", "feas-brokendep")
	if err != nil || !strings.Contains(out, "Depends: libfeas-missing1") {
		t.Errorf("apt-cache show feas-brokendep: %v\n%s", err, out)
	}

	paths := a.RequestedPaths()
	if !slices.Contains(paths, "/dists/bookworm/InRelease") {
		t.Errorf("apt did not fetch InRelease; requests: %v", paths)
	}
	for _, r := range a.Requests() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			t.Errorf("request from %q, not loopback: %+v", r.RemoteAddr, r)
		}
	}

	// The signature is what makes it pass: with another archive's key apt
	// refuses the same archive.
	other := Build(t, Options{NoBase: true, Extra: []string{extra}})
	if other.Fingerprint == a.Fingerprint {
		t.Fatalf("two archives share the signing key %s", a.Fingerprint)
	}
	wrong := newAptClient(t, a.SourcesLine(url), map[string][]byte{"other.gpg": other.PublicKey()})
	out, err = wrong.run("apt-get", "update")
	if err == nil || !strings.Contains(out, "NO_PUBKEY") {
		t.Errorf("apt-get update with the wrong key: err %v, want a NO_PUBKEY failure:\n%s", err, out)
	}
}

func TestArchiveArmoredKeyIsTheSameKey(t *testing.T) {
	a := Build(t, Options{NoBase: true, Extra: []string{BinaryPackage(t, t.TempDir(), BrokenDep)}})
	armored, err := base64.StdEncoding.DecodeString(a.TrustedKeyArmored())
	if err != nil || !bytes.HasPrefix(armored, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Fatalf("TrustedKeyArmored is not base64 of an armoured key: %v\n%s", err, armored)
	}
	// What lpbuildd's add-trusted-keys does with either form.
	for name, in := range map[string][]byte{"binary": a.PublicKey(), "armored": armored} {
		cmd := exec.Command("gpg", "--ignore-time-conflict", "--no-options", "--no-keyring", "--dearmor")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, a.PublicKey()) {
			t.Errorf("gpg --dearmor of the %s key does not give the binary key (err %v)", name, err)
		}
	}
}

func TestBinaryPackage(t *testing.T) {
	deb := BinaryPackage(t, t.TempDir(), BrokenDep)
	if filepath.Base(deb) != "feas-brokendep_1.0_all.deb" {
		t.Errorf("deb = %s", deb)
	}
	out, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Depends", "Architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "Package: feas-brokendep\nDepends: libfeas-missing1\nArchitecture: all\n"
	if string(out) != want {
		t.Errorf("dpkg-deb -f = %q, want %q", out, want)
	}
}

// implicitPattern and pointerPattern are lpbuildd's
// check_implicit_pointer_functions regexes; lpbuilddProblems is its
// filter_log: a pointer warning on the line of the last implicit one.
var (
	implicitPattern = regexp.MustCompile("^([^:]*):(\\d+):(\\d+:)? warning: implicit declaration of function [`']([^']*)'")
	pointerPattern  = regexp.MustCompile("^([^:]*):(\\d+):(\\d+:)? warning: " +
		"((assignment|initialization|return|passing arg \\d+ of `[^']*'|passing arg \\d+ of pointer to function) makes pointer from integer without a cast" +
		"|cast to pointer from integer of different size)")
)

func lpbuilddProblems(log []byte) []string {
	var problems []string
	var file, line, fn string
	for _, l := range strings.Split(string(log), "\n") {
		if m := implicitPattern.FindStringSubmatch(l); m != nil {
			file, line, fn = m[1], m[2], m[4]
		} else if m := pointerPattern.FindStringSubmatch(l); m != nil && m[1] == file && m[2] == line {
			problems = append(problems, "Function `"+fn+"' implicitly converted to pointer at "+file+":"+line)
		}
	}
	return problems
}

func TestSourcePackages(t *testing.T) {
	for _, tc := range []struct {
		spec     SourceSpec
		files    int
		binaries []string // Package-List entries
		bd       string   // in the extracted debian/control
	}{
		{Hello, 2, []string{"feas-hello deb misc optional arch=any"}, "Build-Depends: debhelper-compat (= 13)\n"},
		{HelloQuilt, 3, []string{"feas-hello-quilt deb misc optional arch=any"}, "Build-Depends: debhelper-compat (= 13)\n"},
		{HelloIndep, 2, []string{"feas-hello-indep deb misc optional arch=any", "feas-hello-indep-data deb misc optional arch=all"}, "Build-Depends-Indep: gettext\n"},
		{SourceSpec{Name: "feas-hello-all", Version: "1.0", Arch: ArchAll}, 2, []string{"feas-hello-all-data deb misc optional arch=all"}, "Build-Depends: debhelper-compat (= 13)\n"},
		{DepWaitMissing, 2, []string{"feas-depwait-a deb"}, "Build-Depends: debhelper-compat (= 13), libfeas-nonexistent-dev:any (>= 3.0)\n"},
		{DepWaitVersion, 2, []string{"feas-depwait-b deb"}, "Build-Depends: debhelper-compat (= 13), debhelper (>= 99)\n"},
		{DepWaitIndirect, 2, []string{"feas-depwait-c deb"}, "Build-Depends: debhelper-compat (= 13), feas-brokendep\n"},
		{FailingRules, 2, []string{"feas-fail deb"}, "override_dh_auto_build:"},
		{ImplicitPointer, 2, []string{"feas-implicit deb"}, "Build-Depends: debhelper-compat (= 13)\n"},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			dir := t.TempDir()
			dsc := SourcePackage(t, dir, tc.spec)
			files, err := Files(dsc)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != tc.files {
				t.Errorf("filemap has %d files, want %d: %v", len(files), tc.files, files)
			}
			for name, path := range files {
				if filepath.Base(path) != name {
					t.Errorf("filemap %s -> %s", name, path)
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("filemap file: %v", err)
				}
			}
			dscText, _ := os.ReadFile(dsc)
			for _, b := range tc.binaries {
				if !strings.Contains(string(dscText), "\n "+b) {
					t.Errorf(".dsc has no Package-List entry %q:\n%s", b, dscText)
				}
			}
			out := filepath.Join(t.TempDir(), "x")
			cmd := exec.Command("dpkg-source", "-x", dsc, out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("dpkg-source -x: %v\n%s", err, msg)
			}
			control, _ := os.ReadFile(filepath.Join(out, "debian", "control"))
			rules, _ := os.ReadFile(filepath.Join(out, "debian", "rules"))
			if !strings.Contains(string(control)+string(rules), tc.bd) {
				t.Errorf("extracted debian/control+rules lacks %q:\n%s%s", tc.bd, control, rules)
			}
			if _, err := exec.LookPath("gcc"); err != nil {
				return
			}
			// The upstream part compiles on the host as it will in the chroot.
			msg, err := exec.Command("make", "-C", out).CombinedOutput()
			if err != nil {
				t.Fatalf("make: %v\n%s", err, msg)
			}
			if tc.spec.Rules == RulesImplicitPointer {
				for _, w := range []string{
					"hello.c:5:19: warning: implicit declaration of function 'feas_greeting'",
					"hello.c:5:19: warning: initialization of 'char *' from 'int' makes pointer from integer without a cast",
					"hello.c:6:28: warning: implicit declaration of function 'feas_farewell'",
					"hello.c:6:19: warning: cast to pointer from integer of different size",
				} {
					if !bytes.Contains(msg, []byte(w)) {
						t.Errorf("gcc did not print %q:\n%s", w, msg)
					}
				}
				want := []string{"Function `feas_farewell' implicitly converted to pointer at hello.c:6"}
				if got := lpbuilddProblems(msg); !slices.Equal(got, want) {
					t.Errorf("lpbuildd's check finds %q, want %q", got, want)
				}
				return
			}
			if bytes.Contains(msg, []byte("warning:")) {
				t.Errorf("gcc warned:\n%s", msg)
			}
		})
	}
}

func TestImplicitPointerUTF8Quotes(t *testing.T) {
	testenv.RequireCommand(t, "gcc")
	dir := t.TempDir()
	dsc := SourcePackage(t, dir, SourceSpec{Name: "feas-implicit-utf8", Version: "1.0", Rules: RulesImplicitPointerUTF8})
	out := filepath.Join(t.TempDir(), "x")
	if msg, err := exec.Command("dpkg-source", "-x", dsc, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-source -x: %v\n%s", err, msg)
	}
	cmd := exec.Command("make", "-C", out)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make: %v\n%s", err, msg)
	}
	// The point of this spec: sbuild's locale gives curly quotes, which
	// lpbuildd's implicit-declaration regex does not match.
	if !bytes.Contains(msg, []byte("implicit declaration of function \u2018feas_greeting\u2019")) || len(lpbuilddProblems(msg)) != 0 {
		t.Errorf("expected only the curly-quoted warning:\n%s", msg)
	}
}

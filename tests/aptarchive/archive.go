// Package aptarchive makes the real Debian inputs that tests of Debian
// package builds (sbuild, the binarypackage manager) need, offline:
//   - a signed apt archive (Build) holding the cached closure of
//     build-essential, fakeroot and debhelper (tests/apt-fixture.sh) plus
//     any .debs a test generates (BinaryPackage), served over HTTP on
//     loopback with every request recorded (Serve, Requests);
//   - the archives and trusted_keys arguments buildd-manager would send for
//     it (SourcesLine, TrustedKey);
//   - real source packages built with dpkg-source (SourcePackage) from
//     ready specs (Hello, DepWaitMissing, FailingRules, …), and the filemap
//     of a .dsc (Files);
//   - the test chroot repacked the way sbuild's unshare mode reads it
//     (SbuildTarball).
//
// Everything is made with the real tools (apt-ftparchive, gpg, dpkg-deb,
// dpkg-source) so what a test proves holds for real archives and packages.
package aptarchive

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// DefaultSuite is the suite (and codename) archives and changelogs use.
const DefaultSuite = "bookworm"

// Options says what an archive holds. The zero value is the bookworm main
// archive of the host's architecture with the cached build closure.
type Options struct {
	Suite     string // default DefaultSuite
	Component string // default "main"
	Arch      string // default dpkg --print-architecture
	// Extra are .deb files published besides the cached closure, e.g.
	// BinaryPackage(t, dir, BrokenDep).
	Extra []string
	// NoBase leaves the cached closure out: an archive of Extra only, which
	// needs no root and no download.
	NoBase bool
	// Set picks the cached closure: "" is the default one (BaseDebs),
	// "tools" the same plus intltool and lsb-release (ToolDebs), "docker"
	// the default one plus docker.io (DockerDebs), "livefs" the default one
	// plus live-build, debootstrap and squashfs-tools (LiveFSDebs), "clamav"
	// the default one plus clamav (ClamAVDebs).
	Set string
}

// Archive is a signed apt archive in a test's temporary directory.
type Archive struct {
	Dir         string // the archive root: dists/, pool/
	Suite       string
	Component   string
	Arch        string
	Fingerprint string // of the throwaway signing key

	publicKey []byte // gpg --export, binary
	armored   []byte // gpg --armor --export

	mu       sync.Mutex
	requests []Request
}

// Request is one HTTP request the archive's server answered.
type Request struct {
	Method     string
	Path       string
	RemoteAddr string
	Status     int
}

// CacheDir is where the test fixtures are cached (the scripts' default).
func CacheDir() string {
	if d := os.Getenv("BUILDD_AGENT_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/buildd-agent-tests"
}

// debSets holds one download per cached .deb set and test process.
var debSets = struct {
	sync.Mutex
	m map[string]*debSet
}{m: map[string]*debSet{}}

type debSet struct {
	once sync.Once
	dir  string
	err  error
}

// cachedDebs returns the directory of the cached .debs of set ("" is the
// default closure), running DEBS_SET=<set> tests/apt-fixture.sh (root)
// once when it is not complete yet.
func cachedDebs(t testing.TB, set string) string {
	t.Helper()
	name := "debs"
	if set != "" {
		name += "-" + set
	}
	dir := filepath.Join(CacheDir(), name)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mmdebstrap")
	debSets.Lock()
	ds := debSets.m[set]
	if ds == nil {
		ds = &debSet{}
		debSets.m[set] = ds
	}
	debSets.Unlock()
	ds.once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(), "tests", "apt-fixture.sh"))
		if set != "" {
			cmd.Env = append(os.Environ(), "DEBS_SET="+set)
		}
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		ds.dir, ds.err = strings.TrimSpace(string(out)), err
	})
	if ds.err != nil {
		t.Fatalf("cannot download the archive's %q .debs (DEBS_SET=%s tests/apt-fixture.sh): %v", set, set, ds.err)
	}
	return ds.dir
}

// ToolDebs returns the directory of cached .debs of the "tools" set: the
// BaseDebs closure plus intltool and lsb-release.
func ToolDebs(t testing.TB) string { t.Helper(); return cachedDebs(t, "tools") }

// DockerDebs returns the directory of cached .debs of the "docker" set:
// the BaseDebs closure plus docker.io and its dependencies.
func DockerDebs(t testing.TB) string { t.Helper(); return cachedDebs(t, "docker") }

// BaseDebs returns the directory of cached .debs (the closure of
// build-essential, fakeroot and debhelper).
func BaseDebs(t testing.TB) string { t.Helper(); return cachedDebs(t, "") }

// Build makes a fresh archive in t.TempDir(): pool/main links to the cached
// .debs, pool/extra holds copies of opts.Extra, and dists/<suite> has
// Packages, Packages.gz and a Release made by apt-ftparchive, signed by a
// throwaway key into InRelease (clearsigned) and Release.gpg (detached).
func Build(t testing.TB, opts Options) *Archive {
	t.Helper()
	for _, tool := range []string{"apt-ftparchive", "gpg", "gpgconf"} {
		testenv.RequireCommand(t, tool)
	}
	a := &Archive{Dir: t.TempDir(), Suite: opts.Suite, Component: opts.Component, Arch: opts.Arch}
	if a.Suite == "" {
		a.Suite = DefaultSuite
	}
	if a.Component == "" {
		a.Component = "main"
	}
	if a.Arch == "" {
		a.Arch = hostArch(t)
	}
	if !opts.NoBase {
		var base string
		switch opts.Set {
		case "":
			base = BaseDebs(t)
		case "tools":
			base = ToolDebs(t)
		case "docker":
			base = DockerDebs(t)
		case "livefs":
			base = LiveFSDebs(t)
		case "clamav":
			base = ClamAVDebs(t)
		default:
			t.Fatalf("aptarchive: unknown set %q", opts.Set)
		}
		debs, err := filepath.Glob(filepath.Join(base, "*.deb"))
		if err != nil || len(debs) == 0 {
			t.Fatalf("no .debs in %s (%v): remove it and run tests/apt-fixture.sh", base, err)
		}
		// Symlinks: the closure is ~100 MB and every test gets its own
		// archive; apt-ftparchive and the file server follow them.
		mkdir(t, filepath.Join(a.Dir, "pool", "main"))
		for _, deb := range debs {
			if err := os.Symlink(deb, filepath.Join(a.Dir, "pool", "main", filepath.Base(deb))); err != nil {
				t.Fatalf("cannot link %s into the archive: %v", deb, err)
			}
		}
	}
	if len(opts.Extra) > 0 {
		mkdir(t, filepath.Join(a.Dir, "pool", "extra"))
		for _, deb := range opts.Extra {
			data, err := os.ReadFile(deb)
			if err != nil {
				t.Fatalf("cannot read extra package: %v", err)
			}
			writeFile(t, filepath.Join(a.Dir, "pool", "extra", filepath.Base(deb)), data, 0o644)
		}
	}
	mkdir(t, filepath.Join(a.Dir, "pool"))
	binDir := filepath.Join(a.Dir, "dists", a.Suite, a.Component, "binary-"+a.Arch)
	mkdir(t, binDir)
	packages := run(t, a.Dir, nil, "apt-ftparchive", "packages", "pool")
	writeFile(t, filepath.Join(binDir, "Packages"), packages, 0o644)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(packages)
	if err := zw.Close(); err != nil {
		t.Fatalf("cannot compress Packages: %v", err)
	}
	writeFile(t, filepath.Join(binDir, "Packages.gz"), gz.Bytes(), 0o644)
	// Release is read from stdout and written afterwards, so it cannot list
	// itself (what happens when apt-ftparchive writes it inside dists/).
	release := run(t, a.Dir, nil, "apt-ftparchive",
		"-o", "APT::FTPArchive::Release::Origin=buildd-agent-tests",
		"-o", "APT::FTPArchive::Release::Label=buildd-agent-tests",
		"-o", "APT::FTPArchive::Release::Suite="+a.Suite,
		"-o", "APT::FTPArchive::Release::Codename="+a.Suite,
		"-o", "APT::FTPArchive::Release::Architectures="+a.Arch,
		"-o", "APT::FTPArchive::Release::Components="+a.Component,
		"release", filepath.Join("dists", a.Suite))
	suiteDir := filepath.Join(a.Dir, "dists", a.Suite)
	writeFile(t, filepath.Join(suiteDir, "Release"), release, 0o644)
	a.sign(t, filepath.Join(suiteDir, "Release"))
	return a
}

// Serve serves the archive over HTTP on addr ("" means 127.0.0.1:0) until
// the test ends, recording every request, and returns the base URL
// (http://host:port, no trailing slash). It may be called more than once,
// e.g. on loopback and on the LXD bridge.
func (a *Archive) Serve(t testing.TB, addr string) string {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen for the apt archive on %s: %v", addr, err)
	}
	files := http.FileServer(http.Dir(a.Dir))
	srv := &http.Server{
		ReadHeaderTimeout: 30 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			files.ServeHTTP(sw, r)
			a.mu.Lock()
			a.requests = append(a.requests, Request{Method: r.Method, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Status: sw.status})
			a.mu.Unlock()
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Requests returns the requests served so far, in order.
func (a *Archive) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// RequestedPaths returns the URL paths of Requests, in order.
func (a *Archive) RequestedPaths() []string {
	var paths []string
	for _, r := range a.Requests() {
		paths = append(paths, r.Path)
	}
	return paths
}

// SourcesLine is the archive's one-line sources.list entry at url, the
// form of an element of buildd-manager's "archives" argument:
// "deb <url> bookworm main".
func (a *Archive) SourcesLine(url string) string {
	return fmt.Sprintf("deb %s %s %s", url, a.Suite, a.Component)
}

// TrustedKey is base64 of the binary public key (gpg --export), an
// element of buildd-manager's "trusted_keys" argument. lpbuildd's
// add-trusted-keys pipes the decoded keys through gpg --dearmor, which
// passes binary keys through unchanged.
func (a *Archive) TrustedKey() string { return base64.StdEncoding.EncodeToString(a.publicKey) }

// TrustedKeyArmored is base64 of the ASCII-armoured public key, the form
// Launchpad's own key export produces; add-trusted-keys dearmors it to the
// same keyring.
func (a *Archive) TrustedKeyArmored() string { return base64.StdEncoding.EncodeToString(a.armored) }

// PublicKey is the binary public key, as apt reads it from
// /etc/apt/trusted.gpg.d/*.gpg.
func (a *Archive) PublicKey() []byte { return append([]byte(nil), a.publicKey...) }

func hostArch(t testing.TB) string {
	return strings.TrimSpace(string(run(t, "", nil, "dpkg", "--print-architecture")))
}

// run runs a tool and returns its stdout; stderr goes into the failure.
func run(t testing.TB, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func mkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; the files must be
	// readable by the unprivileged user a build runs as.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

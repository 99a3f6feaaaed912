package tests

// End-to-end tests of binary package builds: the real buildd-agent binary
// driven over XML-RPC as buildd-manager drives it (ensurepresent of the
// chroot and every source file, build() with binarypackage arguments shaped
// like Launchpad's, status polling, the filemap fetched by SHA-1), building
// real source packages (dpkg-source) with the real sbuild in unshare mode
// as the unprivileged build user, against a real signed apt archive the
// tests make and serve on loopback.

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// bpE2EUser is the build user tests/setup.sh creates (the agent's default).
const bpE2EUser = "buildd"

type bpFixture struct {
	t       *testing.T // the whole test's: agents started for it outlive a subtest
	agent   *snapAgent
	archive *aptarchive.Archive
	repoURL string
	files   *httptest.Server
	srcDir  string
	chroot  string
	chSum   string
}

func newBPFixture(t *testing.T) *bpFixture {
	t.Helper()
	testenv.RequireRoot(t)
	for _, c := range []string{"sbuild", "newuidmap", "dpkg-source", "dpkg-deb"} {
		testenv.RequireCommand(t, c)
	}
	if out, err := exec.Command("id", bpE2EUser).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "needs the build user %s (tests/setup.sh): %s", bpE2EUser, out)
	}
	f := &bpFixture{t: t, srcDir: t.TempDir()}
	broken := aptarchive.BinaryPackage(t, t.TempDir(), aptarchive.BrokenDep)
	f.archive = aptarchive.Build(t, aptarchive.Options{Extra: []string{broken}})
	f.repoURL = f.archive.Serve(t, "127.0.0.1:0")
	f.chroot = testenv.ChrootTarball(t)
	f.chSum = fileSHA1(t, f.chroot)
	// The "librarian": every file by name, for ensurepresent.
	f.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := filepath.Base(r.URL.Path)
		if name == "chroot.tar.gz" {
			http.ServeFile(w, r, f.chroot)
			return
		}
		http.ServeFile(w, r, filepath.Join(f.srcDir, name))
	}))
	t.Cleanup(f.files.Close)
	f.agent = startBPAgent(t)
	return f
}

func fileSHA1(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha1.Sum(data)
	return hex.EncodeToString(s[:])
}

// startBPAgent runs the agent on the chroot backend (binary package builds
// need no container) with the tests' build user.
func startBPAgent(t *testing.T) *snapAgent {
	t.Helper()
	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	// sbuild's unshare mode needs every directory above the build root
	// searchable by the build user and the build root's mapped ids (the
	// testing package makes its temporary directories 0700).
	for d := a.stateDir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	port := snapFreePort(t, "127.0.0.1")
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.config = filepath.Join(a.stateDir, "buildd-agent.toml")
	conf := fmt.Sprintf(`[builder]
architectures = ["amd64"]
bind_address = "127.0.0.1"
port = %d
state_dir = %q
backend = "chroot"
abort_timeout = "60s"

[proxy]
bind_address = "127.0.0.1"
port = %d

[sbuild]
user = %q

[log]
level = "debug"
`, port, a.stateDir, snapFreePort(t, "127.0.0.1"), bpE2EUser)
	if err := os.WriteFile(a.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	a.start(t, bin, nil)
	return a
}

// source makes spec's source package and returns the filemap build()
// takes (name → sha1), after ensurepresent of every file, as
// buildd-manager does.
func (f *bpFixture) source(t *testing.T, spec aptarchive.SourceSpec) (string, map[string]any) {
	t.Helper()
	dsc := aptarchive.SourcePackage(t, f.srcDir, spec)
	files, err := aptarchive.Files(dsc)
	if err != nil {
		t.Fatal(err)
	}
	filemap := map[string]any{}
	for name, p := range files {
		sum := fileSHA1(t, p)
		f.ensure(t, sum, f.files.URL+"/"+name)
		filemap[name] = sum
	}
	f.ensure(t, f.chSum, f.files.URL+"/chroot.tar.gz")
	return filepath.Base(dsc), filemap
}

func (f *bpFixture) ensure(t *testing.T, sum, url string) {
	t.Helper()
	r, ok := f.agent.call(t, "ensurepresent", sum, url, "", "").([]any)
	if !ok || len(r) != 2 || r[0] != true {
		t.Fatalf("ensurepresent %s: %v", url, r)
	}
}

// args are build() arguments as buildd-manager sends them for a PPA build
// (§4.1), against the test archive, its key trusted through trusted_keys.
func (f *bpFixture) args(archIndep bool) map[string]any {
	return map[string]any{
		"arch_tag":             "amd64",
		"archive_private":      false,
		"build_url":            "https://launchpad.test/~owner/+archive/ubuntu/ppa/+build/1",
		"builder_constraints":  []any{},
		"fast_cleanup":         false,
		"series":               "bookworm",
		"launchpad_instance":   "devel",
		"launchpad_server_url": "launchpad.test",
		"image_type":           "chroot",
		"arch_indep":           archIndep,
		"suite":                "bookworm",
		"archive_purpose":      "PPA",
		"ogrecomponent":        "main",
		"archives":             []any{f.archive.SourcesLine(f.repoURL)},
		"trusted_keys":         []any{f.archive.TrustedKey()},
		"build_debug_symbols":  false,
	}
}

// build dispatches one build and waits for WAITING.
func (f *bpFixture) build(t *testing.T, id string, filemap, args map[string]any) map[string]any {
	t.Helper()
	r := f.agent.call(t, "build", id, "binarypackage", f.chSum, filemap, args).([]any)
	if r[0] != "BuilderStatus.BUILDING" {
		t.Fatalf("build(): %v", r)
	}
	// Whatever the test says of it, the next test needs an IDLE builder.
	t.Cleanup(func() {
		if st, _ := f.agent.callErr("status"); st != nil && st.(map[string]any)["builder_status"] == "BuilderStatus.WAITING" {
			f.agent.callErr("clean")
		}
	})
	st := f.agent.waitState(t, "BuilderStatus.WAITING", 15*time.Minute)
	if st["build_id"] != id {
		t.Fatalf("status %v", st)
	}
	return st
}

func (f *bpFixture) clean(t *testing.T) {
	t.Helper()
	if r := f.agent.call(t, "clean"); r != "BuilderStatus.IDLE" {
		t.Fatalf("clean(): %v", r)
	}
}

// checkNothingLeft: no process of the build user or its build root, no
// build directory, no mount of it.
func (f *bpFixture) checkNothingLeft(t *testing.T, id string) {
	t.Helper()
	dir := filepath.Join(f.agent.stateDir, "builds", "build-"+id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		if _, err := os.Lstat(dir); err == nil {
			left = append(left, dir)
		}
		left = append(left, buildUserProcesses(t)...)
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), dir) {
			left = append(left, "a mount under "+dir)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %v", left)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// buildUserProcesses lists processes running as the build user or as an
// id of its build root's range (10200000+, tests/setup.sh).
func buildUserProcesses(t *testing.T) []string {
	out, err := exec.Command("id", "-u", bpE2EUser).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid := strings.TrimSpace(string(out))
	var procs []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if fields := strings.Fields(line); len(fields) > 1 && fields[0] == "Uid:" {
				n, _ := strconv.Atoi(fields[1])
				if fields[1] == uid || (n >= 10200000 && n < 10200000+65536) {
					cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
					procs = append(procs, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
				}
			}
		}
	}
	return procs
}

func TestBinaryPackageE2E(t *testing.T) {
	f := newBPFixture(t)

	t.Run("builds arch any and all, keys trusted", func(t *testing.T) {
		dsc, filemap := f.source(t, aptarchive.HelloIndep)
		st := f.build(t, "PACKAGEBUILD-101", filemap, f.args(true))
		log := string(f.agent.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
		fm, _ := st["filemap"].(map[string]any)
		base := strings.TrimSuffix(dsc, ".dsc")
		for _, name := range []string{base + "_amd64.changes", base + "_amd64.buildinfo",
			"feas-hello-indep_1.0_amd64.deb", "feas-hello-indep-data_1.0_all.deb"} {
			sum, ok := fm[name].(string)
			if !ok {
				t.Fatalf("filemap lacks %s: %v", name, fm)
			}
			data := f.agent.fetch(t, sum)
			got := sha1.Sum(data)
			if hex.EncodeToString(got[:]) != sum {
				t.Errorf("%s: served bytes do not match its SHA-1", name)
			}
			if strings.HasSuffix(name, ".deb") {
				p := filepath.Join(t.TempDir(), name)
				os.WriteFile(p, data, 0o644)
				out, err := exec.Command("dpkg-deb", "-c", p).CombinedOutput()
				if err != nil {
					t.Fatalf("dpkg-deb -c %s: %v\n%s", name, err, out)
				}
				want := "./usr/bin/feas-hello-indep"
				if strings.Contains(name, "-data") {
					want = "./usr/share/feas-hello-indep/greeting.txt"
				}
				if !strings.Contains(string(out), want) {
					t.Errorf("%s lacks %s:\n%s", name, want, out)
				}
			}
		}
		for _, want := range []string{"https://launchpad.test/~owner/+archive/ubuntu/ppa/+build/1\n",
			"Initiating build PACKAGEBUILD-101 with ", "Kernel reported to sbuild: ",
			"RUN: linux64 sbuild --chroot-mode=unshare", "--arch=amd64 --dist=bookworm --nolog -A " + dsc,
			"Status: successful"} {
			if !strings.Contains(log, want) {
				t.Errorf("build log lacks %q", want)
			}
		}
		// The archive's key was trusted: apt saw a signed archive.
		for _, bad := range []string{"NO_PUBKEY", "is not signed", "The following signatures couldn't be verified"} {
			if strings.Contains(log, bad) {
				t.Errorf("build log has %q", bad)
			}
		}
		// DEB_BUILD_OPTIONS reached the build; the package came from the archive over loopback only.
		if !strings.Contains(log, "DEB_BUILD_OPTIONS=noautodbgsym") {
			t.Errorf("build log does not show DEB_BUILD_OPTIONS=noautodbgsym")
		}
		for _, r := range f.archive.Requests() {
			if !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") {
				t.Errorf("archive request from %s", r.RemoteAddr)
			}
		}
		f.clean(t)
		f.checkNothingLeft(t, "PACKAGEBUILD-101")
	})

	for _, tc := range []struct {
		name string
		spec aptarchive.SourceSpec
		deps string
	}{
		{"missing build-dependency", aptarchive.DepWaitMissing, "libfeas-nonexistent-dev (>= 3.0)"},
		{"too old build-dependency", aptarchive.DepWaitVersion, "debhelper (>= 99)"},
		{"uninstallable build-dependency", aptarchive.DepWaitIndirect, "libfeas-missing1"},
	} {
		t.Run("DEPFAIL: "+tc.name, func(t *testing.T) {
			_, filemap := f.source(t, tc.spec)
			st := f.build(t, "PACKAGEBUILD-"+tc.spec.Name, filemap, f.args(false))
			if st["build_status"] != "BuildStatus.DEPFAIL" || st["dependencies"] != tc.deps {
				t.Fatalf("status %v, want DEPFAIL %q; log:\n%s", st, tc.deps, f.agent.fetch(t, "buildlog"))
			}
			f.clean(t)
		})
	}

	t.Run("PACKAGEFAIL: debian/rules fails", func(t *testing.T) {
		_, filemap := f.source(t, aptarchive.FailingRules)
		st := f.build(t, "PACKAGEBUILD-102", filemap, f.args(false))
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" {
			t.Fatalf("status %v; log:\n%s", st, f.agent.fetch(t, "buildlog"))
		}
		if log := string(f.agent.fetch(t, "buildlog")); !strings.Contains(log, "Returning build status: PACKAGEFAIL") {
			t.Errorf("log lacks the status line")
		}
		f.clean(t)
	})

	t.Run("PACKAGEFAIL: implicit pointer function", func(t *testing.T) {
		_, filemap := f.source(t, aptarchive.ImplicitPointer)
		st := f.build(t, "PACKAGEBUILD-103", filemap, f.args(false))
		log := string(f.agent.fetch(t, "buildlog"))
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" || !strings.Contains(log, "implicitly converted to pointer") {
			t.Fatalf("status %v; log:\n%s", st, log)
		}
		f.clean(t)
	})

	t.Run("abort during the build", func(t *testing.T) {
		_, filemap := f.source(t, aptarchive.Hello)
		r := f.agent.call(t, "build", "PACKAGEBUILD-104", "binarypackage", f.chSum, filemap, f.args(false)).([]any)
		if r[0] != "BuilderStatus.BUILDING" {
			t.Fatalf("build(): %v", r)
		}
		// Abort once sbuild works in its build root.
		deadline := time.Now().Add(5 * time.Minute)
		for !strings.Contains(string(f.agent.fetch(t, "buildlog")), "Update chroot") {
			if time.Now().After(deadline) {
				t.Fatalf("sbuild did not start; log:\n%s", f.agent.fetch(t, "buildlog"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		procs := buildUserProcesses(t)
		if len(procs) == 0 {
			t.Fatal("no build process seen before the abort")
		}
		// sbuild runs in a network of its own (its archives reached
		// through the archive gate), not the host's, where the agent is.
		hostNet, _ := os.Readlink("/proc/self/ns/net")
		for _, p := range procs {
			pid, _, _ := strings.Cut(p, " ")
			if ns, err := os.Readlink("/proc/" + pid + "/ns/net"); err == nil && ns == hostNet {
				t.Errorf("build process %s shares the host's network namespace", p)
			}
		}
		if r := f.agent.call(t, "abort"); r != "BuilderStatus.ABORTING" {
			t.Fatalf("abort(): %v", r)
		}
		st := f.agent.waitState(t, "BuilderStatus.WAITING", 2*time.Minute)
		if st["build_status"] != "BuildStatus.ABORTED" {
			t.Fatalf("status %v", st)
		}
		f.checkNothingLeft(t, "PACKAGEBUILD-104")
		f.clean(t)
	})

	t.Run("agent killed during sbuild, then the same build again", func(t *testing.T) {
		_, filemap := f.source(t, aptarchive.DepWaitMissing)
		id := "PACKAGEBUILD-107"
		r := f.agent.call(t, "build", id, "binarypackage", f.chSum, filemap, f.args(false)).([]any)
		if r[0] != "BuilderStatus.BUILDING" {
			t.Fatalf("build(): %v", r)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for !strings.Contains(string(f.agent.fetch(t, "buildlog")), "Update chroot") {
			if time.Now().After(deadline) {
				t.Fatalf("sbuild did not start; log:\n%s", f.agent.fetch(t, "buildlog"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		old := f.agent
		old.cmd.Process.Kill()
		<-old.exited
		// The kernel ends sbuild's namespace with the agent (Pdeathsig).
		deadline = time.Now().Add(30 * time.Second)
		for len(buildUserProcesses(t)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("build processes outlived the agent: %v", buildUserProcesses(t))
			}
			time.Sleep(100 * time.Millisecond)
		}
		f.agent = &snapAgent{stateDir: old.stateDir, config: old.config, url: old.url,
			output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
		f.agent.start(f.t, snapE2EBinary(t), nil)
		if st := f.agent.status(t); st["builder_status"] != "BuilderStatus.IDLE" {
			t.Fatalf("after the restart: %v", st)
		}
		if _, err := os.Lstat(filepath.Join(old.stateDir, "builds", "build-"+id)); err == nil {
			t.Errorf("the killed build's directory survived the restart")
		}
		// buildd-manager requeues an IDLE builder's job: the same id builds.
		f.ensure(t, f.chSum, f.files.URL+"/chroot.tar.gz")
		st := f.build(t, id, filemap, f.args(false))
		if st["build_status"] != "BuildStatus.DEPFAIL" || st["dependencies"] != "libfeas-nonexistent-dev (>= 3.0)" {
			t.Fatalf("the re-dispatched build: %v; log:\n%s", st, f.agent.fetch(t, "buildlog"))
		}
		f.clean(t)
	})

	t.Run("bad input", func(t *testing.T) {
		_, filemap := f.source(t, aptarchive.Hello)
		var dscName, tarName string
		for name := range filemap {
			if strings.HasSuffix(name, ".dsc") {
				dscName = name
			} else {
				tarName = name
			}
		}
		noDsc := map[string]any{tarName: filemap[tarName]}
		if _, err := f.agent.callErr("build", "PACKAGEBUILD-105", "binarypackage", f.chSum, noDsc, f.args(false)); err == nil ||
			!strings.Contains(err.Error(), "has no .dsc file") {
			t.Errorf("no .dsc: %v", err)
		}
		// A .dsc whose file is another one of a different size.
		other := filepath.Join(f.srcDir, "other.bin")
		os.WriteFile(other, []byte("not the tarball"), 0o644)
		otherSum := fileSHA1(t, other)
		f.ensure(t, otherSum, f.files.URL+"/other.bin")
		wrong := map[string]any{dscName: filemap[dscName], tarName: otherSum}
		if _, err := f.agent.callErr("build", "PACKAGEBUILD-105", "binarypackage", f.chSum, wrong, f.args(false)); err == nil ||
			!strings.Contains(err.Error(), "the file sent has") {
			t.Errorf(".dsc that does not match its files: %v", err)
		}
		if st := f.agent.status(t); st["builder_status"] != "BuilderStatus.IDLE" {
			t.Fatalf("after refused builds: %v", st)
		}
		// A chroot that is not a tarball: CHROOTFAIL, before sbuild runs.
		junk := filepath.Join(f.srcDir, "junk.bin")
		os.WriteFile(junk, []byte(strings.Repeat("not a chroot\n", 1000)), 0o644)
		junkSum := fileSHA1(t, junk)
		f.ensure(t, junkSum, f.files.URL+"/junk.bin")
		r := f.agent.call(t, "build", "PACKAGEBUILD-106", "binarypackage", junkSum, filemap, f.args(false)).([]any)
		if r[0] != "BuilderStatus.BUILDING" {
			t.Fatalf("build(): %v", r)
		}
		st := f.agent.waitState(t, "BuilderStatus.WAITING", 2*time.Minute)
		if st["build_status"] != "BuildStatus.CHROOTFAIL" {
			t.Fatalf("status %v; log:\n%s", st, f.agent.fetch(t, "buildlog"))
		}
		f.clean(t)
	})
}

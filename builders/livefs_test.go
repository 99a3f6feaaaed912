package builders

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// livefsFullArgs is every argument buildd-manager may send a livefs build.
func livefsFullArgs() map[string]any {
	return map[string]any{
		"series": "noble", "arch_tag": "amd64", "project": "ubuntu-cpc", "subproject": "minimized",
		"subarch": "raspi", "pocket": "proposed", "datestamp": "20140425-103800", "image_format": "ext4",
		"extra_ppas": []any{"owner/ppa1", "owner/ppa2"}, "extra_snaps": []any{"lxd", "core22"},
		"channel": "stable", "image_targets": []any{"disk1", "squashfs"},
		"repo_snapshot_stamp": "20240101T000000Z", "snapshot_service_timestamp": "20240102T030405Z",
		"cohort-key": "COHORT", "debug": true, "lb_args": []any{"--option=value"},
	}
}

// runLiveFS runs a livefs build on a fake target whose lb build writes
// livecd.* files (and a symlink and a non-result).
func runLiveFS(t *testing.T, args map[string]any, prep func(*fakeTarget, *fakeEnv)) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	m, err := NewLiveFSManager(Request{BuildID: "LIVEFSBUILD-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
	if err != nil {
		t.Fatalf("NewLiveFSManager: %v", err)
	}
	ft := newFakeTarget()
	ft.onRun = func(c recordedCommand) fakeRun {
		if len(c.Args) == 2 && c.Args[0] == "lb" && c.Args[1] == "build" {
			ft.put("/build/livecd.ubuntu-cpc.squashfs", "SQUASHFS", 0o644)
			ft.put("/build/livecd.ubuntu-cpc.manifest", "MANIFEST", 0o644)
			ft.symlink("/build/livecd.ubuntu-cpc.latest", "livecd.ubuntu-cpc.squashfs")
			ft.put("/build/binary.log", "not a result", 0o644)
		}
		if c.Args[0] == "apt-cache" {
			if c.Args[2] == "udev" {
				return fakeRun{stdout: "Package: udev\n"}
			}
			return fakeRun{code: 100}
		}
		return fakeRun{}
	}
	fe := newFakeEnv(ft)
	if prep != nil {
		prep(ft, fe)
	}
	return ft, fe, m.Run(context.Background(), &fe.Env)
}

func TestLiveFSHappyPath(t *testing.T) {
	ft, fe, res := runLiveFS(t, livefsFullArgs(), nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	if !ft.spec.Privileged || ft.backend != "lxd" {
		t.Errorf("target spec %+v backend %q, want a privileged lxd target", ft.spec, ft.backend)
	}
	want := []string{
		"apt-cache show snapd", "apt-cache show fuse", "apt-cache show squashfuse", "apt-cache show udev",
		"apt-get -y install livecd-rootfs udev",
		"snap install hello",
		"mkdir -p /build", "rm -rf auto local", "mkdir -p auto",
		"ln -s /usr/share/livecd-rootfs/live-build/auto/config auto/",
		"ln -s /usr/share/livecd-rootfs/live-build/auto/build auto/",
		"ln -s /usr/share/livecd-rootfs/live-build/auto/clean auto/",
		"mkdir -p local/functions", "sh -c echo 'set -x' >local/functions/debug.sh",
		"lb clean --purge", "lb config", "lb build",
	}
	if diff := cmp.Diff(want, ft.argvs()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	base := []string{"LANG=C.UTF-8", "SHELL=/bin/sh", "PROJECT=ubuntu-cpc", "ARCH=amd64", "SUBPROJECT=minimized",
		"SUBARCH=raspi", "CHANNEL=stable", "IMAGE_TARGETS=disk1 squashfs", "REPO_SNAPSHOT_STAMP=20240101T000000Z",
		"SNAPSHOT_SERVICE_TIMESTAMP=20240102T030405Z", "COHORT_KEY=COHORT"}
	cfg := append(append([]string(nil), base...), "SUITE=noble", "NOW=20140425-103800", "IMAGEFORMAT=ext4",
		"PROPOSED=1", "EXTRA_PPAS=owner/ppa1 owner/ppa2", "EXTRA_SNAPS=lxd core22")
	c, _ := ft.command("lb", "config")
	if diff := cmp.Diff(cfg, c.Env); diff != "" || c.Dir != "/build" {
		t.Errorf("lb config env (-want +got):\n%s dir %q", diff, c.Dir)
	}
	c, _ = ft.command("lb", "build")
	if diff := cmp.Diff(base, c.Env); diff != "" || c.Dir != "/build" {
		t.Errorf("lb build env (-want +got):\n%s dir %q", diff, c.Dir)
	}
	if c, _ := ft.command("apt-get"); c.Dir != "" || len(c.Env) != 0 {
		t.Errorf("apt-get runs with env %q dir %q, want neither (plain backend.run)", c.Env, c.Dir)
	}
	if diff := cmp.Diff([]string{"livecd.ubuntu-cpc.manifest", "livecd.ubuntu-cpc.squashfs"}, fe.waitOrder); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if got := strings.Join(ft.calls, " "); got != "create start stop remove" {
		t.Errorf("lifecycle %q", got)
	}
}

// TestLiveFSMinimal: only the required arguments; nothing optional is set,
// an empty optional argument sets nothing either (the reference passes
// only non-empty ones on buildlivefs's command line).
func TestLiveFSMinimal(t *testing.T) {
	args := map[string]any{"series": "bookworm", "project": "ubuntu-base", "pocket": "release",
		"subproject": "", "datestamp": "", "extra_ppas": []any{}, "debug": false}
	ft, fe, res := runLiveFS(t, args, func(ft *fakeTarget, fe *fakeEnv) { fe.Config.Arch = "arm64" })
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	c, _ := ft.command("lb", "config")
	if diff := cmp.Diff([]string{"LANG=C.UTF-8", "SHELL=/bin/sh", "PROJECT=ubuntu-base", "ARCH=arm64", "SUITE=bookworm"}, c.Env); diff != "" {
		t.Errorf("lb config env (-want +got):\n%s", diff)
	}
	if _, ok := ft.command("mkdir", "-p", "local/functions"); ok {
		t.Error("debug files written without debug")
	}
}

func TestLiveFSLocale(t *testing.T) {
	args := map[string]any{"series": "noble", "project": "ubuntu", "pocket": "release", "locale": "zh_CN"}
	ft, fe, res := runLiveFS(t, args, nil)
	if res.Status != BuildOK {
		t.Fatalf("status %s\n%s", res.Status, fe.logText())
	}
	argv := ft.argvs()
	if !containsString(argv, "apt-get -y --install-recommends install ubuntu-defaults-builder") ||
		!containsString(argv, "ubuntu-defaults-image --locale zh_CN --arch amd64 --release noble") {
		t.Errorf("commands %q", argv)
	}
	if _, ok := ft.command("lb"); ok {
		t.Errorf("lb run with a locale: %q", argv)
	}
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestLiveFSFailures(t *testing.T) {
	base := map[string]any{"series": "noble", "project": "ubuntu", "pocket": "release"}
	tests := []struct {
		name string
		prep func(*fakeTarget, *fakeEnv)
		want BuildStatus
		log  string
	}{
		{"create", func(ft *fakeTarget, _ *fakeEnv) { ft.errs["create"] = errFake }, BuildChrootFail, "cannot create the target"},
		{"install exits", failArgv("apt-get", fakeRun{code: 100}), BuildPackageFail, "Install failed: apt-get -y install livecd-rootfs"},
		{"hello snap ignored", failArgv("snap", fakeRun{err: errFake}), BuildOK, "Unable to install the \"hello\" snap"},
		{"hello snap fails three times, ignored", failArgv("snap", fakeRun{code: 1}), BuildOK, "Unable to install the \"hello\" snap"},
		{"lb config exits", failArgv("lb config", fakeRun{code: 1}), BuildPackageFail, "Build failed: lb config failed with exit status 1"},
		{"lb build exits", failArgv("lb build", fakeRun{code: 2}), BuildPackageFail, "Build failed: lb build failed with exit status 2"},
		{"lb cannot run", failArgv("lb build", fakeRun{err: errFake}), BuildBuilderFail, "cannot run lb"},
		{"gather", func(ft *fakeTarget, fe *fakeEnv) { fe.addErr = errFake }, BuildPackageFail, "Failed to gather results"},
		{"remove", func(ft *fakeTarget, _ *fakeEnv) { ft.errs["remove"] = errFake }, BuildBuilderFail, "cannot remove the target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft, fe, res := runLiveFS(t, base, tt.prep)
			if res.Status != tt.want {
				t.Errorf("status %s, want %s\n%s", res.Status, tt.want, fe.logText())
			}
			if strings.HasPrefix(tt.name, "hello snap fails") {
				n := 0
				for _, a := range ft.argvs() {
					if a == "snap install hello" {
						n++
					}
				}
				if n != snapInstallAttempts {
					t.Errorf("snap install hello tried %d times, want %d", n, snapInstallAttempts)
				}
			}
			if !strings.Contains(fe.logText(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, fe.logText())
			}
		})
	}
}

// failArgv makes the command whose argv starts with prefix (space
// separated) return r, keeping the rest of runLiveFS's script.
func failArgv(prefix string, r fakeRun) func(*fakeTarget, *fakeEnv) {
	return func(ft *fakeTarget, _ *fakeEnv) {
		next := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			if strings.HasPrefix(strings.Join(c.Args, " "), prefix) {
				return r
			}
			return next(c)
		}
	}
}

func TestLiveFSAbort(t *testing.T) {
	m, err := NewLiveFSManager(Request{BuildID: "LIVEFSBUILD-2", Args: map[string]any{"series": "noble", "project": "ubuntu", "pocket": "release"}})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.blockRun = "lb"
	fe := newFakeEnv(ft)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- m.Run(ctx, &fe.Env) }()
	<-ft.running
	cancel()
	if res := <-done; res.Status != BuildAborted {
		t.Errorf("status %s, want ABORTED", res.Status)
	}
	if got := strings.Join(ft.calls, " "); got != "create start stop remove" {
		t.Errorf("lifecycle %q", got)
	}
}

func TestLiveFSArgs(t *testing.T) {
	ok := map[string]any{"series": "noble", "project": "ubuntu", "pocket": "release"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		args map[string]any
		bad  string
	}{
		{with("project", nil), "project"},
		{with("project", ""), "project"},
		{with("pocket", nil), "pocket"},
		{with("pocket", 3), "pocket"},
		{with("series", nil), "series"},
		{with("extra_ppas", "owner/ppa"), "extra_ppas"},
		{with("extra_snaps", []any{1}), "extra_snaps"},
		{with("image_targets", map[string]any{}), "image_targets"},
		{with("cohort-key", true), "cohort-key"},
		{with("debug", "yes"), "debug"},
		{with("locale", "--help"), "locale"},
		{with("datestamp", "a\x00b"), "datestamp"},
		{livefsFullArgs(), ""},
		{ok, ""},
	}
	for _, tt := range tests {
		_, err := NewLiveFSManager(Request{BuildID: "1", Args: tt.args})
		var ae *ArgError
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.bad != "" && (!errors.As(err, &ae) || ae.Arg != tt.bad):
			t.Errorf("%v: error %v, want one about %q", tt.args, err, tt.bad)
		}
	}
}

func FuzzLiveFSArgs(f *testing.F) {
	f.Add("ubuntu", "proposed", "owner/ppa", "zh_CN", "20140425-103800")
	f.Add("", "", "", "-x", "")
	f.Fuzz(func(t *testing.T, project, pocket, ppa, locale, datestamp string) {
		a, err := ParseLiveFSArgs(map[string]any{"series": "noble", "project": project, "pocket": pocket,
			"extra_ppas": []any{ppa}, "locale": locale, "datestamp": datestamp})
		if err != nil {
			return
		}
		env := a.LBConfigEnv("amd64")
		if env[0] != "PROJECT="+project || a.Project == "" || strings.HasPrefix(a.Locale, "-") {
			t.Fatalf("accepted %+v with env %q", a, env)
		}
		for _, e := range env {
			if strings.IndexByte(e, 0) >= 0 {
				t.Fatalf("NUL in env %q", e)
			}
		}
	})
}

// TestLiveFSOnlyPrivileged: livefs is the only manager whose target is
// privileged. Every assignment to a Privileged field or key in the
// package's sources is in livefs.go, and the container managers run on an
// unprivileged target.
func TestLiveFSOnlyPrivileged(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		{
			ast.Inspect(file, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					for _, l := range n.Lhs {
						if sel, ok := l.(*ast.SelectorExpr); ok && sel.Sel.Name == "Privileged" {
							found = append(found, fmt.Sprintf("%s:%d", name, fset.Position(n.Pos()).Line))
						}
					}
				case *ast.KeyValueExpr:
					if id, ok := n.Key.(*ast.Ident); ok && id.Name == "Privileged" {
						found = append(found, fmt.Sprintf("%s:%d", name, fset.Position(n.Pos()).Line))
					}
				}
				return true
			})
		}
	}
	if len(found) != 1 || !strings.HasPrefix(found[0], "livefs.go:") {
		t.Errorf("Privileged set at %v, want once, in livefs.go", found)
	}
	installSeams(t)
	snap, fe, res := runSnap(t, baseArgs(), nil)
	if res.Status != BuildOK || snap.spec.Privileged {
		t.Errorf("snap: status %s, privileged %v\n%s", res.Status, snap.spec.Privileged, fe.logText())
	}
	cargs := craftBaseArgs("charmcraft")
	delete(cargs, "build_path")
	craft, fe, res := runCraft(t, "charm", cargs, nil)
	if res.Status != BuildOK || craft.spec.Privileged {
		t.Errorf("charm: status %s, privileged %v\n%s", res.Status, craft.spec.Privileged, fe.logText())
	}
	livefs, fe, res := runLiveFS(t, livefsFullArgs(), nil)
	if res.Status != BuildOK || !livefs.spec.Privileged {
		t.Errorf("livefs: status %s, privileged %v\n%s", res.Status, livefs.spec.Privileged, fe.logText())
	}
}

package builders

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// ociBaseArgs are what buildd-manager sends for an OCI recipe build (§4.6).
func ociBaseArgs() map[string]any {
	return map[string]any{
		"series":              "bookworm",
		"arch_tag":            "amd64",
		"name":                "hello",
		"archives":            []any{"deb http://archive.example/debian bookworm main"},
		"build_file":          "Dockerfile",
		"build_args":          map[string]any{"LAUNCHPAD_BUILD_ARCH": "amd64", "B": "two words"},
		"build_path":          "sub",
		"metadata":            map[string]any{"architectures": []any{"amd64"}, "build_request_id": nil, "recipe_owner": map[string]any{"name": "u", "email": nil}},
		"proxy_url":           "http://user:s3cret@127.0.0.1:3128",
		"revocation_endpoint": "http://127.0.0.1:9/tokens/user",
		"use_fetch_service":   false,
		"git_repository":      "https://git.example/hello.git",
		"git_path":            "refs/heads/main",
		"fast_cleanup":        false,
	}
}

// saveLayer is one layer directory of a fake docker save stream; link,
// if set, makes its layer.tar a symlink to that layer's.
type saveLayer struct {
	id, link string
	tar      []byte
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// layerTar is a tiny layer.tar holding the named files.
func layerTar(t testing.TB, files ...string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(f)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dockerSaveStream is a docker-archive v1.2 stream as docker 20.10 writes
// it: layer directories, then the config, manifest.json, repositories.
func dockerSaveStream(t testing.TB, layers []saveLayer) (stream []byte, config string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var diffIDs, paths []string
	byID := map[string][]byte{}
	for _, l := range layers {
		if l.link == "" {
			byID[l.id] = l.tar
		}
	}
	for _, l := range layers {
		tw.WriteHeader(&tar.Header{Name: l.id + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: l.id + "/VERSION", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644})
		tw.Write([]byte("1.0"))
		if l.link != "" {
			tw.WriteHeader(&tar.Header{Name: l.id + "/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../" + l.link + "/layer.tar"})
			diffIDs = append(diffIDs, `"sha256:`+sha256Hex(byID[l.link])+`"`)
		} else {
			tw.WriteHeader(&tar.Header{Name: l.id + "/layer.tar", Typeflag: tar.TypeReg, Size: int64(len(l.tar)), Mode: 0o644})
			tw.Write(l.tar)
			diffIDs = append(diffIDs, `"sha256:`+sha256Hex(l.tar)+`"`)
		}
		paths = append(paths, `"`+l.id+`/layer.tar"`)
	}
	cfg := `{"architecture":"amd64","rootfs":{"type":"layers","diff_ids":[` + strings.Join(diffIDs, ",") + `]}}`
	config = sha256Hex([]byte(cfg)) + ".json"
	manifest := `[{"Config":"` + config + `","RepoTags":["hello:latest"],"Layers":[` + strings.Join(paths, ",") + `]}]`
	for _, f := range []struct{ name, data string }{{config, cfg}, {"manifest.json", manifest}, {"repositories", `{"hello":{"latest":"x"}}`}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Size: int64(len(f.data)), Mode: 0o644})
		tw.Write([]byte(f.data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), config
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	layerA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	layerB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	layerC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// runOCI runs an oci build on the fake target; docker save prints stream
// and docker info says overlay2.
func runOCI(t *testing.T, args map[string]any, stream []byte, prep func(*fakeTarget, *fakeEnv)) (*fakeTarget, *fakeEnv, Result) {
	t.Helper()
	m, err := NewOCIManager(Request{BuildID: "OCIBUILD-1", Chroot: target.Image{Path: "/cache/abc", SHA1: "abc"}, Args: args})
	if err != nil {
		t.Fatalf("NewOCIManager: %v", err)
	}
	ft := newFakeTarget()
	ft.onRun = func(c recordedCommand) fakeRun {
		switch {
		case len(c.Args) == 3 && c.Args[0] == "docker" && c.Args[1] == "save":
			return fakeRun{stdout: string(stream)}
		case len(c.Args) > 1 && c.Args[0] == "docker" && c.Args[1] == "info":
			return fakeRun{stdout: "overlay2\n"}
		}
		return fakeRun{}
	}
	fe := newFakeEnv(ft)
	if prep != nil {
		prep(ft, fe)
	}
	return ft, fe, m.Run(context.Background(), &fe.Env)
}

func TestOCIHappyPath(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"sub/Dockerfile": "FROM scratch\n", "README": "x\n"}
	ta, tb := layerTar(t, "a.txt"), layerTar(t, "b.txt")
	stream, config := dockerSaveStream(t, []saveLayer{{id: layerA, tar: ta}, {id: layerB, tar: tb}})
	ft, fe, res := runOCI(t, ociBaseArgs(), stream, func(ft *fakeTarget, fe *fakeEnv) {
		// layer B was pulled from a registry: its digest is kept.
		ft.mkdirAll("/var/lib/docker/image/overlay2/distribution/v2metadata-by-diffid/sha256")
		ft.put("/var/lib/docker/image/overlay2/distribution/v2metadata-by-diffid/sha256/"+sha256Hex(tb),
			`[{"Digest":"sha256:feed","SourceRepository":"docker.io/library/base","HMAC":""},{"Digest":"sha256:other"}]`, 0o644)
	})
	if res.Status != BuildOK {
		t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
	}
	const p = "http://10.10.10.1:8222/"
	want := []string{
		"rm -f /etc/apt/sources.list.d/ubuntu.sources",
		"rm -f /etc/apt/sources.list",
		"/usr/bin/apt-get -uy update",
		"/usr/bin/apt-get -o DPkg::Options::=--force-confold -uy --purge dist-upgrade",
		"mkdir -p /etc/systemd/system/docker.service.d",
		"apt-get -y install python3 socat git",
		"apt-get -y install docker.io",
		"systemctl daemon-reload",
		"systemctl restart docker",
		"mkdir -p /home/buildd",
		"mkdir -p /home/buildd",
		"docker build --no-cache --build-arg http_proxy=" + p + " --build-arg HTTP_PROXY=" + p +
			" --build-arg https_proxy=" + p + " --build-arg HTTPS_PROXY=" + p +
			" --tag hello --file sub/Dockerfile --build-arg=B=two words --build-arg=LAUNCHPAD_BUILD_ARCH=amd64 /home/buildd/hello/sub",
		"docker save hello",
		"docker info --format {{.Driver}}",
	}
	if diff := cmp.Diff(want, ft.argvs()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	build, _ := ft.command("docker", "build")
	if build.Dir != "/home/buildd/hello" {
		t.Errorf("docker build ran in %q", build.Dir)
	}
	if env := envMap(build.Env); env["LANG"] != "C.UTF-8" || env["http_proxy"] != p {
		t.Errorf("docker build env = %q", build.Env)
	}
	for _, v := range []string{"http_proxy", "https_proxy"} {
		f := ft.files["/etc/systemd/system/docker.service.d/"+v+".conf"]
		if f == nil || string(f.data) != "[Service]\nEnvironment=\""+strings.ToUpper(v)+"="+p+"\"\n" {
			t.Errorf("%s drop-in = %#v", v, f)
		}
	}
	wantFiles := []string{layerA + ".tar.gz", layerB + ".tar.gz", "manifest.json", config, "digests.json"}
	if diff := cmp.Diff(wantFiles, fe.waitOrder); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if got := gunzip(t, fe.waiting[layerA+".tar.gz"]); !bytes.Equal(got, ta) {
		t.Errorf("layer A does not unpack to its layer.tar")
	}
	wantDigests := fmt.Sprintf(`[{"sha256:%s": {"digest": "%s", "source": "", "layer_id": "%s"}, `+
		`"sha256:%s": {"digest": "sha256:feed", "source": "docker.io/library/base", "layer_id": "%s"}}]`,
		sha256Hex(ta), sha256Hex(fe.waiting[layerA+".tar.gz"]), layerA, sha256Hex(tb), layerB)
	if got := string(fe.waiting["digests.json"]); got != wantDigests {
		t.Errorf("digests.json =\n%s\nwant\n%s", got, wantDigests)
	}
	if diff := cmp.Diff([]string{"stop"}, s.proxy.events); diff != "" {
		t.Errorf("proxy events (-want +got):\n%s", diff)
	}
	log := fe.logText()
	for _, w := range []string{"Processing tar file: manifest.json", "Running install phase...", "Running build phase..."} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q", w)
		}
	}
}

func TestOCISymlinkedLayers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers []saveLayer
		saves  int
	}{
		// Every symlinked layer is stored from a further save, one per
		// link to the same target.
		{name: "link first", layers: []saveLayer{{id: layerA, tar: layerTar(t, "a")}, {id: layerB, link: layerC}, {id: layerC, tar: layerTar(t, "c")}}, saves: 2},
		{name: "link after", layers: []saveLayer{{id: layerA, tar: layerTar(t, "a")}, {id: layerB, link: layerA}}, saves: 2},
		{name: "two links", layers: []saveLayer{{id: layerA, tar: layerTar(t, "a")}, {id: layerB, link: layerA}, {id: layerC, link: layerA}}, saves: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := installSeams(t)
			s.files = map[string]string{"sub/Dockerfile": "FROM scratch\n"}
			stream, _ := dockerSaveStream(t, tc.layers)
			ft, fe, res := runOCI(t, ociBaseArgs(), stream, nil)
			if res.Status != BuildOK {
				t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
			}
			saves := 0
			for _, a := range ft.argvs() {
				if a == "docker save hello" {
					saves++
				}
			}
			if saves != tc.saves {
				t.Errorf("%d docker saves, want %d", saves, tc.saves)
			}
			for _, l := range tc.layers {
				src := l.id
				if l.link != "" {
					src = l.link
				}
				if !bytes.Equal(fe.waiting[l.id+".tar.gz"], fe.waiting[src+".tar.gz"]) || len(fe.waiting[l.id+".tar.gz"]) == 0 {
					t.Errorf("layer %s.tar.gz is not %s's", l.id[:4], src[:4])
				}
			}
		})
	}
}

func TestOCIFailures(t *testing.T) {
	good, _ := dockerSaveStream(t, []saveLayer{{id: layerA, tar: layerTar(t, "a")}})
	cases := []struct {
		name    string
		args    func(map[string]any)
		stream  []byte
		fail    string // argv prefix that fails
		code    int
		runErr  error
		want    BuildStatus
		wantLog string
	}{
		{name: "docker.io not installable", fail: "apt-get -y install docker.io", code: 100, want: BuildPackageFail, wantLog: "Install failed: apt-get -y install docker.io failed with exit status 100"},
		{name: "docker build fails", fail: "docker build", code: 1, want: BuildPackageFail, wantLog: "Build failed: docker build"},
		{name: "docker cannot run", fail: "docker build", runErr: errFake, want: BuildBuilderFail},
		{name: "build_file escapes", args: func(a map[string]any) { a["build_file"] = "../../etc/passwd" }, want: BuildPackageFail, wantLog: "invalid build file path"},
		{name: "build_file absolute", args: func(a map[string]any) { a["build_file"] = "/etc/passwd" }, want: BuildPackageFail, wantLog: "invalid build file path"},
		{name: "build_file directory", args: func(a map[string]any) { a["build_file"] = "." }, want: BuildPackageFail, wantLog: "invalid build file path"},
		{name: "build_path escapes", args: func(a map[string]any) { a["build_path"] = ".." }, want: BuildPackageFail, wantLog: "invalid build file path"},
		{name: "save not a tar", stream: []byte("not a tar stream at all, just junk bytes that go on and on ........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), want: BuildPackageFail, wantLog: "Failed to gather results"},
		{name: "save fails", fail: "docker save", code: 1, want: BuildPackageFail, wantLog: "Unable to save image"},
		{name: "manifest names missing layer", stream: func() []byte {
			s, _ := dockerSaveStream(t, []saveLayer{{id: layerA, tar: layerTar(t, "a")}})
			return bytes.Replace(s, []byte(layerA+`/layer.tar"`), []byte(layerC+`/layer.tar"`), 1)
		}(), want: BuildPackageFail, wantLog: "Failed to parse manifest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := installSeams(t)
			s.files = map[string]string{"sub/Dockerfile": "FROM scratch\n"}
			args := ociBaseArgs()
			if tc.args != nil {
				tc.args(args)
			}
			stream := good
			if tc.stream != nil {
				stream = tc.stream
			}
			_, fe, res := runOCI(t, args, stream, func(ft *fakeTarget, fe *fakeEnv) {
				inner := ft.onRun
				ft.onRun = func(c recordedCommand) fakeRun {
					if tc.fail != "" && strings.HasPrefix(strings.Join(c.Args, " "), tc.fail) {
						return fakeRun{code: tc.code, err: tc.runErr}
					}
					return inner(c)
				}
			})
			if res.Status != tc.want {
				t.Fatalf("status = %s, want %s; log:\n%s", res.Status, tc.want, fe.logText())
			}
			if !strings.Contains(fe.logText(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, fe.logText())
			}
		})
	}
}

func TestOCIBuildFileSymlink(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"sub/README": "x\n"}
	old := CheckoutFunc
	CheckoutFunc = func(ctx context.Context, repo, ref, dir string, opts CheckoutOptions) (string, error) {
		rev, err := old(ctx, repo, ref, dir, opts)
		if err == nil {
			err = os.Symlink("/etc/shadow", filepath.Join(dir, "sub", "Dockerfile"))
		}
		return rev, err
	}
	_, fe, res := runOCI(t, ociBaseArgs(), nil, nil)
	if res.Status != BuildPackageFail || !strings.Contains(fe.logText(), "invalid build file path: sub/Dockerfile is not a regular file") {
		t.Fatalf("status = %s; log:\n%s", res.Status, fe.logText())
	}
}

func TestOCINoProxyNoBuildFile(t *testing.T) {
	installSeams(t)
	args := ociBaseArgs()
	for _, k := range []string{"proxy_url", "revocation_endpoint", "build_file", "build_path", "build_args"} {
		delete(args, k)
	}
	args["branch"] = "lp:~u/hello/trunk"
	delete(args, "git_repository")
	delete(args, "git_path")
	m, err := NewOCIManager(Request{BuildID: "OCIBUILD-2", Args: args})
	if err != nil {
		t.Fatal(err)
	}
	argv := m.(*OCIManager).dockerBuildArgv("", "", "/home/buildd/hello")
	if diff := cmp.Diff([]string{"docker", "build", "--no-cache", "--tag", "hello", "/home/buildd/hello"}, argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
}

func TestOCIAbortDuringBuild(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"sub/Dockerfile": "FROM scratch\n"}
	m, err := NewOCIManager(Request{BuildID: "OCIBUILD-3", Args: ociBaseArgs()})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget()
	ft.blockRun = "docker"
	fe := newFakeEnv(ft)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- m.Run(ctx, &fe.Env) }()
	<-ft.running
	cancel()
	if res := <-done; res.Status != BuildAborted {
		t.Fatalf("status = %s", res.Status)
	}
	if got := ft.argvs(); got[len(got)-1] != "docker build --no-cache --build-arg http_proxy=http://10.10.10.1:8222/ --build-arg HTTP_PROXY=http://10.10.10.1:8222/ --build-arg https_proxy=http://10.10.10.1:8222/ --build-arg HTTPS_PROXY=http://10.10.10.1:8222/ --tag hello --file sub/Dockerfile --build-arg=B=two words --build-arg=LAUNCHPAD_BUILD_ARCH=amd64 /home/buildd/hello/sub" {
		t.Errorf("last command %q", got[len(got)-1])
	}
	if !strings.Contains(strings.Join(ft.calls, " "), "stop remove") {
		t.Errorf("target calls %q", ft.calls)
	}
	if diff := cmp.Diff([]string{"stop", "stop"}, s.proxy.events); diff != "" && !cmp.Equal([]string{"stop"}, s.proxy.events) {
		t.Errorf("proxy events %q", s.proxy.events)
	}
}

func TestOCIArgs(t *testing.T) {
	cases := []struct {
		name string
		edit func(map[string]any)
		arg  string
	}{
		{name: "ok"},
		{name: "metadata nil", edit: func(a map[string]any) { a["metadata"] = nil }},
		{name: "no name", edit: func(a map[string]any) { delete(a, "name") }, arg: "name"},
		{name: "name with slash", edit: func(a map[string]any) { a["name"] = "a/b" }, arg: "name"},
		{name: "name upper case", edit: func(a map[string]any) { a["name"] = "Hello" }, arg: "name"},
		{name: "no source", edit: func(a map[string]any) { delete(a, "git_repository"); delete(a, "git_path") }, arg: "git_repository"},
		{name: "both sources", edit: func(a map[string]any) { a["branch"] = "lp:x" }, arg: "branch"},
		{name: "build_args not a struct", edit: func(a map[string]any) { a["build_args"] = []any{"A=1"} }, arg: "build_args"},
		{name: "build_args value not a string", edit: func(a map[string]any) { a["build_args"] = map[string]any{"A": int64(1)} }, arg: "build_args"},
		{name: "build_args key with =", edit: func(a map[string]any) { a["build_args"] = map[string]any{"A=B": "1"} }, arg: "build_args"},
		{name: "build_args empty key", edit: func(a map[string]any) { a["build_args"] = map[string]any{"": "1"} }, arg: "build_args"},
		{name: "build_file option", edit: func(a map[string]any) { a["build_file"] = "--help" }, arg: "build_file"},
		{name: "build_file not a string", edit: func(a map[string]any) { a["build_file"] = int64(3) }, arg: "build_file"},
		{name: "proxy_url not a URL", edit: func(a map[string]any) { a["proxy_url"] = "ftp://x" }, arg: "proxy_url"},
		{name: "fetch service", edit: func(a map[string]any) { a["use_fetch_service"] = true }, arg: "use_fetch_service"},
		{name: "no series", edit: func(a map[string]any) { delete(a, "series") }, arg: "series"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := ociBaseArgs()
			if tc.edit != nil {
				tc.edit(args)
			}
			_, err := NewOCIManager(Request{Args: args})
			var ae *ArgError
			if tc.arg == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.As(err, &ae) || ae.Arg != tc.arg {
				t.Fatalf("err = %v, want an ArgError for %s", err, tc.arg)
			}
		})
	}
}

// FuzzOCISave: whatever docker save writes, reading it never panics,
// stores only plain <name>.tar.gz results, and digests.json (when made)
// is JSON naming only stored layers.
func FuzzOCISave(f *testing.F) {
	good, _ := dockerSaveStream(f, []saveLayer{{id: layerA, tar: layerTar(f, "a")}, {id: layerB, link: layerA}})
	f.Add(good, []byte(`[{"Digest":"sha256:x","SourceRepository":"r"}]`))
	f.Add(good[:len(good)/2], []byte(`[]`))
	f.Add([]byte("junk"), []byte(`{}`))
	f.Fuzz(func(t *testing.T, stream, v2 []byte) {
		var stored []string
		store := func(name string, r io.Reader) (string, error) {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return "", err
			}
			stored = append(stored, name)
			return "x", nil
		}
		s := newOCISave(store, io.Discard)
		if err := s.read(bytes.NewReader(stream)); err != nil {
			return
		}
		for _, n := range stored {
			if ociName(strings.TrimSuffix(n, ".tar.gz")) != nil || !strings.HasSuffix(n, ".tar.gz") {
				t.Fatalf("stored %q", n)
			}
		}
		if _, err := s.pendingLinks(map[string]bool{}); err != nil {
			return
		}
		digests, configs, err := s.ociDigests(func(string) (ociV2Metadata, bool, error) { return parseV2Metadata(v2) })
		if err != nil {
			return
		}
		for _, c := range configs {
			if ociName(c) != nil {
				t.Fatalf("config %q", c)
			}
		}
		var parsed []map[string]map[string]string
		if err := json.Unmarshal(digests, &parsed); err != nil {
			t.Fatalf("digests.json is not JSON: %v\n%s", err, digests)
		}
		for _, sec := range parsed {
			for _, e := range sec {
				if _, ok := s.layers[e["layer_id"]]; !ok {
					t.Fatalf("digests.json names layer %q, not stored", e["layer_id"])
				}
			}
		}
	})
}

// FuzzParseOCIArgs: the factory never panics and what it accepts is safe
// to put on docker's command line.
func FuzzParseOCIArgs(f *testing.F) {
	f.Add("hello", "Dockerfile", "sub", "K", "v")
	f.Add("a/b", "../x", "..", "A=B", "\x00")
	f.Fuzz(func(t *testing.T, name, file, bpath, k, v string) {
		args := ociBaseArgs()
		args["name"], args["build_file"], args["build_path"] = name, file, bpath
		args["build_args"] = map[string]any{k: v}
		m, err := NewOCIManager(Request{Args: args})
		if err != nil {
			return
		}
		a := m.(*OCIManager).Args()
		if strings.HasPrefix(a.Name, "-") || strings.Contains(a.Name, "/") || strings.HasPrefix(a.BuildFile, "-") || strings.ContainsAny(k, "=\x00") {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// TestOCICheckoutIsShallow: build_oci.py clones with --depth 1; so do we
// (and without the mirror cache, which keeps whole histories).
func TestOCICheckoutIsShallow(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"sub/Dockerfile": "FROM scratch\n"}
	var got CheckoutOptions
	inner := CheckoutFunc
	CheckoutFunc = func(ctx context.Context, repo, ref, dir string, opts CheckoutOptions) (string, error) {
		got = opts
		return inner(ctx, repo, ref, dir, opts)
	}
	ta := layerTar(t, "a.txt")
	stream, _ := dockerSaveStream(t, []saveLayer{{id: layerA, tar: ta}})
	_, fe, res := runOCI(t, ociBaseArgs(), stream, func(_ *fakeTarget, fe *fakeEnv) { fe.Config.StateDir = t.TempDir() })
	if res.Status != BuildOK {
		t.Fatalf("status %s; log:\n%s", res.Status, fe.logText())
	}
	if !got.Shallow || got.MirrorDir != "" {
		t.Errorf("checkout options %+v: want shallow, no mirror", got)
	}
}

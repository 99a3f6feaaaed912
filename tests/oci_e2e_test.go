package tests

// End-to-end tests of OCI image builds: the real buildd-agent binary
// driven over XML-RPC as buildd-manager drives it, building with Debian's
// real docker.io (installed in the OCI test image, tests/oci-fixture.sh,
// which the container is made from: it has no route out, and the build's
// archive has no docker.io), from the real
// git server, through squid, with the results fetched by SHA-1 and checked
// the way buildd-manager reads them (manifest.json → config → digests.json
// → <layer>.tar.gz).
//
// The image is built from a tiny base made in the test: dash, sleep and
// their libraries from the test chroot, ADDed from a tar in the tree (FROM
// scratch), so that RUN steps work without a registry.
//
// These tests have their own LXD label, profile and series: their
// container (lp-ocie2e-amd64) never collides with the others'.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	ociE2ESeries   = "ocie2e"
	ociE2EArch     = "amd64"
	ociE2EInstance = "ocie2e"
	ociE2EProfile  = "buildd-agent-ocie2e"
)

func ociE2EContainer() string { return "lp-" + ociE2ESeries + "-" + ociE2EArch }

func ociCleanupLXD() {
	exec.Command("lxc", "delete", "--force", ociE2EContainer()).Run()
	exec.Command("lxc", "profile", "delete", ociE2EProfile).Run()
}

// ociFixture is snapFixture building in the OCI test image
// (tests/oci-fixture.sh: the test chroot with Debian's docker.io
// installed). The builds' archive is snapFixture's stand-in archive,
// which has no docker.io: the install step's `apt-get -y install
// docker.io` can only succeed by finding it installed, so no build fetches
// docker.
type ociFixture struct {
	*snapFixture
}

var (
	ociChrootOnce sync.Once
	ociChrootSHA1 string
)

// ociE2EChroot is the OCI test image and its SHA-1.
func ociE2EChroot(t testing.TB) (string, string) {
	t.Helper()
	p := testenv.OCIChrootTarball(t)
	ociChrootOnce.Do(func() {
		f, err := os.Open(p)
		if err != nil {
			return
		}
		defer f.Close()
		h := sha1.New()
		io.Copy(h, f)
		ociChrootSHA1 = hex.EncodeToString(h.Sum(nil))
	})
	if ociChrootSHA1 == "" {
		t.Fatalf("cannot hash %s", p)
	}
	return p, ociChrootSHA1
}

func newOCIFixture(t testing.TB) *ociFixture {
	t.Helper()
	f := &ociFixture{snapFixture: newSnapFixture(t)}
	f.chrootPath, f.chrootSHA1 = ociE2EChroot(t)
	return f
}

// ociBaseTar is a root file system tar with /bin/sh, sleep, cat and the
// libraries they need, taken from the test image (the test chroot): the
// base the RUN steps run on, without a registry.
func ociBaseTar(t testing.TB, chroot string) []byte {
	t.Helper()
	want := map[string]string{
		"bin/sh":                         "usr/bin/dash",
		"bin/sleep":                      "usr/bin/sleep",
		"bin/cat":                        "usr/bin/cat",
		"lib/x86_64-linux-gnu/libc.so.6": "usr/lib/x86_64-linux-gnu/libc.so.6",
		"lib64/ld-linux-x86-64.so.2":     "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
	}
	from := map[string]bool{}
	for _, p := range want {
		from[p] = true
	}
	got := chrootFiles(t, chroot, from)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "lib/", "lib/x86_64-linux-gnu/", "lib64/", "tmp/"} {
		tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir})
	}
	for _, name := range []string{"bin/sh", "bin/sleep", "bin/cat", "lib/x86_64-linux-gnu/libc.so.6", "lib64/ld-linux-x86-64.so.2"} {
		data, ok := got[want[name]]
		if !ok {
			t.Fatalf("the test chroot %s has no regular file %s", chroot, want[name])
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// chrootFiles reads the regular files named (relative to the root) out of
// a Launchpad chroot tarball.
func chrootFiles(t testing.TB, chroot string, names map[string]bool) map[string][]byte {
	t.Helper()
	f, err := os.Open(chroot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", chroot, err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(zr)
	for len(out) < len(names) {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", chroot, err)
		}
		n := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "chroot-autobuild/")
		if h.Typeflag == tar.TypeReg && names[n] {
			if out[n], err = io.ReadAll(tr); err != nil {
				t.Fatalf("%s: %v", chroot, err)
			}
		}
	}
	return out
}

func writeOCIAgentConfig(t testing.TB, dir string, port, proxyPort int) string {
	t.Helper()
	return writeLXDAgentConfig(t, dir, ociE2EArch, port, proxyPort, ociE2EProfile, fmt.Sprintf("instance = %q\n", ociE2EInstance))
}

func startOCIAgent(t testing.TB) *snapAgent {
	t.Helper()
	bin := snapE2EBinary(t)
	a := &snapAgent{stateDir: t.TempDir(), output: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	port := snapFreePort(t, "127.0.0.1")
	a.proxyPort = snapFreePort(t, "10.10.10.1")
	a.config = writeOCIAgentConfig(t, a.stateDir, port, a.proxyPort)
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	a.start(t, bin, ociCleanupLXD)
	return a
}

// buildArgs are what buildd-manager sends for an OCI recipe (§4.6).
func (f *ociFixture) buildArgs(gitPath string) map[string]any {
	return map[string]any{
		"series":              ociE2ESeries,
		"arch_tag":            ociE2EArch,
		"name":                "hello",
		"archives":            []any{f.archiveLine},
		"trusted_keys":        []any{f.archiveKey},
		"build_file":          "Dockerfile",
		"build_path":          "image",
		"build_args":          map[string]any{"LAUNCHPAD_BUILD_ARCH": ociE2EArch, "GREETING": "hello from build_args"},
		"metadata":            map[string]any{"architectures": []any{ociE2EArch}, "build_request_id": nil, "recipe_owner": map[string]any{"name": "u", "email": nil}},
		"proxy_url":           f.upstream,
		"revocation_endpoint": f.revURL,
		"git_repository":      f.repo.URL(),
		"git_path":            gitPath,
		"fast_cleanup":        false,
	}
}

func (f *ociFixture) startBuild(t testing.TB, a *snapAgent, id string, args map[string]any) {
	t.Helper()
	res, ok := a.call(t, "build", id, "oci", f.chrootSHA1, map[string]any{}, args).([]any)
	if !ok || len(res) != 2 || res[0] != "BuilderStatus.BUILDING" || res[1] != id {
		t.Fatalf("build() = %#v", res)
	}
}

func sha256HexOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ociLayerFiles unpacks a .tar.gz layer into name → content.
func ociLayerFiles(t *testing.T, gz []byte) (files map[string]string, tarSHA string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer does not gunzip: %v", err)
	}
	files = map[string]string{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("layer is not a tar: %v", err)
		}
		data, _ := io.ReadAll(tr)
		files[strings.TrimPrefix(h.Name, "./")] = string(data)
	}
	return files, sha256HexOf(raw)
}

// ociImage is what buildd-manager gets of a finished oci build.
type ociImage struct {
	labels map[string]string
	layers int
	// files are the layers' files, later layers over earlier ones.
	files map[string]string
	// config and layerFiles name the config and the .tar.gz layers in
	// order; blobs holds each as fetched.
	config     string
	layerFiles []string
	blobs      map[string][]byte
}

// checkOCIResults fetches the results as buildd-manager's _downloadFiles
// does (manifest, digests, the config, each layer digests.json names) and
// checks them against each other: one digests.json entry per layer, each
// layer_id the manifest's, each digest the .tar.gz's sha256 (built
// locally: source ""), each .tar.gz a tar whose sha256 is its diff_id.
func checkOCIResults(t *testing.T, a *snapAgent, st map[string]any) ociImage {
	t.Helper()
	filemap := st["filemap"].(map[string]any)
	blobs := map[string][]byte{}
	get := func(name string) []byte {
		t.Helper()
		sha1, ok := filemap[name].(string)
		if !ok {
			t.Fatalf("filemap has no %s: %v", name, filemapNames(st))
		}
		data := a.fetch(t, sha1)
		if snapSHA1Hex(data) != sha1 {
			t.Fatalf("%s does not hash to its filemap SHA-1", name)
		}
		blobs[name] = data
		return data
	}
	// buildd-manager's _downloadFiles: manifest, digests, each config,
	// each layer named by digests.json.
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(get("manifest.json"), &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v %#v", err, manifest)
	}
	var digests []map[string]struct {
		Digest  string `json:"digest"`
		Source  string `json:"source"`
		LayerID string `json:"layer_id"`
	}
	if err := json.Unmarshal(get("digests.json"), &digests); err != nil || len(digests) != 1 {
		t.Fatalf("digests.json: %v %#v", err, digests)
	}
	var config struct {
		Config struct{ Labels map[string]string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(get(manifest[0].Config), &config); err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(config.RootFS.DiffIDs) != len(manifest[0].Layers) || len(digests[0]) != len(manifest[0].Layers) {
		t.Fatalf("diff_ids %v, manifest layers %v, digests.json %v do not match", config.RootFS.DiffIDs, manifest[0].Layers, digests[0])
	}
	all := map[string]string{}
	var layerFiles []string
	for i, diffID := range config.RootFS.DiffIDs {
		d, ok := digests[0][diffID]
		if !ok {
			t.Fatalf("digests.json has no %s", diffID)
		}
		if want := strings.Split(manifest[0].Layers[i], "/")[0]; d.LayerID != want {
			t.Errorf("layer %d: layer_id %q, manifest says %q", i, d.LayerID, want)
		}
		gz := get(d.LayerID + ".tar.gz")
		layerFiles = append(layerFiles, d.LayerID+".tar.gz")
		if d.Digest != sha256HexOf(gz) || d.Source != "" {
			t.Errorf("layer %d: digest %q source %q, the .tar.gz's sha256 is %s", i, d.Digest, d.Source, sha256HexOf(gz))
		}
		files, tarSHA := ociLayerFiles(t, gz)
		if "sha256:"+tarSHA != diffID {
			t.Errorf("layer %d unpacks to sha256:%s, the config says %s", i, tarSHA, diffID)
		}
		for n, c := range files {
			all[n] = c
		}
	}
	return ociImage{labels: config.Config.Labels, layers: len(config.RootFS.DiffIDs), files: all,
		config: manifest[0].Config, layerFiles: layerFiles, blobs: blobs}
}

// dockerArchive is what `docker load` reads made from the results only:
// the config, the .tar.gz layers (docker load decompresses them) and a
// manifest naming them, tagged tag.
func (img ociImage) dockerArchive(t *testing.T, tag string) []byte {
	t.Helper()
	manifest, err := json.Marshal([]map[string]any{{"Config": img.config, "RepoTags": []string{tag}, "Layers": img.layerFiles}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	add(img.config, img.blobs[img.config])
	for _, l := range img.layerFiles {
		add(l, img.blobs[l])
	}
	add("manifest.json", manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestOCIE2E: a good image build, then a failing one and an abort during
// docker build, on one agent.
func TestOCIE2E(t *testing.T) {
	f := newOCIFixture(t)
	f.repo.WriteFile(t, "image/Dockerfile", `FROM scratch AS base
ADD base.tar /
FROM base
ARG GREETING=unset
COPY hello.txt /hello.txt
RUN echo "$GREETING" > /greeting.txt
LABEL greeting=$GREETING
`)
	f.repo.WriteFile(t, "image/hello.txt", "hello from git\n")
	f.repo.WriteFile(t, "image/base.tar", string(ociBaseTar(t, f.chrootPath)))
	f.repo.WriteFile(t, "README", "top level\n")
	f.repo.Commit(t, "image 1.0")
	a := startOCIAgent(t)
	a.ensureChroot(t, f.snapFixture)

	f.startBuild(t, a, "OCIBUILD-1", f.buildArgs("refs/heads/main"))
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	img := checkOCIResults(t, a, st)
	if img.labels["greeting"] != "hello from build_args" {
		t.Errorf("build_args did not reach the build: labels %v", img.labels)
	}
	if img.layers != 3 {
		t.Errorf("want 3 layers (ADD, COPY, RUN), got %d", img.layers)
	}
	all := img.files
	if all["hello.txt"] != "hello from git\n" || all["greeting.txt"] != "hello from build_args\n" || all["bin/sh"] == "" {
		t.Errorf("the layers lack the image's files: %v", len(all))
	}
	for _, want := range []string{
		"RUN: apt-get -y install docker.io\n",
		// From the test image, not from an archive (the build's has none).
		"docker.io is already the newest version",
		// The drop-ins take effect although no postinst reloaded systemd.
		"RUN: systemctl daemon-reload\n",
		"RUN: docker build --no-cache --build-arg http_proxy=http://10.10.10.1:",
		"--tag hello --file image/Dockerfile '--build-arg=GREETING=hello from build_args' --build-arg=LAUNCHPAD_BUILD_ARCH=amd64 /home/buildd/hello/image\n",
		"RUN: docker save hello\n",
		"Processing tar file: manifest.json\n",
		"Revoking proxy token...\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(log, snapE2EPass) {
		t.Errorf("the build log shows the proxy password")
	}
	if revs := f.revoked(); len(revs) != 1 {
		t.Errorf("revocations = %q", revs)
	}
	if snapContainerExists(ociE2EContainer()) {
		t.Errorf("container left after the build")
	}
	if got := a.call(t, "clean"); got != "BuilderStatus.IDLE" {
		t.Fatalf("clean() = %v", got)
	}

	t.Run("FROM scratch and COPY only", func(t *testing.T) {
		f.repo.WriteFile(t, "image/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n")
		f.repo.Commit(t, "scratch")
		args := f.buildArgs("refs/heads/main")
		delete(args, "proxy_url")
		delete(args, "revocation_endpoint")
		f.startBuild(t, a, "OCIBUILD-5", args)
		st, log := finishedBuild(t, a)
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		img := checkOCIResults(t, a, st)
		if img.layers != 1 || len(img.files) != 1 || img.files["hello.txt"] != "hello from git\n" {
			t.Errorf("want one layer holding hello.txt: %d layers, files %v", img.layers, img.files)
		}
		if strings.Contains(log, "--build-arg http_proxy") || strings.Contains(log, "docker.service.d") {
			t.Errorf("a build without proxy_url has proxy settings; log:\n%s", log)
		}
		a.call(t, "clean")
	})

	t.Run("identical layers: docker save's symlinked layer is stored", func(t *testing.T) {
		// The first and third layers hold the same /f: one diff_id, and
		// docker save writes the third layer.tar as a symlink to the first.
		f.repo.WriteFile(t, "image/other.txt", "other\n")
		f.repo.WriteFile(t, "image/Dockerfile", "FROM scratch\nCOPY hello.txt /f\nCOPY other.txt /f\nCOPY hello.txt /f\n")
		f.repo.Commit(t, "twice")
		args := f.buildArgs("refs/heads/main")
		delete(args, "proxy_url")
		delete(args, "revocation_endpoint")
		f.startBuild(t, a, "OCIBUILD-6", args)
		st, log := finishedBuild(t, a)
		defer a.call(t, "clean")
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		filemap := st["filemap"].(map[string]any)
		var manifest []struct{ Layers []string }
		if err := json.Unmarshal(a.fetch(t, filemap["manifest.json"].(string)), &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) != 3 {
			t.Fatalf("manifest.json: %v %#v", err, manifest)
		}
		var digests []map[string]struct {
			Digest  string `json:"digest"`
			LayerID string `json:"layer_id"`
		}
		if err := json.Unmarshal(a.fetch(t, filemap["digests.json"].(string)), &digests); err != nil || len(digests) != 1 || len(digests[0]) != 2 {
			t.Fatalf("digests.json (two diff_ids for three layers): %v %#v", err, digests)
		}
		var sums []string
		for i, l := range manifest[0].Layers {
			name := strings.Split(l, "/")[0] + ".tar.gz"
			sha1, ok := filemap[name].(string)
			if !ok {
				t.Fatalf("filemap has no %s: %s", name, filemapNames(st))
			}
			gz := a.fetch(t, sha1)
			want := map[bool]string{true: "hello from git\n", false: "other\n"}[i != 1]
			if files, _ := ociLayerFiles(t, gz); files["f"] != want {
				t.Errorf("layer %d (%s) holds %v, want f = %q", i, name, files, want)
			}
			sums = append(sums, sha1)
		}
		if sums[0] != sums[2] || sums[0] == sums[1] {
			t.Errorf("the first and third layers' .tar.gz should be the same, the second not: %v", sums)
		}
		for _, want := range []string{"Found symlink at ", "Dereferencing 1 symlinked layers from another docker save\n"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q", want)
			}
		}
	})

	t.Run("failing RUN is PACKAGEFAIL", func(t *testing.T) {
		f.repo.WriteFile(t, "image/Dockerfile", "FROM scratch AS base\nADD base.tar /\nFROM base\nRUN cat /missing\n")
		f.repo.Commit(t, "broken")
		f.startBuild(t, a, "OCIBUILD-2", f.buildArgs("refs/heads/main"))
		st, log := finishedBuild(t, a)
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" || !strings.Contains(log, "Build failed: docker build") {
			t.Errorf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		a.call(t, "clean")
	})

	t.Run("build_file escaping the tree is refused", func(t *testing.T) {
		args := f.buildArgs("refs/heads/main")
		args["build_file"] = "../../../etc/passwd"
		f.startBuild(t, a, "OCIBUILD-4", args)
		st, log := finishedBuild(t, a)
		if st["build_status"] != "BuildStatus.PACKAGEFAIL" || !strings.Contains(log, "invalid build file path") || strings.Contains(log, "RUN: docker build") {
			t.Errorf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		a.call(t, "clean")
	})

	t.Run("abort during docker build", func(t *testing.T) {
		f.repo.WriteFile(t, "image/Dockerfile", "FROM scratch AS base\nADD base.tar /\nFROM base\nRUN echo sleeping-now && sleep 600\n")
		f.repo.Commit(t, "slow")
		f.startBuild(t, a, "OCIBUILD-3", f.buildArgs("refs/heads/main"))
		deadline := time.Now().Add(8 * time.Minute)
		for !strings.Contains(string(a.fetch(t, "buildlog")), "sleeping-now") {
			if st := a.status(t); st["builder_status"] != "BuilderStatus.BUILDING" {
				t.Fatalf("builder %v before the sleep; log:\n%s", st["builder_status"], a.fetch(t, "buildlog"))
			}
			if time.Now().After(deadline) {
				t.Fatalf("the RUN step never started; log:\n%s", a.fetch(t, "buildlog"))
			}
			time.Sleep(500 * time.Millisecond)
		}
		if got := a.call(t, "abort"); got != "BuilderStatus.ABORTING" {
			t.Errorf("abort() = %v", got)
		}
		st := a.waitState(t, "BuilderStatus.WAITING", 3*time.Minute)
		if st["build_status"] != "BuildStatus.ABORTED" {
			t.Errorf("build_status = %v; log:\n%s", st["build_status"], a.fetch(t, "buildlog"))
		}
		if snapContainerExists(ociE2EContainer()) {
			t.Errorf("container left after abort")
		}
		a.call(t, "clean")
	})

	// Last: fast_cleanup leaves the container, whose docker then loads
	// the image made from what the filemap holds and runs it.
	t.Run("the image from the filemap loads into docker and runs", func(t *testing.T) {
		f.repo.WriteFile(t, "image/Dockerfile", "FROM scratch AS base\nADD base.tar /\nFROM base\nARG GREETING\nCOPY hello.txt /hello.txt\nRUN echo \"$GREETING\" > /greeting.txt\n")
		f.repo.Commit(t, "loadable")
		args := f.buildArgs("refs/heads/main")
		args["fast_cleanup"] = true
		f.startBuild(t, a, "OCIBUILD-6", args)
		st, log := finishedBuild(t, a)
		if st["build_status"] != "BuildStatus.OK" {
			t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
		}
		img := checkOCIResults(t, a, st)
		p := filepath.Join(t.TempDir(), "filemap.docker.tar")
		if err := os.WriteFile(p, img.dockerArchive(t, "fromfilemap:latest"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := ociE2EContainer()
		if out, err := exec.Command("lxc", "file", "push", p, c+"/root/filemap.docker.tar").CombinedOutput(); err != nil {
			t.Fatalf("lxc file push: %v\n%s", err, out)
		}
		// The built image is removed first: only the loaded one can run.
		script := "docker rmi -f hello >/dev/null && docker load -i /root/filemap.docker.tar && " +
			"docker run --rm --network none fromfilemap cat /hello.txt /greeting.txt"
		got, err := exec.Command("lxc", "exec", c, "--", "sh", "-c", script).CombinedOutput()
		if err != nil || !strings.HasSuffix(string(got), "hello from git\nhello from build_args\n") {
			t.Errorf("docker load and run: %v\n%s", err, got)
		}
		// dockerd ran with the builder proxy from the drop-ins.
		env, err := exec.Command("lxc", "exec", c, "--", "systemctl", "show", "docker", "--property=Environment").CombinedOutput()
		if err != nil || !strings.Contains(string(env), "HTTP_PROXY=http://10.10.10.1:") || !strings.Contains(string(env), "HTTPS_PROXY=http://10.10.10.1:") {
			t.Errorf("docker's environment lacks the builder proxy: %v %q", err, env)
		}
		a.call(t, "clean")
	})
}

// TestOCIE2ELocalBuild runs `buildd-agent build oci` (the same manager
// in-process) with fast_cleanup, then loads the NAME.docker.tar it wrote
// into the docker of the container it left, and runs the image.
func TestOCIE2ELocalBuild(t *testing.T) {
	f := newOCIFixture(t)
	f.repo.WriteFile(t, "Dockerfile", "FROM scratch AS base\nADD base.tar /\nFROM base\nARG GREETING\nRUN echo \"$GREETING\" > /greeting.txt\n")
	f.repo.WriteFile(t, "base.tar", string(ociBaseTar(t, f.chrootPath)))
	f.repo.Commit(t, "local")
	keyFile := f.trustedKeyFile(t)
	state := t.TempDir()
	conf := writeOCIAgentConfig(t, state, snapFreePort(t, "127.0.0.1"), snapFreePort(t, "10.10.10.1"))
	out := filepath.Join(t.TempDir(), "out")
	t.Cleanup(ociCleanupLXD)
	cmd := exec.Command(snapE2EBinary(t), "build", "oci", "--config", conf,
		"--git-repository", f.repo.URL(), "--git-path", "refs/heads/main", "--chroot", f.chrootPath,
		"--build-file", "Dockerfile", "--build-arg", "GREETING=loaded back",
		"--archive", f.archiveLine, "--trusted-key", keyFile, "--fast-cleanup",
		"--series", ociE2ESeries, "--arch", ociE2EArch, "--output", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build oci: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, n := range []string{"manifest.json", "digests.json", "summary.json", "buildlog", "hello.docker.tar"} {
		if _, err := os.Stat(filepath.Join(out, n)); err != nil {
			t.Errorf("output lacks %s: %v", n, err)
		}
	}
	c := ociE2EContainer()
	if out, err := exec.Command("lxc", "file", "push", filepath.Join(out, "hello.docker.tar"), c+"/root/hello.docker.tar").CombinedOutput(); err != nil {
		t.Fatalf("lxc file push: %v\n%s", err, out)
	}
	script := "docker rmi -f hello >/dev/null && docker load -i /root/hello.docker.tar && docker run --rm --network none hello cat /greeting.txt"
	got, err := exec.Command("lxc", "exec", c, "--", "sh", "-c", script).CombinedOutput()
	if err != nil || !strings.HasSuffix(string(got), "loaded back\n") {
		t.Errorf("docker load and run: %v\n%s", err, got)
	}
}

package main

// `buildd-agent build oci`: build an OCI image from git with the farm's
// oci manager, in-process: the same container with docker.io from the
// build's archives, builder proxy, checkout into /home/buildd/NAME,
// `docker build` and result gathering (<layer>.tar.gz, manifest.json,
// the config, digests.json). It also writes NAME.docker.tar, which
// `docker load` reads back.

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/builders"
)

func init() { buildSubcommands = append(buildSubcommands, newBuildOCICmd) }

// localOCIFlags are `build oci`'s flags.
type localOCIFlags struct {
	config, gitRepository, gitPath, branch, buildFile, buildPath string
	chroot, image, proxyURL, revocation, output, backend         string
	series, arch, name                                           string
	buildArgs, archives, keys                                    []string
	fastCleanup                                                  bool
}

func newBuildOCICmd() *cobra.Command {
	var f localOCIFlags
	cmd := &cobra.Command{
		Use:   "oci (--git-repository URL | --branch BZR) (--chroot FILE | --image FILE|SHA1) [flags]",
		Short: "Build an OCI image with docker as the farm would",
		Long: `Build an OCI image with the farm's oci manager: docker.io is installed in the
container from the build's archives (--archive; default: the chroot's own), the
source is checked out into /home/buildd/NAME and "docker build --no-cache" runs on
/home/buildd/NAME/BUILD_PATH. Written to --output: each layer as <id>.tar.gz,
manifest.json, the image config, digests.json (what Launchpad uploads), the
buildlog, summary.json, and NAME.docker.tar for "docker load".`,
		Example: `  sudo buildd-agent build oci \
      --git-repository https://git.example.com/hello.git --git-path refs/heads/main \
      --build-file Dockerfile --build-path . --build-arg VERSION=1.0 \
      --chroot bookworm-amd64-chroot.tar.gz --series bookworm --output ./out
  docker load -i out/hello.docker.tar`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalOCI(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, "oci", code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError("oci"))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.gitRepository, "git-repository", "", "git repository URL (http, https or git://) or local path")
	fl.StringVar(&f.gitPath, "git-path", "", "branch, tag (refs/tags/1.0) or commit to build (default: HEAD)")
	fl.StringVar(&f.branch, "branch", "", "Bazaar branch to build (instead of --git-repository)")
	fl.StringVar(&f.buildFile, "build-file", "", "Dockerfile, relative to --build-path (default: docker's, Dockerfile)")
	fl.StringVar(&f.buildPath, "build-path", "", "context directory of docker build in the tree (default: its top)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "KEY=VALUE for docker build --build-arg (repeatable)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in")
	fl.StringVar(&f.image, "image", "", "unified LXD image tarball, or the SHA-1 of a chroot this agent already imported")
	fl.StringVar(&f.proxyURL, "proxy-url", "", "upstream HTTP proxy http://user:pass@host:port the build fetches through")
	fl.StringVar(&f.revocation, "revocation-endpoint", "", "URL where the proxy token is revoked when the build ends")
	fl.StringArrayVar(&f.archives, "archive", nil, "sources.list line of an archive the container's apt uses (repeatable; default: the chroot's own)")
	fl.StringArrayVar(&f.keys, "trusted-key", nil, "OpenPGP public key file (armoured or binary) the archives are signed with (repeatable)")
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.backend, "backend", "", "target backend (default: [builder] backend; docker needs lxd)")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot (names the container and image)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	fl.StringVar(&f.name, "name", "", "image name: its docker tag and /home/buildd/NAME (default: the repository's name)")
	fl.BoolVar(&f.fastCleanup, "fast-cleanup", false, "leave the target behind when done")
	return cmd
}

// ociBuildArgs turns the flags into the build() arguments buildd-manager
// would send (§4.6).
func ociBuildArgs(f localOCIFlags, arch string) (map[string]any, error) {
	if (f.gitRepository == "") == (f.branch == "") {
		return nil, errors.New("give exactly one of --git-repository and --branch")
	}
	name := f.name
	if name == "" {
		src := f.gitRepository
		if src == "" {
			src = f.branch
		}
		name = strings.ToLower(strings.TrimSuffix(path.Base(strings.TrimRight(src, "/")), ".git"))
	}
	args := map[string]any{"series": f.series, "arch_tag": arch, "name": name}
	set := func(k, v string) {
		if v != "" {
			args[k] = v
		}
	}
	set("git_repository", f.gitRepository)
	set("git_path", f.gitPath)
	set("branch", f.branch)
	set("build_file", f.buildFile)
	set("build_path", f.buildPath)
	set("proxy_url", f.proxyURL)
	set("revocation_endpoint", f.revocation)
	if f.fastCleanup {
		args["fast_cleanup"] = true
	}
	bargs := map[string]any{}
	for _, kv := range f.buildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --build-arg %q: want KEY=VALUE", kv)
		}
		bargs[k] = v
	}
	args["build_args"] = bargs
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return nil, err
	}
	return args, nil
}

func runLocalOCI(ctx context.Context, f localOCIFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, arch, err := localConfig(f.config, f.backend, f.arch)
	if err != nil {
		return 0, err
	}
	args, err := ociBuildArgs(f, arch)
	if err != nil {
		return 0, err
	}
	img, err := localImage(f.chroot, f.image, args)
	if err != nil {
		return 0, err
	}
	code, err := runLocalBuild(ctx, cfg, "oci", builders.Request{Chroot: img, Args: args}, arch, f.output, stdout, stderr)
	if err != nil || code != buildExitOK {
		return code, err
	}
	name := args["name"].(string)
	out := filepath.Join(f.output, name+".docker.tar")
	if err := writeDockerArchive(f.output, out, name); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "    %s  (docker load -i %s)\n", filepath.Base(out), out)
	return code, nil
}

// writeDockerArchive writes what `docker load` reads from the results in
// dir: manifest.json with each layer as its <id>.tar.gz (docker load
// decompresses layers), the configs and the layers, tagged name:latest.
func writeDockerArchive(dir, out, name string) (err error) {
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return fmt.Errorf("cannot read the image's manifest: %w", err)
	}
	var manifest []map[string]any
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return fmt.Errorf("cannot parse manifest.json: %w", err)
	}
	var files []string
	seen := map[string]bool{}
	addFile := func(n string) error {
		if n == "" || n != filepath.Base(n) || strings.HasPrefix(n, ".") {
			return fmt.Errorf("manifest.json names %q, not a result file", n)
		}
		if !seen[n] {
			seen[n] = true
			files = append(files, n)
		}
		return nil
	}
	for i, sec := range manifest {
		cfg, _ := sec["Config"].(string)
		if err := addFile(cfg); err != nil {
			return err
		}
		layers, _ := sec["Layers"].([]any)
		newLayers := make([]any, 0, len(layers))
		for _, l := range layers {
			s, _ := l.(string)
			id, _, _ := strings.Cut(s, "/")
			if err := addFile(id + ".tar.gz"); err != nil {
				return err
			}
			newLayers = append(newLayers, id+".tar.gz")
		}
		manifest[i]["Layers"] = newLayers
		if i == 0 {
			manifest[i]["RepoTags"] = []any{name + ":latest"}
		}
	}
	newManifest, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	w, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	tw := tar.NewWriter(w)
	for _, n := range files {
		if err := tarFile(tw, filepath.Join(dir, n), n); err != nil {
			w.Close()
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(newManifest)), Typeflag: tar.TypeReg}); err != nil {
		w.Close()
		return err
	}
	if _, err := tw.Write(newManifest); err != nil {
		w.Close()
		return err
	}
	if err := tw.Close(); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// tarFile adds the regular file p to tw as name.
func tarFile(tw *tar.Writer, p, name string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("cannot read result: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("result %s is not a regular file", name)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

package main

// `buildd-agent build charm|rock|craft`: build a charm, a rock or a
// sourcecraft package from git with the farm's manager, in-process, as
// `build snap` does for snaps: same container, builder proxy, install
// steps, checkout into /home/buildd/<name>, `<tool> pack` and result
// gathering.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

func init() {
	for _, k := range localCraftKinds {
		k := k
		buildSubcommands = append(buildSubcommands, func() *cobra.Command { return newBuildCraftCmd(k) })
	}
}

// localCraftKind is one of the three subcommands.
type localCraftKind struct {
	tag, tool, what, example string
	// craftPlatform, launchpadEnv, env: which of the manager's own
	// arguments the subcommand offers.
	craftPlatform, launchpadEnv, env bool
}

var localCraftKinds = []localCraftKind{
	{tag: "charm", tool: "charmcraft", what: "a charm", example: "charmcraft=3.x/stable", craftPlatform: true},
	{tag: "rock", tool: "rockcraft", what: "a rock", example: "rockcraft=1.x/stable", launchpadEnv: true},
	{tag: "craft", tool: "sourcecraft", what: "a sourcecraft package", example: "sourcecraft=latest/edge", launchpadEnv: true, env: true},
}

// localCraftFlags are the subcommands' flags.
type localCraftFlags struct {
	config, gitRepository, gitPath, buildPath, chroot, image, proxyURL, revocation string
	output, backend, series, arch, name, craftPlatform                             string
	launchpadInstance, launchpadServerURL                                          string
	channels, env, archives, keys                                                  []string
	fastCleanup                                                                    bool
}

func newBuildCraftCmd(k localCraftKind) *cobra.Command {
	var f localCraftFlags
	cmd := &cobra.Command{
		Use:   k.tag + " --git-repository URL (--chroot FILE | --image FILE|SHA1) [flags]",
		Short: "Build " + k.what + " from a git repository as the farm would (" + k.tool + " pack)",
		Long: `Build ` + k.what + ` with the farm's ` + k.tag + ` manager: the source is checked out
into /home/buildd/NAME in the container, ` + k.tool + ` is installed as a classic snap
(with the channel --channel gives it) and "` + k.tool + ` pack -v --destructive-mode"
runs in /home/buildd/NAME/BUILD_PATH. The results, the buildlog and summary.json
are written to --output.`,
		Example: `  sudo buildd-agent build ` + k.tag + ` \
      --git-repository https://git.example.com/hello.git --git-path refs/tags/1.0 \
      --build-path sub --chroot noble-amd64-chroot.tar.gz --series noble \
      --channel ` + k.example + ` --output ./out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := runLocalCraft(cmd.Context(), k, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return localExit(cmd, k.tag, code, err)
		},
	}
	cmd.SetFlagErrorFunc(localFlagError(k.tag))
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "agent configuration file (default: the embedded default)")
	fl.StringVar(&f.gitRepository, "git-repository", "", "git repository URL (http, https or git://) or local path (required)")
	fl.StringVar(&f.gitPath, "git-path", "", "branch, tag (refs/tags/1.0) or commit to build (default: HEAD)")
	fl.StringVar(&f.buildPath, "build-path", "", "directory of the repository to pack in (default: its top)")
	fl.StringVar(&f.chroot, "chroot", "", "Launchpad chroot tarball to build in")
	fl.StringVar(&f.image, "image", "", "unified LXD image tarball, or the SHA-1 of a chroot this agent already imported")
	fl.StringArrayVar(&f.channels, "channel", nil, "SNAP=CHANNEL to install (repeatable), e.g. "+k.example)
	fl.StringVar(&f.proxyURL, "proxy-url", "", "upstream HTTP proxy http://user:pass@host:port the build fetches through")
	fl.StringVar(&f.revocation, "revocation-endpoint", "", "URL where the proxy token is revoked when the build ends")
	fl.StringArrayVar(&f.archives, "archive", nil, "sources.list line of an archive the container's apt uses (repeatable; default: the chroot's own)")
	fl.StringArrayVar(&f.keys, "trusted-key", nil, "OpenPGP public key file (armoured or binary) the archives are signed with (repeatable)")
	fl.StringVar(&f.output, "output", "out", "directory for the results, buildlog and summary.json")
	fl.StringVar(&f.backend, "backend", "", "target backend: lxd or chroot (default: [builder] backend)")
	fl.StringVar(&f.series, "series", "noble", "series of the chroot (names the container and image)")
	fl.StringVar(&f.arch, "arch", "", "architecture tag (default: the first of [builder] architectures)")
	fl.StringVar(&f.name, "name", "", "build name: the source goes to /home/buildd/NAME (default: the repository's name)")
	fl.BoolVar(&f.fastCleanup, "fast-cleanup", false, "leave the target behind when done")
	if k.craftPlatform {
		fl.StringVar(&f.craftPlatform, "craft-platform", "", "platform to pack for (CRAFT_PLATFORM)")
	}
	if k.launchpadEnv {
		fl.StringVar(&f.launchpadInstance, "launchpad-instance", "", "LAUNCHPAD_INSTANCE for the tool (production, qastaging, …)")
		fl.StringVar(&f.launchpadServerURL, "launchpad-server-url", "", "LAUNCHPAD_SERVER_URL for the tool")
	}
	if k.env {
		fl.StringArrayVar(&f.env, "env", nil, "KEY=VALUE of environment_variables (repeatable): CARGO_<N>_URL, CARGO_<N>_READ_AUTH, MAVEN_<N>_URL, MAVEN_<N>_READ_AUTH")
	}
	return cmd
}

// craftBuildArgs turns the flags into the build() arguments buildd-manager
// would send.
func craftBuildArgs(k localCraftKind, f localCraftFlags, arch string) (map[string]any, error) {
	name := f.name
	if name == "" {
		name = strings.TrimSuffix(path.Base(strings.TrimRight(f.gitRepository, "/")), ".git")
	}
	args := map[string]any{
		"series":         f.series,
		"arch_tag":       arch,
		"name":           name,
		"git_repository": f.gitRepository,
		"channels":       map[string]any{},
	}
	if f.gitPath != "" {
		args["git_path"] = f.gitPath
	}
	if f.buildPath != "" {
		args["build_path"] = f.buildPath
	}
	ch := args["channels"].(map[string]any)
	for _, c := range f.channels {
		snap, channel, ok := strings.Cut(c, "=")
		if !ok || snap == "" || channel == "" {
			return nil, fmt.Errorf("invalid --channel %q: want SNAP=CHANNEL", c)
		}
		ch[snap] = channel
	}
	if f.proxyURL != "" {
		args["proxy_url"] = f.proxyURL
	}
	if f.revocation != "" {
		args["revocation_endpoint"] = f.revocation
	}
	if f.fastCleanup {
		args["fast_cleanup"] = true
	}
	if f.craftPlatform != "" {
		args["craft_platform"] = f.craftPlatform
	}
	if f.launchpadInstance != "" {
		args["launchpad_instance"] = f.launchpadInstance
	}
	if f.launchpadServerURL != "" {
		args["launchpad_server_url"] = f.launchpadServerURL
	}
	if k.env {
		env := map[string]any{}
		for _, kv := range f.env {
			key, value, ok := strings.Cut(kv, "=")
			if !ok || key == "" {
				return nil, fmt.Errorf("invalid --env %q: want KEY=VALUE", kv)
			}
			env[key] = value
		}
		args["environment_variables"] = env
	}
	if err := addArchiveArgs(args, f.archives, f.keys); err != nil {
		return nil, err
	}
	return args, nil
}

// localImage is the image of --chroot or --image (as `build snap` reads
// them); an image file also sets image_type in args.
func localImage(chroot, image string, args map[string]any) (target.Image, error) {
	if (chroot == "") == (image == "") {
		return target.Image{}, errors.New("give exactly one of --chroot and --image")
	}
	if image == "" {
		if _, err := os.Stat(chroot); err != nil {
			return target.Image{}, fmt.Errorf("cannot use --chroot: %w", err)
		}
		return target.Image{Type: "chroot", Path: chroot}, nil
	}
	if st, err := os.Stat(image); err == nil && st.Mode().IsRegular() {
		args["image_type"] = "lxd"
		return target.Image{Type: "lxd", Path: image}, nil
	}
	if agent.ValidSHA1(strings.ToLower(image)) {
		return target.Image{Type: "chroot", SHA1: strings.ToLower(image)}, nil
	}
	return target.Image{}, fmt.Errorf("--image %q is neither an image file nor a SHA-1", image)
}

func runLocalCraft(ctx context.Context, k localCraftKind, f localCraftFlags, stdout, stderr io.Writer) (int, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.gitRepository == "" {
		return 0, errors.New("--git-repository is required")
	}
	cfg, arch, err := localConfig(f.config, f.backend, f.arch)
	if err != nil {
		return 0, err
	}
	args, err := craftBuildArgs(k, f, arch)
	if err != nil {
		return 0, err
	}
	img, err := localImage(f.chroot, f.image, args)
	if err != nil {
		return 0, err
	}
	return runLocalBuild(ctx, cfg, k.tag, builders.Request{Chroot: img, Args: args}, arch, f.output, stdout, stderr)
}

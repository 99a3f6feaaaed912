package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newChrootCmd) }

// chrootFlags are `chroot create`'s flags.
type chrootFlags struct {
	series, arch, variant, mirror, components, keyring, include, cacheDir string
	maxAge                                                                time.Duration
	refresh                                                               bool
}

// ubuntuSeries are the Ubuntu series `chroot create` knows by name (the
// others are taken for Debian's): they pick Ubuntu's archive and keyring.
var ubuntuSeries = map[string]bool{
	"bionic": true, "focal": true, "jammy": true, "noble": true, "oracular": true,
	"plucky": true, "questing": true, "resolute": true,
}

func newChrootCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chroot",
		Short: "Make chroot tarballs for local builds",
		Args:  cobra.NoArgs,
	}
	var f chrootFlags
	create := &cobra.Command{
		Use:   "create --series S --arch A [--variant buildd] [--mirror URL] FILE",
		Short: "Make a Launchpad-format chroot tarball (chroot-autobuild/, gzip) with mmdebstrap",
		Long: `Make a chroot tarball in the format Launchpad's build master sends
(members under chroot-autobuild/, numeric owners, file capabilities kept,
gzip), for "buildd-agent build … --chroot FILE". It is made by mmdebstrap
(root mode as root, unshare mode otherwise: no root needed), streamed and
repacked on the fly, and cached by series, architecture, variant, mirror,
components and packages: a second run copies the cached tarball.

Ubuntu series (noble, jammy, …) use http://archive.ubuntu.com/ubuntu (or
ports.ubuntu.com for other architectures) and need the ubuntu-keyring
package on a Debian host; Debian series use deb.debian.org.`,
		Example: `  buildd-agent chroot create --series noble --arch amd64 noble-amd64-chroot.tar.gz
  buildd-agent chroot create --series bookworm --arch arm64 --mirror http://mirror.example/debian bookworm-arm64.tar.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return createChroot(cmd.Context(), f, args[0], cmd.ErrOrStderr())
		},
	}
	fl := create.Flags()
	fl.StringVar(&f.series, "series", "", "distribution series: noble, jammy, bookworm, … (required)")
	fl.StringVar(&f.arch, "arch", "", "Debian architecture (default: this machine's)")
	fl.StringVar(&f.variant, "variant", "buildd", "mmdebstrap variant: buildd (Launchpad's), minbase, apt, …")
	fl.StringVar(&f.mirror, "mirror", "", "archive URL (default: Ubuntu's or Debian's archive for the series)")
	fl.StringVar(&f.components, "components", "", "archive components, comma-separated (default: main,universe for Ubuntu, main for Debian)")
	fl.StringVar(&f.keyring, "keyring", "", "keyring file that signs the mirror (default: the distribution's keyring package)")
	fl.StringVar(&f.include, "include", "", "extra packages, comma-separated")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "where made tarballs are cached (default: /var/cache/buildd-agent/chroots as root, else ~/.cache/buildd-agent/chroots)")
	fl.DurationVar(&f.maxAge, "max-age", 7*24*time.Hour, "a cached tarball older than this is made again")
	fl.BoolVar(&f.refresh, "refresh", false, "make the tarball again even if cached")
	cmd.AddCommand(create)
	return cmd
}

// chrootPlan is what mmdebstrap is asked for, resolved from the flags.
type chrootPlan struct {
	series, arch, variant, mirror, components, keyring, include string
}

func planChroot(f chrootFlags) (chrootPlan, error) {
	p := chrootPlan{series: f.series, arch: f.arch, variant: f.variant, mirror: f.mirror,
		components: f.components, keyring: f.keyring, include: f.include}
	if p.series == "" || strings.ContainsAny(p.series, " /\t\n") {
		return p, errors.New("--series is required (noble, jammy, bookworm, …)")
	}
	if p.arch == "" {
		out, err := exec.Command("dpkg", "--print-architecture").Output()
		if err != nil {
			return p, fmt.Errorf("--arch is required (cannot ask dpkg: %w)", err)
		}
		p.arch = strings.TrimSpace(string(out))
	}
	ubuntu := ubuntuSeries[p.series]
	if p.mirror == "" {
		switch {
		case ubuntu && (p.arch == "amd64" || p.arch == "i386"):
			p.mirror = "http://archive.ubuntu.com/ubuntu"
		case ubuntu:
			p.mirror = "http://ports.ubuntu.com/ubuntu-ports"
		default:
			p.mirror = "http://deb.debian.org/debian"
		}
	}
	if p.components == "" {
		p.components = "main"
		if ubuntu {
			p.components = "main,universe"
		}
	}
	if p.keyring == "" && ubuntu {
		p.keyring = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
		if _, err := os.Stat(p.keyring); err != nil {
			return p, fmt.Errorf("an Ubuntu chroot needs Ubuntu's archive key: %s is missing (apt-get install ubuntu-keyring)", p.keyring)
		}
	}
	for _, s := range []string{p.variant, p.mirror, p.components, p.include, p.arch} {
		if strings.ContainsAny(s, " \t\n") {
			return p, fmt.Errorf("%q: no spaces allowed", s)
		}
	}
	return p, nil
}

// key names the plan in the cache; the keyring's contents count, not its
// name.
func (p chrootPlan) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n%s\n", p.series, p.arch, p.variant, p.mirror, p.components, p.include)
	if p.keyring != "" {
		if b, err := os.ReadFile(p.keyring); err == nil {
			h.Write(b)
		}
	}
	return fmt.Sprintf("%s-%s-%s-%s.tar.gz", p.series, p.arch, p.variant, hex.EncodeToString(h.Sum(nil))[:16])
}

func (p chrootPlan) mmdebstrapArgs() []string {
	args := []string{"--variant=" + p.variant, "--architectures=" + p.arch, "--format=tar",
		"--components=" + p.components}
	// apt always: builds install their build dependencies with it, and
	// mmdebstrap's minbase and buildd variants leave it out of a tar
	// (apt works from outside the root while bootstrapping).
	include := "apt"
	if p.include != "" {
		include += "," + p.include
	}
	args = append(args, "--include="+include)
	mirror := p.mirror
	if p.keyring != "" {
		// A whole sources line: apt then checks this archive against
		// this keyring (mmdebstrap's --keyring replaces the default
		// keyring directory, which its signed-by guess does not search).
		mirror = fmt.Sprintf("deb [signed-by=%s] %s %s %s", p.keyring, p.mirror, p.series, strings.ReplaceAll(p.components, ",", " "))
	}
	return append(args, p.series, "-", mirror)
}

func defaultChrootCache() string {
	if os.Geteuid() == 0 {
		return "/var/cache/buildd-agent/chroots"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "buildd-agent", "chroots")
	}
	return filepath.Join(os.TempDir(), "buildd-agent-chroots")
}

func createChroot(ctx context.Context, f chrootFlags, out string, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	p, err := planChroot(f)
	if err != nil {
		return err
	}
	cacheDir := f.cacheDir
	if cacheDir == "" {
		cacheDir = defaultChrootCache()
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return fmt.Errorf("cannot create the chroot cache: %w", err)
	}
	cached := filepath.Join(cacheDir, p.key())
	if st, err := os.Stat(cached); err == nil && !f.refresh && (f.maxAge <= 0 || time.Since(st.ModTime()) < f.maxAge) {
		fmt.Fprintf(stderr, "chroot: using the cached %s\n", cached)
		return copyFile(cached, out)
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return errors.New("mmdebstrap is not installed (apt-get install mmdebstrap)")
	}
	fmt.Fprintf(stderr, "chroot: mmdebstrap %s\n", strings.Join(p.mmdebstrapArgs(), " "))
	tmp, err := os.CreateTemp(cacheDir, ".chroot-*.tar.gz")
	if err != nil {
		return fmt.Errorf("cannot create the chroot tarball: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	cmd := exec.CommandContext(ctx, "mmdebstrap", p.mmdebstrapArgs()...)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot run mmdebstrap: %w", err)
	}
	repackErr := launchpadRepack(bufio.NewReaderSize(stdout, 1<<20), tmp)
	if repackErr != nil {
		// Let mmdebstrap see the broken pipe rather than block on it.
		io.Copy(io.Discard, stdout)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("mmdebstrap failed: %w", err)
	}
	if repackErr != nil {
		return fmt.Errorf("cannot repack mmdebstrap's tarball: %w", repackErr)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		return fmt.Errorf("cannot store the chroot tarball: %w", err)
	}
	if err := copyFile(cached, out); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "chroot: wrote %s (cached as %s)\n", out, cached)
	return nil
}

// launchpadRepack rewrites a root tarball ("./bin/sh" members, as
// mmdebstrap writes them) into Launchpad's chroot format: every member,
// and every hard link's target, under "chroot-autobuild/", gzip. Headers
// are kept whole (numeric owners, modes, PAX records with the
// security.capability xattrs).
func launchpadRepack(r io.Reader, w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(r)
	wroteTop := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name, ok := chrootMemberName(hdr.Name)
		if !ok {
			return fmt.Errorf("member %q escapes the root", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeLink {
			link, ok := chrootMemberName(hdr.Linkname)
			if !ok {
				return fmt.Errorf("hard link %q to %q escapes the root", hdr.Name, hdr.Linkname)
			}
			hdr.Linkname = link
		}
		if name == "chroot-autobuild/" {
			wroteTop = true
		} else if !wroteTop {
			if err := tw.WriteHeader(&tar.Header{Name: "chroot-autobuild/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: hdr.ModTime, Format: tar.FormatPAX}); err != nil {
				return err
			}
			wroteTop = true
		}
		hdr.Name = name
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// chrootMemberName maps "./usr/bin" (or "usr/bin") to
// "chroot-autobuild/usr/bin"; false for a name leaving the root.
func chrootMemberName(n string) (string, bool) {
	clean := filepath.Clean("/" + n)
	if strings.Contains(n, "\x00") {
		return "", false
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", false
		}
	}
	if clean == "/" {
		return "chroot-autobuild/", true
	}
	name := "chroot-autobuild" + clean
	if strings.HasSuffix(n, "/") {
		name += "/"
	}
	return name, true
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return fmt.Errorf("cannot write %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

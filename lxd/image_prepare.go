package lxd

import (
	"archive/tar"
	"context"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// prepareTimeout bounds one background import.
const prepareTimeout = 30 * time.Minute

// debArch is the Debian architecture of this host, the one a chroot sent to
// this builder is for unless build() says otherwise ("" = none LXD knows).
func debArch() string {
	switch runtime.GOARCH {
	case "amd64", "arm64", "riscv64", "s390x":
		return runtime.GOARCH
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return ""
}

// Prepare starts, in the background, the import of the file at path (with
// this SHA-1) if it is a Launchpad chroot tarball: the master sends
// ensurepresent for the chroot, then for the build's other files, then
// build(), whose Create then finds the image made or waits for the import
// under way (importMu) instead of starting it. The image is made for this
// host's architecture; a build for another one (an i386 chroot on amd64)
// re-imports it (ensureImageIdentity checks). It returns at once; failures
// are logged, and build() imports as it would have.
func (h *Host) Prepare(sum, path string) {
	arch := debArch()
	if arch == "" || !validSHA1(sum) {
		return
	}
	go func() {
		ok, err := isChrootTarball(path)
		if err != nil || !ok {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
		defer cancel()
		start := time.Now()
		fp, err := h.prepareImage(ctx, target.Image{Path: path, SHA1: sum, Type: "chroot"}, arch)
		if err != nil {
			h.log.Warn("cannot import the chroot ahead of its build", "sha1", sum, "err", err)
			return
		}
		h.log.Info("chroot imported ahead of its build", "sha1", sum, "fingerprint", fp, "took", time.Since(start).Round(time.Millisecond))
	}()
}

func validSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// isChrootTarball reports whether the file is a tarball (of a compression
// the import reads) whose first member is the chroot-autobuild directory,
// as Launchpad's chroots are: the first few KiB say it.
func isChrootTarball(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	dec, closeDec, err := decompress(f)
	if err != nil {
		return false, nil
	}
	defer closeDec()
	h, err := tar.NewReader(dec).Next()
	if err != nil {
		return false, nil
	}
	n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
	return h.Typeflag == tar.TypeDir && n == chrootTopDir, nil
}

// prepareImage imports a chroot as ensureImageIdentity does, without a
// series (build() gives it) and so without pointing the alias.
func (h *Host) prepareImage(ctx context.Context, img target.Image, arch string) (string, error) {
	fp, _, err := h.ensureImageIdentity(ctx, img, "", arch, nil)
	return fp, err
}

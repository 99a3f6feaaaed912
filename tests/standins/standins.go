// Package standins holds the test stand-ins for `snap`, `snapcraft`, the
// ci build's `lpci` and `lxd` (ci.go, which also gives the image the buildd
// account), and the craft tools `charmcraft`, `rockcraft` and `sourcecraft` (POSIX shell
// scripts, see their headers; the three craft tools are one script,
// craftpack) and makes the end-to-end tests' chroot tarball:
// testenv.ChrootTarball's debootstrap chroot with the stand-ins added
// under /usr/local/bin, so that the image itself carries them, as a real
// build image carries snapd. The real tools' snaps bundle what they pack
// with; the stand-ins get the host's zip and xz (Debian 12, the same libc,
// libbz2 and liblzma as the bookworm chroot) as /usr/local/bin/zip and
// /usr/local/bin/xz.
//
//	tarball := standins.TestChroot(t) // cached by content hash
package standins

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

var (
	//go:embed snap
	Snap []byte
	//go:embed snapcraft
	Snapcraft []byte
	//go:embed craftpack
	CraftPack []byte
)

// snapdUnit stands for snapd's service: the snap stand-in needs no daemon,
// but `systemctl restart snapd` must work.
var snapdUnit = []byte(`[Unit]
Description=snapd stand-in (tests/standins)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
`)

// CraftTools are the names the craftpack stand-in is installed under.
var CraftTools = []string{"charmcraft", "rockcraft", "sourcecraft"}

// hostTools are the host binaries the craft stand-ins pack with.
var hostTools = []string{"/usr/bin/zip", "/usr/bin/xz"}

// Files maps each stand-in's path in the image to its content.
func Files() (map[string][]byte, error) {
	files := map[string][]byte{
		"usr/local/bin/snap":      Snap,
		"usr/local/bin/snapcraft": Snapcraft,
		"usr/local/bin/lpci":      LPCI,
		"usr/local/bin/lxd":       LXD,
	}
	for _, t := range CraftTools {
		files["usr/local/bin/"+t] = CraftPack
	}
	// The fetch service's mode restarts snapd to pick up its certificate.
	files["etc/systemd/system/snapd.service"] = snapdUnit
	for _, p := range hostTools {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("the craft stand-ins need the host's %s (apt-get install zip xz-utils): %w", p, err)
		}
		files["usr/local/bin/"+filepath.Base(p)] = data
	}
	return files, nil
}

var (
	once    sync.Once
	outPath string
	outErr  error
)

// TestChroot returns the path of the chroot tarball with the stand-ins,
// building it on first use (about 10 s) and caching it next to the base
// tarball under a name that hashes the base tarball and the stand-ins.
func TestChroot(t testing.TB) string {
	t.Helper()
	base := testenv.ChrootTarball(t)
	once.Do(func() { outPath, outErr = build(base) })
	if outErr != nil {
		t.Fatalf("cannot make the stand-in chroot tarball: %v", outErr)
	}
	return outPath
}

func build(base string) (string, error) {
	files, err := Files()
	if err != nil {
		return "", err
	}
	if err := builddAccount(base, files); err != nil {
		return "", err
	}
	key, err := cacheKey(base, files)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(base)
	out := filepath.Join(dir, "standins-"+key+".tar.gz")
	// Another test binary may be making it at the same time.
	lock, err := os.OpenFile(filepath.Join(dir, ".standins.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
		return out, nil
	}
	tmp := out + ".tmp"
	if err := Append(base, tmp, files); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	// Older stand-in tarballs (of other scripts or base chroots) are
	// 100 MB each: keep only the current one.
	if old, err := filepath.Glob(filepath.Join(dir, "standins-*.tar.gz")); err == nil {
		for _, p := range old {
			if p != out {
				os.Remove(p)
			}
		}
	}
	return out, nil
}

// cacheKey hashes the base tarball's content and the stand-ins.
func cacheKey(base string, files map[string][]byte) (string, error) {
	h := sha256.New()
	f, err := os.Open(base)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "\x00%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Append writes to out a gzip tarball made of the one at in (gzip, with a
// chroot-autobuild/ prefix) followed by files (paths relative to the
// chroot, owned by root, mode 0755, 0644 under etc/). The original members are copied byte
// for byte (xattrs and all): only the end-of-archive blocks are replaced.
func Append(in, out string, files map[string][]byte) error {
	end, prefix, err := archiveEnd(in)
	if err != nil {
		return err
	}
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	zr, err := gzip.NewReader(src)
	if err != nil {
		return err
	}
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	defer dst.Close()
	zw, err := gzip.NewWriterLevel(dst, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(zw, zr, end); err != nil {
		return fmt.Errorf("cannot copy the base tarball: %w", err)
	}
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	// Sorted for a reproducible tarball.
	sort.Strings(names)
	mtime := time.Unix(1700000000, 0)
	for _, name := range names {
		data := files[name]
		mode := int64(0o755)
		if strings.HasPrefix(name, "etc/") {
			mode = 0o644 // configuration, not a program
		}
		h := &tar.Header{Name: prefix + name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatGNU}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return dst.Close()
}

// archiveEnd finds where the base tarball's last member ends (in the
// uncompressed stream) and its "chroot-autobuild/" prefix, if any.
func archiveEnd(in string) (end int64, prefix string, err error) {
	f, err := os.Open(in)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, "", err
	}
	cr := &countingReader{r: zr}
	tr := tar.NewReader(cr)
	first := true
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return end, prefix, nil
		}
		if err != nil {
			return 0, "", fmt.Errorf("cannot read %s: %w", in, err)
		}
		if first {
			if h.Name == "chroot-autobuild" || h.Name == "chroot-autobuild/" || len(h.Name) > 17 && h.Name[:17] == "chroot-autobuild/" {
				prefix = "chroot-autobuild/"
			}
			first = false
		}
		if h.Typeflag == tar.TypeGNUSparse {
			return 0, "", fmt.Errorf("%s has a sparse member %s: not supported", in, h.Name)
		}
		// tar.Reader reads whole 512-byte blocks and no further than the
		// header (and its extension headers) at this point.
		size := h.Size
		if h.Typeflag == tar.TypeLink || h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeDir ||
			h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock || h.Typeflag == tar.TypeFifo {
			size = 0
		}
		end = cr.n + (size+511)/512*512
	}
}

package lxd

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// lxcArch maps Debian architecture tags to LXC's (lpbuildd/target/lxd.py).
var lxcArch = map[string]string{
	"amd64":   "x86_64",
	"arm64":   "aarch64",
	"armhf":   "armv7l",
	"i386":    "i686",
	"powerpc": "ppc",
	"ppc64el": "ppc64le",
	"riscv64": "riscv64",
	"s390x":   "s390x",
}

// personality is the setarch wrapper every command runs under, as the
// reference does, so a 32-bit chroot on a 64-bit host sees a 32-bit uname.
func personality(arch string) string {
	switch arch {
	case "i386", "armhf", "armel", "powerpc":
		return "linux32"
	}
	return "linux64"
}

// imageMetadata is metadata.yaml of a unified LXD image. Fields are in
// sorted order so that the JSON matches the reference's sort_keys output.
type imageMetadata struct {
	Architecture string            `json:"architecture"`
	CreationDate int64             `json:"creation_date"`
	Properties   map[string]string `json:"properties"`
}

// marshal writes metadata.yaml as launchpad-buildd does: JSON (valid YAML),
// sorted keys, indent 4, trailing newline.
func (m imageMetadata) marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// compression is a tarball's compression, detected by magic number.
type compression string

const (
	compNone  compression = "none"
	compGzip  compression = "gzip"
	compXZ    compression = "xz"
	compZstd  compression = "zstd"
	compBzip2 compression = "bzip2"
)

func detectCompression(magic []byte) compression {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return compGzip
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return compXZ
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return compZstd
	case bytes.HasPrefix(magic, []byte("BZh")):
		return compBzip2
	}
	return compNone
}

// decompress wraps r in the decompressor its magic number names. close
// releases the decompressor's resources.
func decompress(r io.Reader) (dec io.Reader, close func(), err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	nop := func() {}
	switch detectCompression(magic) {
	case compGzip:
		if p := gunzipCommand(); p != "" {
			return commandGunzip(p, br)
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read gzip stream: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case compXZ:
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read xz stream: %w", err)
		}
		return xr, nop, nil
	case compZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read zstd stream: %w", err)
		}
		return zr, zr.Close, nil
	case compBzip2:
		return bzip2.NewReader(br), nop, nil
	}
	return br, nop, nil
}

const chrootTopDir = "chroot-autobuild"

// imageMemberName maps a chroot tarball member to its name in the unified
// image: under rootfs/, without the chroot-autobuild/ top directory if the
// tarball has one. The reference's quirk (names without the prefix become
// "rootfs<name>") is fixed. Names that climb out with ".." are refused.
func imageMemberName(name string) (string, error) {
	n := name
	for {
		switch {
		case strings.HasPrefix(n, "./"):
			n = n[2:]
		case strings.HasPrefix(n, "/"):
			n = n[1:]
		default:
			goto trimmed
		}
	}
trimmed:
	if n == "." {
		n = ""
	}
	if n == chrootTopDir || strings.HasPrefix(n, chrootTopDir+"/") {
		n = strings.TrimPrefix(n[len(chrootTopDir):], "/")
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid member name %q: it climbs out of the tree", name)
		}
	}
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("invalid member name %q", name)
	}
	return "rootfs/" + n, nil
}

const paxXattrCaps = "SCHILY.xattr.security.capability"

// imageHeader rewrites a chroot member's header for the unified image: a
// fresh header (as archive/tar recommends) with the renamed paths, the
// ownership and mode as they were, the xattrs, and file capabilities
// normalised to v2.
func imageHeader(h *tar.Header) (*tar.Header, error) {
	name, err := imageMemberName(h.Name)
	if err != nil {
		return nil, err
	}
	out := &tar.Header{
		Name:     name,
		Typeflag: h.Typeflag,
		Mode:     h.Mode,
		Uid:      h.Uid,
		Gid:      h.Gid,
		Uname:    h.Uname,
		Gname:    h.Gname,
		ModTime:  h.ModTime,
		Size:     h.Size,
		Devmajor: h.Devmajor,
		Devminor: h.Devminor,
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeDir:
	case tar.TypeGNUSparse:
		// archive/tar would expand the holes: a few bytes could declare
		// exabytes of zeros. Chroots have no sparse files.
		return nil, fmt.Errorf("invalid member %q: sparse files are not supported", h.Name)
	case tar.TypeSymlink:
		out.Linkname = h.Linkname
	case tar.TypeLink:
		if out.Linkname, err = imageMemberName(h.Linkname); err != nil {
			return nil, fmt.Errorf("invalid hard link %q: %w", h.Name, err)
		}
	default:
		return nil, fmt.Errorf("invalid member %q: unsupported type %q", h.Name, h.Typeflag)
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, fmt.Errorf("invalid member %q: sparse files are not supported", h.Name)
		}
	}
	if out.Typeflag != tar.TypeReg {
		out.Size = 0
	}
	for k, v := range h.PAXRecords {
		if !strings.HasPrefix(k, "SCHILY.xattr.") {
			continue
		}
		if k == paxXattrCaps {
			v2, err := capsToV2([]byte(v))
			if err != nil {
				return nil, fmt.Errorf("invalid member %q: %w", h.Name, err)
			}
			v = string(v2)
		}
		if out.PAXRecords == nil {
			out.PAXRecords = map[string]string{}
		}
		out.PAXRecords[k] = v
	}
	return out, nil
}

// convertChroot reads a Launchpad chroot tarball (any compression) from src
// and writes an uncompressed unified LXD image tarball to dst in one pass:
// metadata.yaml first, then every member under rootfs/. meta.CreationDate is
// taken from the first member (the chroot-autobuild directory in Launchpad's
// tarballs), which keeps the output a function of the input.
func convertChroot(dst io.Writer, src io.Reader, meta imageMetadata) error {
	return convertChrootBaked(dst, src, meta, nil)
}

// convertChrootBaked is convertChroot with the host identity written into
// the image by bake (image_identity.go), if not nil.
func convertChrootBaked(dst io.Writer, src io.Reader, meta imageMetadata, bake *identityBaker) error {
	dec, closeDec, err := decompress(src)
	if err != nil {
		return fmt.Errorf("cannot read chroot tarball: %w", err)
	}
	defer closeDec()
	ra := newReadAhead(dec, 1<<20, 4)
	defer ra.Close()
	tr := tar.NewReader(ra)
	tw := tar.NewWriter(dst)
	members := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("cannot read chroot tarball: %w", err)
		}
		if members == 0 {
			meta.CreationDate = h.ModTime.Unix()
			if err := writeMetadata(tw, meta, h.ModTime); err != nil {
				return err
			}
		}
		members++
		out, err := imageHeader(h)
		if err != nil {
			return fmt.Errorf("cannot convert chroot tarball: %w", err)
		}
		if bake != nil {
			repl, body, err := bake.member(out, tr)
			if err != nil {
				return err
			}
			if repl != nil {
				if err := writeMember(tw, repl, body); err != nil {
					return err
				}
				continue
			}
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("cannot write image member %q: %w", out.Name, err)
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("cannot copy chroot member %q: %w", h.Name, err)
			}
		}
	}
	if members == 0 {
		return errors.New("cannot convert chroot tarball: it has no members")
	}
	if bake != nil {
		if err := bake.finish(tw, time.Unix(meta.CreationDate, 0)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("cannot write image: %w", err)
	}
	return nil
}

func writeMetadata(tw *tar.Writer, meta imageMetadata, mtime time.Time) error {
	data, err := meta.marshal()
	if err != nil {
		return fmt.Errorf("cannot encode image metadata: %w", err)
	}
	h := &tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: mtime}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("cannot write image metadata: %w", err)
	}
	_, err = tw.Write(data)
	return err
}

// aliasName is the image alias and container name build scripts know:
// <prefix>-<series>-<arch> (lp-<series>-<arch> by default).
func (h *Host) aliasName(series, arch string) string {
	return h.cfg.NamePrefix + "-" + series + "-" + arch
}

// fileSHA1 hashes a file (when the manager gave no SHA-1).
func fileSHA1(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := sha1.New()
	if _, err := io.Copy(s, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(s.Sum(nil)), nil
}

// ensureImage returns the fingerprint of the LXD image for img, importing it
// unless this Instance already has an image made from a file with the same
// SHA-1 (the reference re-imports every build). The alias
// <prefix>-<series>-<arch> is pointed at it and stale images are pruned.
func (h *Host) ensureImage(ctx context.Context, img target.Image, series, arch string, log io.Writer) (string, error) {
	fp, _, err := h.ensureImageIdentity(ctx, img, series, arch, log)
	return fp, err
}

// ensureImageIdentity is ensureImage that also says which host identity the
// image carries (the digest of image_identity.go, "" for none): a chroot is
// imported with this host's identity baked in. An empty series (Prepare)
// imports without pointing the alias.
func (h *Host) ensureImageIdentity(ctx context.Context, img target.Image, series, arch string, log io.Writer) (string, string, error) {
	if img.Type != "chroot" && img.Type != "lxd" {
		return "", "", fmt.Errorf("cannot use image %q: unknown image type %q", img.Path, img.Type)
	}
	lxcA, ok := lxcArch[arch]
	if !ok {
		return "", "", fmt.Errorf("cannot use image %q: unknown architecture %q", img.Path, arch)
	}
	h.importMu.Lock()
	defer h.importMu.Unlock()
	sum := strings.ToLower(img.SHA1)
	if sum == "" {
		var err error
		if sum, err = fileSHA1(img.Path); err != nil {
			return "", "", fmt.Errorf("cannot read image %q: %w", img.Path, err)
		}
	}
	cached, err := h.cachedImageRecord(sum)
	if err != nil {
		return "", "", err
	}
	if cached != nil && cached.Architecture != "" && cached.Architecture != lxcA {
		// Imported ahead of its build for the host's architecture
		// (Prepare), and the build is for another one.
		logf(log, "Re-importing chroot %s for %s (cached image %.12s is for %s)", sum, lxcA, cached.Fingerprint, cached.Architecture)
		op, err := h.srv.DeleteImage(cached.Fingerprint)
		if err := waitOp(ctx, op, err); err != nil && !isNotFound(err) {
			return "", "", fmt.Errorf("cannot delete image %q: %w", cached.Fingerprint, err)
		}
		cached = nil
	}
	var fp, baked string
	if cached != nil {
		fp, baked = cached.Fingerprint, cached.Properties[labelIdentity]
		logf(log, "Using cached LXD image %.12s for chroot %s", fp, sum)
	} else {
		start := time.Now()
		props := map[string]string{
			"architecture": arch,
			"description":  fmt.Sprintf("Launchpad chroot for Ubuntu %s (%s)", series, arch),
			"os":           "Ubuntu",
			"series":       series,
			labelInstance:  h.cfg.Instance,
			labelSHA1:      sum,
			labelSource:    img.Type,
		}
		if series == "" {
			// Imported ahead of its build (Prepare).
			props["description"] = fmt.Sprintf("Launchpad chroot (%s)", arch)
			delete(props, "series")
		}
		if img.Type == "chroot" {
			var bake *identityBaker
			if id, err := readHostIdentity(ctx, "/etc"); err == nil {
				bake = newIdentityBaker(id)
				baked = id.digest()
				props[labelIdentity] = baked
			} else {
				// Create reads it again and fails with the reason.
				h.log.Warn("cannot read the host identity for the image", "err", err)
			}
			fp, err = h.importChroot(ctx, img.Path, sum, imageMetadata{Architecture: lxcA, Properties: props}, bake)
		} else {
			fp, err = h.importUnified(ctx, img.Path, sum, props)
		}
		if err != nil {
			return "", "", err
		}
		h.imports.Add(1)
		logf(log, "Imported chroot %s as LXD image %.12s in %s", sum, fp, time.Since(start).Round(time.Millisecond))
	}
	if series != "" {
		if err := h.pointAlias(h.aliasName(series, arch), fp); err != nil {
			return "", "", err
		}
	}
	if err := h.pruneImages(ctx, fp); err != nil {
		// The build can go on; the next prune retries.
		h.log.Warn("cannot prune images", "err", err)
	}
	return fp, baked, nil
}

// cachedImage finds this Instance's image made from the file with this SHA-1.
func (h *Host) cachedImage(sum string) (string, error) {
	img, err := h.cachedImageRecord(sum)
	if err != nil || img == nil {
		return "", err
	}
	return img.Fingerprint, nil
}

func (h *Host) cachedImageRecord(sum string) (*api.Image, error) {
	ours, err := h.ourImages()
	if err != nil {
		return nil, err
	}
	for i := range ours {
		if ours[i].Properties[labelSHA1] == sum {
			return &ours[i], nil
		}
	}
	return nil, nil
}

// upload streams body into a new image and returns its fingerprint. produce
// writes the image into the pipe; its error wins over the upload's, since
// the upload fails because of it.
func (h *Host) upload(ctx context.Context, post api.ImagesPost, produce func(w io.Writer) error) (string, error) {
	pr, pw := io.Pipe()
	produced := make(chan error, 1)
	go func() {
		// Batched: the tar writer's many small writes (headers, padding)
		// would otherwise each be a pipe hand-off and an HTTP chunk.
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := produce(bw)
		if err == nil {
			err = bw.Flush()
		}
		produced <- err
		_ = pw.CloseWithError(err)
	}()
	stop := context.AfterFunc(ctx, func() { _ = pr.CloseWithError(ctx.Err()) })
	defer stop()
	op, err := h.srv.CreateImage(post, &lxdclient.ImageCreateArgs{MetaFile: pr, MetaName: "image.tar"})
	// Unblock the producer if LXD stopped reading early.
	_ = pr.CloseWithError(errors.New("upload finished"))
	perr := <-produced
	if perr != nil {
		return "", perr
	}
	if err = waitOp(ctx, op, err); err != nil {
		return "", err
	}
	fp, _ := op.Get().Metadata["fingerprint"].(string)
	if fp == "" {
		return "", errors.New("LXD returned no fingerprint")
	}
	return fp, nil
}

// importChroot converts a chroot tarball into a unified image on the fly,
// straight into LXD (no temporary copy), checking the file's SHA-1 on the
// way so a corrupt file never becomes a cached image. bake, if not nil,
// writes the host identity into it.
func (h *Host) importChroot(ctx context.Context, p, sum string, meta imageMetadata, bake *identityBaker) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("cannot open chroot tarball: %w", err)
	}
	defer f.Close()
	fp, err := h.upload(ctx, api.ImagesPost{}, func(w io.Writer) error {
		s := sha1.New()
		if err := convertChrootBaked(w, io.TeeReader(f, s), meta, bake); err != nil {
			return err
		}
		// Drain what the tar reader left (padding) so the checksum covers the file.
		if _, err := io.Copy(s, f); err != nil {
			return fmt.Errorf("cannot read chroot tarball: %w", err)
		}
		if got := hex.EncodeToString(s.Sum(nil)); got != sum {
			return fmt.Errorf("cannot import chroot tarball %q: SHA-1 is %s, expected %s", p, got, sum)
		}
		return nil
	})
	if err == nil {
		return fp, nil
	}
	if isConflict(err) {
		// An identical image (same instance, same chroot) appeared meanwhile.
		if fp, cerr := h.cachedImage(sum); cerr == nil && fp != "" {
			return fp, nil
		}
	}
	return "", fmt.Errorf("cannot import chroot tarball %q into LXD: %w", p, err)
}

// importUnified uploads a ready unified LXD image tarball unchanged; the
// labels travel as properties in the request.
func (h *Host) importUnified(ctx context.Context, p, sum string, props map[string]string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("cannot open LXD image: %w", err)
	}
	defer f.Close()
	fp, err := h.upload(ctx, api.ImagesPost{ImagePut: api.ImagePut{Properties: props}}, func(w io.Writer) error {
		s := sha1.New()
		if _, err := io.Copy(io.MultiWriter(w, s), f); err != nil {
			return fmt.Errorf("cannot read LXD image: %w", err)
		}
		if got := hex.EncodeToString(s.Sum(nil)); got != sum {
			return fmt.Errorf("cannot import LXD image %q: SHA-1 is %s, expected %s", p, got, sum)
		}
		return nil
	})
	if err == nil {
		return fp, nil
	}
	if isConflict(err) {
		// The same file is already an image (perhaps not ours): use it
		// without claiming it, so pruning never deletes it.
		if _, serr := f.Seek(0, io.SeekStart); serr == nil {
			s := sha256.New()
			if _, cerr := io.Copy(s, f); cerr == nil {
				fp := hex.EncodeToString(s.Sum(nil))
				h.log.Info("using an existing identical image", "fingerprint", fp)
				return fp, nil
			}
		}
	}
	return "", fmt.Errorf("cannot import LXD image %q: %w", p, err)
}

// pointAlias makes alias name point at fingerprint fp.
func (h *Host) pointAlias(name, fp string) error {
	for range 2 {
		a, etag, err := h.srv.GetImageAlias(name)
		if isNotFound(err) {
			err = h.srv.CreateImageAlias(api.ImageAliasesPost{ImageAliasesEntry: api.ImageAliasesEntry{
				Name:        name,
				Description: name,
				Target:      fp,
			}})
			if isConflict(err) {
				continue // created meanwhile: look again
			}
			if err != nil {
				return fmt.Errorf("cannot create image alias %q: %w", name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot get image alias %q: %w", name, err)
		}
		if a.Target == fp {
			return nil
		}
		put := api.ImageAliasesEntryPut{Description: a.Description, Target: fp}
		if err := h.srv.UpdateImageAlias(name, put, etag); err != nil {
			return fmt.Errorf("cannot update image alias %q: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("cannot create image alias %q: it keeps changing", name)
}

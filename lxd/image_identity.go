package lxd

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// The host identity (identity.go: hostname, hosts, resolv.conf,
// policy-rc.d, the snapd settings) is written into the image when a chroot
// is converted, so that Create need not write it through LXD's file API.
// Each file call on a stopped container runs a forkfile helper that
// syncfs()es the whole freshly unpacked rootfs when its connection closes,
// and the container's start waits for that helper to exit (polling once a
// second): 0.3 s in Create and 1–2 s in the first start, on every build.
// The files are the same for every build on this host, so they can be part
// of the cached image; the image's labelIdentity says for which identity,
// and Create falls back to the file API when the host's has changed since.

// labelIdentity is the digest of the host identity baked into an image.
const labelIdentity = "user.buildd-agent.identity"

// identityVersion names the set of files and their contents' rules: change
// it with writeIdentity, so that images baked by an older agent get their
// identity written by the file API again.
const identityVersion = "1"

// maxImageHosts bounds the image's own /etc/hosts, which is read into memory.
const maxImageHosts = 16 << 20

// digest identifies the identity files this host writes into a container
// (the image's own /etc/hosts is covered by the chroot's SHA-1).
func (id hostIdentity) digest() string {
	s := sha256.New()
	for _, f := range [][]byte{[]byte(identityVersion), []byte(id.hostname), []byte(id.fqdn), []byte(id.resolvMode.String()), id.resolvConf} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		s.Write(n[:])
		s.Write(f)
	}
	return hex.EncodeToString(s.Sum(nil))
}

// bakedFile is one identity file as an image member.
type bakedFile struct {
	name  string // rootfs-relative, as writeIdentity's path without the "/"
	typ   byte   // tar.TypeReg or tar.TypeSymlink
	mode  int64
	body  []byte
	link  string
	hosts bool // body is computed from the image's own /etc/hosts
	done  bool
}

// identityBaker rewrites a chroot's member stream so that the image has
// exactly what writeIdentity would leave in the container: each identity
// file replaces the chroot's member of that name where it is (a symlink is
// replaced, never written through; hard links to it then see the new file),
// missing parent directories (root, 0755) and files are added at the end.
// What writeIdentity refuses (a directory where a file goes, a non-directory
// where a directory goes) fails the conversion, as it would fail Create.
type identityBaker struct {
	id    hostIdentity
	files map[string]*bakedFile
	order []string        // files, in writeIdentity's order
	dirs  []string        // parents, outermost first
	seen  map[string]bool // parents the chroot has
}

func newIdentityBaker(id hostIdentity) *identityBaker {
	b := &identityBaker{id: id, files: map[string]*bakedFile{}, seen: map[string]bool{}}
	add := func(f *bakedFile) {
		f.name = strings.TrimPrefix(f.name, "/")
		b.files[f.name] = f
		b.order = append(b.order, f.name)
		for d := parentDir(f.name); d != ""; d = parentDir(d) {
			if !contains(b.dirs, d) {
				b.dirs = append(b.dirs, d)
			}
		}
	}
	add(&bakedFile{name: "/etc/hosts", typ: tar.TypeReg, mode: 0o644, hosts: true})
	add(&bakedFile{name: "/etc/hostname", typ: tar.TypeReg, mode: 0o644, body: []byte(id.hostname + "\n")})
	add(&bakedFile{name: "/etc/resolv.conf", typ: tar.TypeReg, mode: int64(id.resolvMode.Perm()), body: id.resolvConf})
	add(&bakedFile{name: policyRCPath, typ: tar.TypeReg, mode: 0o755, body: []byte(policyRC)})
	add(&bakedFile{name: snapdNoCDNPath, typ: tar.TypeReg, mode: 0o644, body: []byte(snapdNoCDN)})
	add(&bakedFile{name: snapdRefreshTmr, typ: tar.TypeSymlink, mode: 0o777, link: "/dev/null"})
	// Outermost first, so that the added directories extract in order.
	sort.Slice(b.dirs, func(i, j int) bool {
		di, dj := strings.Count(b.dirs[i], "/"), strings.Count(b.dirs[j], "/")
		return di < dj || di == dj && b.dirs[i] < b.dirs[j]
	})
	return b
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// member looks at one converted member (h, its body still unread in r). It
// returns the member to write instead, or nil to keep it.
func (b *identityBaker) member(h *tar.Header, r io.Reader) (*tar.Header, []byte, error) {
	n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "rootfs/"), "/")
	if n == "" {
		return nil, nil, nil
	}
	for _, d := range b.dirs {
		switch {
		case n == d:
			if h.Typeflag != tar.TypeDir {
				return nil, nil, fmt.Errorf("cannot write the host identity into the image: /%s is not a directory", d)
			}
			b.seen[d] = true
		case strings.HasPrefix(n, d+"/"):
			b.seen[d] = true
		}
	}
	for _, f := range b.order {
		if strings.HasPrefix(n, f+"/") {
			return nil, nil, fmt.Errorf("cannot write the host identity into the image: /%s is a directory", f)
		}
	}
	f, ok := b.files[n]
	if !ok {
		return nil, nil, nil
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return nil, nil, fmt.Errorf("cannot write the host identity into the image: /%s is a directory", n)
	case tar.TypeLink:
		// Its content is another member's: writeIdentity would read the
		// hosts through the link and replace the name alone.
		return nil, nil, fmt.Errorf("cannot write the host identity into the image: /%s is a hard link", n)
	}
	if f.hosts {
		var own []byte
		if h.Typeflag == tar.TypeReg {
			if h.Size > maxImageHosts {
				return nil, nil, fmt.Errorf("cannot write the host identity into the image: /%s is larger than %d bytes", n, maxImageHosts)
			}
			var err error
			if own, err = io.ReadAll(io.LimitReader(r, h.Size)); err != nil {
				return nil, nil, fmt.Errorf("cannot read chroot member %q: %w", h.Name, err)
			}
		}
		// A symlink or device is replaced and its target ignored, as
		// writeIdentity's readFile refuses to follow it.
		f.body = containerHosts(own, b.id.hostname, b.id.fqdn)
	}
	f.done = true
	out, body := f.header(h.ModTime)
	return out, body, nil
}

func (f *bakedFile) header(mtime time.Time) (*tar.Header, []byte) {
	h := &tar.Header{Name: "rootfs/" + f.name, Typeflag: f.typ, Mode: f.mode, ModTime: mtime}
	if f.typ == tar.TypeSymlink {
		h.Linkname = f.link
		return h, nil
	}
	h.Size = int64(len(f.body))
	return h, f.body
}

// finish writes the parent directories the chroot lacks, then the files it
// did not have.
func (b *identityBaker) finish(tw *tar.Writer, mtime time.Time) error {
	for _, d := range b.dirs {
		if b.seen[d] {
			continue
		}
		h := &tar.Header{Name: "rootfs/" + d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("cannot write image member %q: %w", h.Name, err)
		}
	}
	for _, n := range b.order {
		f := b.files[n]
		if f.done {
			continue
		}
		if f.hosts {
			f.body = containerHosts(nil, b.id.hostname, b.id.fqdn)
		}
		h, body := f.header(mtime)
		if err := writeMember(tw, h, body); err != nil {
			return err
		}
	}
	return nil
}

func writeMember(tw *tar.Writer, h *tar.Header, body []byte) error {
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("cannot write image member %q: %w", h.Name, err)
	}
	if _, err := io.Copy(tw, bytes.NewReader(body)); err != nil {
		return fmt.Errorf("cannot write image member %q: %w", h.Name, err)
	}
	return nil
}

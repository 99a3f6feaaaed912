package lxd

import "github.com/buildd-agent/buildd-agent/rootfs"

// capsToV2 normalises a file's capabilities (security.capability, v1, v2
// or v3) carried from a chroot tarball into an LXD image to v2, keeping the
// effective flag and dropping any v3 rootid. The image's rootfs is in host
// terms and LXD shifts it (rewriting fcaps for the container's root) on the
// first start of an unprivileged container, so a v2 value is what it
// expects; a v3 value made in some other user namespace (a rootid foreign to
// this host) would otherwise apply nowhere.
//
// The codec is rootfs' (one implementation of the kernel's rules). This is
// the one place lxd imports a sibling package rather than only
// builders/target: rootfs imports nothing of ours but builders/target, so
// no cycle can form.
func capsToV2(raw []byte) ([]byte, error) {
	c, err := rootfs.DecodeCaps(raw)
	if err != nil {
		return nil, err
	}
	return c.EncodeV2(), nil
}

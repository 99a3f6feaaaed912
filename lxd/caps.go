package lxd

import (
	"encoding/binary"
	"fmt"
)

// File capabilities (security.capability) carried from a chroot tarball into
// an LXD image. The image's rootfs is in host terms, and LXD shifts it (and
// rewrites fcaps for the container's root) on the first start of an
// unprivileged container, so every value is normalised to v2: a v3 value
// made in some user namespace (its rootid foreign to this host) would
// otherwise apply nowhere, or be refused.
//
// TODO(lead): the rootfs package is to export the same codec
// (rootfs.DecodeCaps + Caps.EncodeV2). The brief's layering rule forbids lxd
// from importing rootfs, so this small copy stays here unless that rule is
// relaxed; the switch is the one call in capsToV2.

const (
	vfsCapRevisionMask = 0xFF000000
	vfsCapRevision1    = 0x01000000
	vfsCapRevision2    = 0x02000000
	vfsCapRevision3    = 0x03000000
	vfsCapFlagsEff     = 0x000001
	xattrCapsSzV1      = 12
	xattrCapsSzV2      = 20
	xattrCapsSzV3      = 24
)

// capsToV2 decodes a raw security.capability value (v1, v2 or v3) and
// re-encodes it as v2 (rootid dropped), keeping the effective flag.
func capsToV2(raw []byte) ([]byte, error) {
	if len(raw) < 4 {
		return nil, fmt.Errorf("invalid file capabilities: %d bytes", len(raw))
	}
	magic := binary.LittleEndian.Uint32(raw)
	rev, flags := magic&vfsCapRevisionMask, magic&^vfsCapRevisionMask
	if flags&^vfsCapFlagsEff != 0 {
		return nil, fmt.Errorf("invalid file capabilities: unknown flags %#x", flags)
	}
	want := map[uint32]int{vfsCapRevision1: xattrCapsSzV1, vfsCapRevision2: xattrCapsSzV2, vfsCapRevision3: xattrCapsSzV3}[rev]
	if want == 0 {
		return nil, fmt.Errorf("invalid file capabilities: unknown revision %#x", rev>>24)
	}
	if len(raw) != want {
		return nil, fmt.Errorf("invalid file capabilities: revision %d with %d bytes", rev>>24, len(raw))
	}
	out := make([]byte, xattrCapsSzV2)
	binary.LittleEndian.PutUint32(out, vfsCapRevision2|flags)
	copy(out[4:12], raw[4:12]) // permitted and inheritable, caps 0-31
	if rev != vfsCapRevision1 {
		copy(out[12:20], raw[12:20]) // caps 32-63; v1 has none
	}
	return out, nil
}

package rootfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CapsXattr is the extended attribute that holds a file's capabilities.
const CapsXattr = "security.capability"

// Layout of security.capability (uapi linux/capability.h). Every field is a
// little-endian u32: magic_etc, then {permitted, inheritable} for caps 0-31,
// then (v2, v3) the same for caps 32-63, then (v3) the namespace root uid.
const (
	vfsCapRevisionMask = 0xFF000000
	vfsCapRevision1    = 0x01000000
	vfsCapRevision2    = 0x02000000
	vfsCapRevision3    = 0x03000000
	vfsCapFlagsMask    = ^uint32(vfsCapRevisionMask)
	vfsCapFlagsEff     = 0x000001

	capsSizeV1 = 12
	capsSizeV2 = 20
	capsSizeV3 = 24
)

// Caps is a decoded security.capability value.
//
// The effective "set" of a file is a single flag: when it is set, the
// permitted and inheritable capabilities the file grants are raised in the
// effective set at exec.
type Caps struct {
	Permitted, Inheritable uint64
	Effective              bool
	// RootID is the host uid of the root of the user namespace the
	// capabilities belong to (v3 only; 0 for v1 and v2, which belong to the
	// filesystem's own namespace and apply in all its descendants).
	RootID uint32
	// Version is the revision the value was decoded from: 1, 2 or 3.
	Version int
}

// ErrBadCaps is wrapped by DecodeCaps's errors.
var ErrBadCaps = errors.New("invalid security.capability value")

// DecodeCaps decodes a raw security.capability value: v1 (12 bytes), v2 (20
// bytes) or v3 (24 bytes, with the namespace root id). The size must match
// the revision and no flag other than "effective" may be set, as the kernel
// requires.
func DecodeCaps(raw []byte) (Caps, error) {
	if len(raw) < 4 {
		return Caps{}, fmt.Errorf("%w: %d bytes", ErrBadCaps, len(raw))
	}
	le := binary.LittleEndian
	magic := le.Uint32(raw)
	if flags := magic & vfsCapFlagsMask; flags&^vfsCapFlagsEff != 0 {
		return Caps{}, fmt.Errorf("%w: unknown flags %#x", ErrBadCaps, flags)
	}
	c := Caps{Effective: magic&vfsCapFlagsEff != 0}
	rev := magic & vfsCapRevisionMask
	var want int
	switch rev {
	case vfsCapRevision1:
		c.Version, want = 1, capsSizeV1
	case vfsCapRevision2:
		c.Version, want = 2, capsSizeV2
	case vfsCapRevision3:
		c.Version, want = 3, capsSizeV3
	default:
		return Caps{}, fmt.Errorf("%w: unknown revision %#x", ErrBadCaps, rev)
	}
	if len(raw) != want {
		return Caps{}, fmt.Errorf("%w: revision %d needs %d bytes, got %d", ErrBadCaps, c.Version, want, len(raw))
	}
	c.Permitted = uint64(le.Uint32(raw[4:]))
	c.Inheritable = uint64(le.Uint32(raw[8:]))
	if c.Version >= 2 {
		c.Permitted |= uint64(le.Uint32(raw[12:])) << 32
		c.Inheritable |= uint64(le.Uint32(raw[16:])) << 32
	}
	if c.Version == 3 {
		c.RootID = le.Uint32(raw[20:])
	}
	return c, nil
}

func (c Caps) encode(size int, rev uint32, rootid uint32) []byte {
	b := make([]byte, size)
	le := binary.LittleEndian
	magic := rev
	if c.Effective {
		magic |= vfsCapFlagsEff
	}
	le.PutUint32(b, magic)
	le.PutUint32(b[4:], uint32(c.Permitted))
	le.PutUint32(b[8:], uint32(c.Inheritable))
	le.PutUint32(b[12:], uint32(c.Permitted>>32))
	le.PutUint32(b[16:], uint32(c.Inheritable>>32))
	if size == capsSizeV3 {
		le.PutUint32(b[20:], rootid)
	}
	return b
}

// EncodeV2 encodes c as a 20-byte v2 value: capabilities that apply in the
// filesystem's namespace and all its descendants. A v1 value is upgraded
// (high words zero); a v3 value's root id is dropped, the effective flag is
// kept.
func (c Caps) EncodeV2() []byte { return c.encode(capsSizeV2, vfsCapRevision2, 0) }

// EncodeV3 encodes c as a 24-byte v3 value owned by the user namespace whose
// root is the host uid rootid.
func (c Caps) EncodeV3(rootid uint32) []byte {
	return c.encode(capsSizeV3, vfsCapRevision3, rootid)
}

// Encode encodes c in its own version (v1 is upgraded to v2, which the kernel
// requires on write): v3 keeps its RootID.
func (c Caps) Encode() []byte {
	if c.Version == 3 {
		return c.EncodeV3(c.RootID)
	}
	return c.EncodeV2()
}

// ForNamespace returns c as a v3 value for a user namespace mapped by uids:
// the root id becomes the host uid of the namespace's root, so the
// capabilities apply inside that namespace (and its descendants) and
// nowhere else. A v3 value whose root id came from another machine is
// normalised: the tarball's own namespace root is taken as its owner.
func (c Caps) ForNamespace(uids []IDMap) ([]byte, error) {
	root, ok := MapToHost(uids, 0)
	if !ok {
		return nil, fmt.Errorf("cannot shift file capabilities: uid 0 is not mapped")
	}
	return c.EncodeV3(root), nil
}

// FromNamespace converts a value read on the host from a shifted tree back
// to the namespace's view: a v3 value owned by the namespace root becomes
// v2; a v3 owned by another mapped uid is rewritten with that uid as seen in
// the namespace (the kernel's view from inside); v1/v2 are returned as v2.
func (c Caps) FromNamespace(uids []IDMap) ([]byte, error) {
	if c.Version != 3 {
		return c.EncodeV2(), nil
	}
	ns, ok := MapFromHost(uids, c.RootID)
	if !ok {
		return nil, fmt.Errorf("cannot unshift file capabilities: root id %d is not in the namespace", c.RootID)
	}
	if ns == 0 {
		return c.EncodeV2(), nil
	}
	return c.EncodeV3(ns), nil
}

// capNames are libcap's names, indexed by capability number (Linux 6.x
// knows 0-40; libcap 2.66 in Debian 12 names the same).
var capNames = [...]string{
	"cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner",
	"cap_fsetid", "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap",
	"cap_linux_immutable", "cap_net_bind_service", "cap_net_broadcast",
	"cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner",
	"cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
	"cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
	"cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod",
	"cap_lease", "cap_audit_write", "cap_audit_control", "cap_setfcap",
	"cap_mac_override", "cap_mac_admin", "cap_syslog", "cap_wake_alarm",
	"cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf",
	"cap_checkpoint_restore",
}

// CapName is libcap's name of capability n ("cap_net_raw"), or its number.
func CapName(n int) string {
	if n >= 0 && n < len(capNames) {
		return capNames[n]
	}
	return strconv.Itoa(n)
}

// CapByName is the inverse of CapName.
func CapByName(name string) (int, bool) {
	for i, n := range capNames {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// libcap's flag bits in cap_to_text.
const (
	txtEff = 1
	txtInh = 2
	txtPer = 4
)

func (c Caps) state(n int) int {
	var s int
	bit := uint64(1) << uint(n)
	if c.Permitted&bit != 0 {
		s |= txtPer
	}
	if c.Inheritable&bit != 0 {
		s |= txtInh
	}
	// libcap loads a file's effective set as permitted|inheritable when the
	// effective flag is set.
	if c.Effective && s != 0 {
		s |= txtEff
	}
	return s
}

func flagLetters(s int) string {
	var b strings.Builder
	if s&txtEff != 0 {
		b.WriteByte('e')
	}
	if s&txtInh != 0 {
		b.WriteByte('i')
	}
	if s&txtPer != 0 {
		b.WriteByte('p')
	}
	return b.String()
}

// String renders c the way getcap (libcap2-bin 2.66, Debian 12) prints it
// after the file name, "cap_net_raw=ep" or "cap_chown,cap_net_raw=ep
// cap_kill+i": it is libcap's cap_to_text algorithm (most common state as
// the base, then one clause per other state, highest first). The root id
// is not part of it (see StringWithRootID).
func (c Caps) String() string {
	known := len(capNames)
	var histo [8]int
	for n := 0; n < known; n++ {
		histo[c.state(n)]++
	}
	m := 7
	for t := 6; t >= 0; t-- {
		if histo[t] >= histo[m] {
			m = t
		}
	}
	buf := "=" + flagLetters(m)
	base := 0
	for t := 7; t >= 0; t-- {
		if t == m || histo[t] == 0 {
			continue
		}
		var names []string
		for n := 0; n < known; n++ {
			if c.state(n) == t {
				names = append(names, capNames[n])
			}
		}
		buf += " " + strings.Join(names, ",")
		if add := t &^ m; add != 0 {
			op := "+"
			if buf[base] == '=' && len(buf) > base+1 && buf[base+1] == ' ' {
				// libcap: "= foo+ep" is written "foo=ep".
				base += 2
				op = "="
			}
			buf += op + flagLetters(add)
		}
		if drop := ^t & m; drop != 0 {
			buf += "-" + flagLetters(drop)
		}
	}
	// Bits libcap has no name for are listed by number, always with "+".
	var hi [8]int
	for n := known; n < 64; n++ {
		hi[c.state(n)]++
	}
	for t := 7; t >= 1; t-- {
		if hi[t] == 0 {
			continue
		}
		var names []string
		for n := known; n < 64; n++ {
			if c.state(n) == t {
				names = append(names, strconv.Itoa(n))
			}
		}
		buf += " " + strings.Join(names, ",") + "+" + flagLetters(t)
	}
	return buf[base:]
}

// StringWithRootID is what `getcap -n` prints: String plus
// " [rootid=N]" for a v3 value with a non-zero root id.
func (c Caps) StringWithRootID() string {
	if c.Version == 3 && c.RootID != 0 {
		return fmt.Sprintf("%s [rootid=%d]", c, c.RootID)
	}
	return c.String()
}

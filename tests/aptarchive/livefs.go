package aptarchive

import "testing"

// LiveFSDebs returns the directory of cached .debs of the "livefs" set:
// the BaseDebs closure plus Debian's live-build, debootstrap and
// squashfs-tools (what a livefs build installs with the livecd-rootfs
// stand-in).
func LiveFSDebs(t testing.TB) string { t.Helper(); return cachedDebs(t, "livefs") }

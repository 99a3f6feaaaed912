package aptarchive

import "testing"

// ClamAVDebs returns the directory of cached .debs of the "clamav" set: the
// BaseDebs closure plus Debian's clamav, clamav-freshclam and libclamav
// (what a ci build with scan_malware installs).
func ClamAVDebs(t testing.TB) string { t.Helper(); return cachedDebs(t, "clamav") }

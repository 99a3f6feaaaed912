package rootfs

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// TestUnpackMatchesGNUTar unpacks the real debootstrap chroot tarball with
// Unpack (shifted by 1000000) and with GNU tar as root, and compares the
// trees entry by entry: type, mode (setuid bits included), owner + shift,
// size, mtime, symlink target, hard links, capabilities (v2 there, v3
// owned by the namespace root here).
func TestUnpackMatchesGNUTar(t *testing.T) {
	testenv.RequireRoot(t)
	tarball := testenv.ChrootTarball(t)
	work := t.TempDir()
	ref := filepath.Join(work, "ref")
	os.Mkdir(ref, 0o755)
	if out, err := exec.Command("tar", "-C", ref, "-xf", tarball, "--xattrs", "--xattrs-include=*", "--numeric-owner").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	ref = filepath.Join(ref, ChrootPrefix)
	ours := filepath.Join(work, "ours")
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := Unpack(context.Background(), f, ours, UnpackOptions{IDs: testIDs})
	if err != nil {
		t.Fatal(err)
	}
	if st.Caps == 0 || st.Hardlinks == 0 {
		t.Errorf("stats = %+v", st)
	}
	seen := 0
	inodes := map[[2]uint64]string{}
	err = filepath.WalkDir(ref, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(ref, p)
		rfi, _ := os.Lstat(p)
		if rfi.Mode()&fs.ModeDevice != 0 {
			if _, err := os.Lstat(filepath.Join(ours, rel)); err == nil {
				t.Errorf("%s: device node created", rel)
			}
			return nil
		}
		ofi, err := os.Lstat(filepath.Join(ours, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		seen++
		rs, os_ := rfi.Sys().(*syscall.Stat_t), ofi.Sys().(*syscall.Stat_t)
		if rfi.Mode() != ofi.Mode() || os_.Uid != rs.Uid+1000000 || os_.Gid != rs.Gid+1000000 {
			t.Errorf("%s: %v %d:%d, tar %v %d:%d", rel, ofi.Mode(), os_.Uid, os_.Gid, rfi.Mode(), rs.Uid, rs.Gid)
		}
		if rfi.Mode().IsRegular() && (rfi.Size() != ofi.Size() || rs.Nlink != os_.Nlink) {
			t.Errorf("%s: size %d links %d, tar %d links %d", rel, ofi.Size(), os_.Nlink, rfi.Size(), rs.Nlink)
		}
		if rfi.Mode()&fs.ModeSymlink == 0 && !rfi.ModTime().Equal(ofi.ModTime()) {
			t.Errorf("%s: mtime %v, tar %v", rel, ofi.ModTime(), rfi.ModTime())
		}
		if rfi.Mode()&fs.ModeSymlink != 0 {
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(filepath.Join(ours, rel))
			if a != b {
				t.Errorf("%s: -> %q, tar -> %q", rel, b, a)
			}
			return nil
		}
		if rs.Nlink > 1 && rfi.Mode().IsRegular() {
			// Hard-linked files stay one inode, the same group as tar's.
			k := [2]uint64{rs.Ino, 0}
			if first, ok := inodes[k]; ok {
				a, _ := os.Lstat(filepath.Join(ours, first))
				if !os.SameFile(a, ofi) {
					t.Errorf("%s: not a hard link of %s", rel, first)
				}
			} else {
				inodes[k] = rel
			}
		}
		if rfi.Mode().IsRegular() {
			rc, rok, _ := GetCaps(p)
			oc, ook, err := GetCaps(filepath.Join(ours, rel))
			if err != nil || rok != ook {
				t.Errorf("%s: caps %v %v, tar %v", rel, ook, err, rok)
			} else if rok {
				want := rc
				want.Version, want.RootID = 3, 1000000
				if oc != want {
					t.Errorf("%s: caps %+v, want %+v", rel, oc, want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 10000 {
		t.Errorf("compared only %d entries", seen)
	}
	t.Logf("%d entries compared; %+v", seen, st)
}

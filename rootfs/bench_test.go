package rootfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"golang.org/x/sys/unix"
)

// BenchmarkUnpackChroot unpacks the debootstrap chroot tarball with the id
// shift and capabilities, against the floor of GNU tar extracting the same
// file as root (no shift) in the same run. Reports the ratio as x-floor.
func BenchmarkUnpackChroot(b *testing.B) {
	testenv.RequireRoot(b)
	tarball := testenv.ChrootTarball(b)
	testenv.RequireCommand(b, "tar")
	work := b.TempDir()
	// Warm the page cache for both.
	if data, err := os.ReadFile(tarball); err != nil || len(data) == 0 {
		b.Fatal(err)
	}
	// ABBA order, best of two each: the machine is shared, and writeback
	// of one run must not be charged to the other.
	runTar := func(dir string) time.Duration {
		os.MkdirAll(dir, 0o755)
		start := time.Now()
		cmd := exec.Command("tar", "-C", dir, "-xf", tarball, "--xattrs", "--xattrs-include=*", "--numeric-owner")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, out)
		}
		return time.Since(start)
	}
	runOurs := func(dir string) time.Duration {
		f, err := os.Open(tarball)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		start := time.Now()
		st, err := Unpack(context.Background(), f, dir, UnpackOptions{IDs: testIDs})
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if st.Caps == 0 {
			b.Fatal("no capabilities restored")
		}
		return d
	}
	var ours, floor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		best := map[string]time.Duration{}
		for _, which := range []string{"tar", "ours", "ours", "tar"} {
			dir := filepath.Join(work, which)
			b.StopTimer()
			unix.Sync()
			b.StartTimer()
			var d time.Duration
			if which == "tar" {
				d = runTar(dir)
			} else {
				d = runOurs(dir)
			}
			if best[which] == 0 || d < best[which] {
				best[which] = d
			}
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
		ours += best["ours"]
		floor += best["tar"]
	}
	b.ReportMetric(ours.Seconds()/float64(b.N), "s-unpack")
	b.ReportMetric(floor.Seconds()/float64(b.N), "s-tar")
	b.ReportMetric(float64(ours)/float64(floor), "x-floor")
}

// BenchmarkSecureBindMount compares one secure bind mount (in-root
// resolution of the target, open_tree/move_mount or fd mount, mount-id
// and flag verification, unmount by descriptor) with a plain mount(2) bind
// and umount2 by path, in a private mount namespace.
func BenchmarkSecureBindMount(b *testing.B) {
	root := b.TempDir()
	makeTree(b, root, "dir src", "dir a/b/target")
	const inner = 1000
	var secure, plain, plainRW time.Duration
	inPrivateMountNS(b, func() {
		r, _ := OpenRoot(root)
		defer r.Close()
		src, _ := r.OpenDir("src")
		defer src.Close()
		srcPath, dstPath := filepath.Join(root, "src"), filepath.Join(root, "a/b/target")
		// Interleaved, one of each per round, so that load from other
		// processes falls on all three alike.
		for i := 0; i < b.N*inner; i++ {
			start := time.Now()
			if err := unix.Mount(srcPath, dstPath, "", unix.MS_BIND, ""); err != nil {
				b.Error(err)
				return
			}
			if err := unix.Mount("", dstPath, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
				b.Error(err)
				return
			}
			if err := unix.Unmount(dstPath, unix.MNT_DETACH); err != nil {
				b.Error(err)
				return
			}
			plain += time.Since(start)

			// The bare floor: bind and unmount, no read-only step.
			start = time.Now()
			if err := unix.Mount(srcPath, dstPath, "", unix.MS_BIND, ""); err != nil {
				b.Error(err)
				return
			}
			if err := unix.Unmount(dstPath, unix.MNT_DETACH); err != nil {
				b.Error(err)
				return
			}
			plainRW += time.Since(start)

			start = time.Now()
			dst, err := r.OpenDir("a/b/target")
			if err != nil {
				b.Error(err)
				return
			}
			m, err := BindMount(int(src.Fd()), int(dst.Fd()), MountFlags{ReadOnly: true})
			dst.Close()
			if err != nil {
				b.Error(err)
				return
			}
			if err := Unmount(m); err != nil {
				b.Error(err)
				return
			}
			m.Close()
			secure += time.Since(start)
		}
	})
	n := float64(b.N * inner)
	b.ReportMetric(float64(secure.Microseconds())/n, "µs-secure")
	b.ReportMetric(float64(plain.Microseconds())/n, "µs-plain")
	b.ReportMetric(float64(plainRW.Microseconds())/n, "µs-plain-rw")
	b.ReportMetric(float64(secure)/float64(plain), "x-floor")
	b.ReportMetric(float64(secure)/float64(plainRW), "x-floor-rw")
}

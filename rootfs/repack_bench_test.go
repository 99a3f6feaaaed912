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

// BenchmarkRepackChroot repacks the test chroot (gzip, "chroot-autobuild/"
// prefix) into sbuild's unshare tarball, against two floors measured in
// the same run:
//   - tar: what an operator does by hand (managers-feasibility.md §2):
//     `tar -xzf` into a directory, then `tar -C …/chroot-autobuild
//     --numeric-owner -cf out.tar .` (device nodes fail to extract
//     unprivileged, so the floor runs as root and keeps them);
//   - gunzip: `gzip -dc > out.tar`, the least any conversion of this input
//     can do (decompress and write the same bytes once).
//
// Reports x-tar and x-gunzip (ours / floor); ABBA order, best of two each.
func BenchmarkRepackChroot(b *testing.B) {
	testenv.RequireRoot(b)
	tarball := testenv.ChrootTarball(b)
	testenv.RequireCommand(b, "tar")
	testenv.RequireCommand(b, "gzip")
	work := b.TempDir()
	if data, err := os.ReadFile(tarball); err != nil || len(data) == 0 {
		b.Fatal(err)
	}
	out := filepath.Join(work, "out.tar")
	sh := func(script string) time.Duration {
		start := time.Now()
		if o, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v %s", script, err, o)
		}
		return time.Since(start)
	}
	runs := map[string]func() time.Duration{
		"tar": func() time.Duration {
			dir := filepath.Join(work, "tree")
			os.MkdirAll(dir, 0o755)
			defer os.RemoveAll(dir)
			return sh("tar -C " + dir + " -xzf " + tarball + " --numeric-owner && tar -C " + dir +
				"/chroot-autobuild --numeric-owner -cf " + out + " .")
		},
		"gunzip": func() time.Duration { return sh("gzip -dc " + tarball + " > " + out) },
		"ours": func() time.Duration {
			in, err := os.Open(tarball)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			w, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			start := time.Now()
			if _, err := Repack(context.Background(), in, w, RepackOptions{ExtraDirs: []string{"/srv/buildd-agent"}}); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		},
	}
	total := map[string]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		best := map[string]time.Duration{}
		for _, which := range []string{"tar", "gunzip", "ours", "ours", "gunzip", "tar"} {
			b.StopTimer()
			os.Remove(out)
			unix.Sync()
			b.StartTimer()
			d := runs[which]()
			if best[which] == 0 || d < best[which] {
				best[which] = d
			}
		}
		for k, v := range best {
			total[k] += v
		}
	}
	n := float64(b.N)
	b.ReportMetric(total["ours"].Seconds()/n, "s-repack")
	b.ReportMetric(total["tar"].Seconds()/n, "s-tar")
	b.ReportMetric(total["gunzip"].Seconds()/n, "s-gunzip")
	b.ReportMetric(float64(total["ours"])/float64(total["tar"]), "x-tar")
	b.ReportMetric(float64(total["ours"])/float64(total["gunzip"]), "x-gunzip")
}

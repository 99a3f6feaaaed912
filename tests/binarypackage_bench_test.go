package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/rootfs"
	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// BenchmarkBinaryPackageBuild: the agent's whole binarypackage build
// (`buildd-agent build binarypackage`: the same manager the daemon runs,
// from the .dsc to the gathered results) against the floor of the same
// sbuild command run by hand on the same inputs, as the same user, from
// the same repacked chroot, with an ~/.sbuildrc that does what the
// agent's does (launchpad-buildd's settings, unshare mode, the archive and
// dpkg's force-unsafe-io written by a chroot-setup command). The chroot is repacked before the
// timing (a one-time cost per chroot, BenchmarkRepackChroot). ABBA order,
// best of two each. Reports x-floor.
func BenchmarkBinaryPackageBuild(b *testing.B) {
	testenv.RequireRoot(b)
	for _, c := range []string{"sbuild", "runuser", "dpkg-source"} {
		testenv.RequireCommand(b, c)
	}
	bin := snapE2EBinary(b)
	archive := aptarchive.Build(b, aptarchive.Options{})
	url := archive.Serve(b, "127.0.0.1:0")
	line := fmt.Sprintf("deb [trusted=yes] %s %s %s", url, archive.Suite, archive.Component)
	work, err := os.MkdirTemp("/var/tmp", "bp-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(work) })
	os.Chmod(work, 0o755)
	src := filepath.Join(work, "src")
	os.MkdirAll(src, 0o755)
	dsc := aptarchive.SourcePackage(b, src, aptarchive.Hello)
	files, err := aptarchive.Files(dsc)
	if err != nil {
		b.Fatal(err)
	}
	chroot := testenv.ChrootTarball(b)
	state := filepath.Join(work, "state")
	cache := filepath.Join(state, "sbuild-chroots")
	os.MkdirAll(cache, 0o755)
	repacked := filepath.Join(cache, fileSHA1(b, chroot)+".tar")
	{
		in, _ := os.Open(chroot)
		out, _ := os.Create(repacked)
		if _, err := rootfs.Repack(context.Background(), in, out, rootfs.RepackOptions{ExtraDirs: []string{"/srv/buildd-agent"}}); err != nil {
			b.Fatal(err)
		}
		in.Close()
		out.Close()
		os.Chmod(repacked, 0o644)
	}
	conf := filepath.Join(work, "agent.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf("[builder]\nstate_dir = %q\nbackend = \"chroot\"\n\n[sbuild]\nuser = %q\n", state, bpE2EUser)), 0o644)

	ours := func(i int) time.Duration {
		out := filepath.Join(work, fmt.Sprintf("out-%d", i))
		start := time.Now()
		cmd := exec.Command(bin, "build", "binarypackage", "--config", conf, "--dsc", dsc, "--chroot", chroot,
			"--series", "bookworm", "--archive", line, "--output", out)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("buildd-agent build binarypackage: %v\n%s", err, lastLines(string(o), 40))
		}
		d := time.Since(start)
		var sum struct{ Status string }
		data, _ := os.ReadFile(filepath.Join(out, "summary.json"))
		json.Unmarshal(data, &sum)
		if sum.Status != "BuildStatus.OK" {
			b.Fatalf("status %q", sum.Status)
		}
		return d
	}
	floor := func(i int) time.Duration {
		dir := filepath.Join(work, fmt.Sprintf("hand-%d", i))
		os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
		for name, p := range files {
			data, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(dir, name), data, 0o644)
		}
		rc := `$maintainer_name = 'Launchpad Build Daemon <buildd@localhost>';
$build_arch_all = 0; $apt_update = 1; $apt_distupgrade = 1; $apt_allow_unauthenticated = 1;
$resolve_alternatives = 1; $purge_build_deps = 'never'; $stalled_pkg_timeout = 150;
$build_environment = { 'LANG' => 'C.UTF-8', 'TERM' => 'unknown', 'V' => '1' };
$environment_filter = [ '^DEB_BUILD_OPTIONS$' ];
$run_lintian = 0; $bd_uninstallable_explainer = ''; $sbuild_mode = 'buildd'; $check_space = 0;
$chroot_mode = 'unshare';
$unshare_tmpdir_template = '` + dir + `/tmp/tmp.sbuild.XXXXXXXXXX';
$external_commands = { 'chroot-setup-commands' => [ ['sh', '-c', 'rm -f /etc/apt/sources.list; echo "` + line + `" > /etc/apt/sources.list; echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/unsafe-io'] ] };
1;
`
		os.WriteFile(filepath.Join(dir, ".sbuildrc"), []byte(rc), 0o644)
		exec.Command("chown", "-R", bpE2EUser+":", dir).Run()
		start := time.Now()
		cmd := exec.Command("runuser", "-u", bpE2EUser, "--", "env", "HOME="+dir, "TMPDIR="+filepath.Join(dir, "tmp"),
			"DEB_BUILD_OPTIONS=noautodbgsym parallel=2", "linux64", "sbuild", "--chroot-mode=unshare", "-c", repacked,
			"--arch=amd64", "--dist=bookworm", "--nolog", filepath.Base(dsc))
		cmd.Dir = dir
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("sbuild by hand: %v\n%s", err, lastLines(string(o), 40))
		}
		d := time.Since(start)
		if _, err := os.Stat(filepath.Join(dir, strings.TrimSuffix(filepath.Base(dsc), ".dsc")+"_amd64.changes")); err != nil {
			b.Fatalf("sbuild by hand made no .changes: %v", err)
		}
		os.RemoveAll(dir)
		return d
	}
	var totalOurs, totalFloor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		best := map[string]time.Duration{}
		for j, which := range []string{"floor", "ours", "ours", "floor"} {
			var d time.Duration
			if which == "ours" {
				d = ours(i*4 + j)
			} else {
				d = floor(i*4 + j)
			}
			if best[which] == 0 || d < best[which] {
				best[which] = d
			}
		}
		totalOurs += best["ours"]
		totalFloor += best["floor"]
	}
	n := float64(b.N)
	b.ReportMetric(totalOurs.Seconds()/n, "s-agent")
	b.ReportMetric(totalFloor.Seconds()/n, "s-sbuild-by-hand")
	b.ReportMetric(float64(totalOurs)/float64(totalFloor), "x-floor")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

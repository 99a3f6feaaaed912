package builders

// The OCI result-processing benchmark (issue 13 item 7): a large image
// (BUILDD_AGENT_OCI_BENCH MiB, 1024 by default, in several layers) built
// by real docker in an LXD container made from the OCI test image
// (tests/oci-fixture.sh), then, interleaved in the same run:
//
//	floor  docker save <img> | gzip > /dev/null   (in the container)
//	ours   the manager's gather (oci_save.go): `docker save` streamed out
//	       of the container through the LXD target, each layer.tar
//	       recompressed, hashed and written to disk as the file cache
//	       does (a temporary file through SHA-1)
//
// It reports both times (the best of the rounds: on a shared machine noise
// only adds), their ratio (x-floor), our peak RSS over the processing and
// the load average. No wall-clock time is asserted.

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const ociBenchImage = "ocibench"

// ociBenchTarget starts a container from the OCI test image with its own
// label, profile, name and address, removed when b ends.
func ociBenchTarget(b *testing.B) target.Target {
	b.Helper()
	testenv.RequireLXD(b)
	img := testenv.OCIChrootTarball(b)
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	h := sha1.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	host, err := lxd.NewHost(ctx, lxd.Config{
		Instance: "ocibench", NamePrefix: "ocibench", Profile: "buildd-agent-ocibench",
		Address: "10.10.10.171", ReadyTimeout: 120 * time.Second, ImageMaxCount: 1,
	})
	if err != nil {
		b.Fatalf("lxd: %v", err)
	}
	b.Cleanup(func() { host.Close() })
	t, err := host.Factory()(ctx, target.Spec{BuildID: "ocibench", Series: "bench", Arch: "amd64"}, target.Options{Log: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	if err := t.Create(ctx, target.Image{Path: img, SHA1: hex.EncodeToString(h.Sum(nil)), Type: "chroot"}); err != nil {
		b.Fatalf("create: %v", err)
	}
	b.Cleanup(func() {
		t.Stop(context.Background())
		t.Remove(context.Background())
	})
	if err := t.Start(ctx); err != nil {
		b.Fatalf("start: %v", err)
	}
	return t
}

// ociBenchRun runs a shell script in the container, failing b on error.
func ociBenchRun(b *testing.B, t target.Target, script string, env ...string) string {
	b.Helper()
	var out strings.Builder
	code, err := t.Run(context.Background(), target.Command{Args: []string{"sh", "-ec", script}, Env: env, Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		b.Fatalf("%s: exit %d %v\n%s", script, code, err, out.String())
	}
	return out.String()
}

// ociBenchBuild builds the image: the container's /usr (and the merged
// /usr links) imported as the
// base (binaries and libraries), then random (incompressible) and text
// layers making up the rest of mib, and a small COPY layer.
func ociBenchBuild(b *testing.B, t target.Target, mib int) {
	b.Helper()
	driver := ociBenchRun(b, t, "systemctl restart docker && docker info --format '{{.Driver}}'")
	b.Logf("docker %s, storage driver %s", strings.TrimSpace(ociBenchRun(b, t, "docker version --format '{{.Server.Version}}'")), strings.TrimSpace(driver))
	usr, _ := strconv.Atoi(strings.TrimSpace(ociBenchRun(b, t, "du -sm /usr | cut -f1")))
	rest := max(mib-usr, 64)
	random, text := rest/4, rest/2 // two random layers, one text layer
	ociBenchRun(b, t, `tar -C / -c usr bin lib lib64 sbin | docker import - ocibench-base >/dev/null
mkdir -p /root/ocibench && cd /root/ocibench && echo small > small.txt
cat > Dockerfile <<EOF
FROM ocibench-base
RUN head -c ${R}M /dev/urandom > /random1.bin
RUN seq 1 999999999 | head -c ${T}M > /numbers.txt
RUN head -c ${R}M /dev/urandom > /random2.bin
COPY small.txt /small.txt
EOF
docker build --no-cache -q -t `+ociBenchImage+` . >/dev/null`, "R="+strconv.Itoa(random), "T="+strconv.Itoa(text))
}

// ociBenchStore stores a result as the file cache does: a file on disk
// written through SHA-1, removed again (only the cost matters here).
func ociBenchStore(dir string) ociStoreFunc {
	return func(name string, r io.Reader) (string, error) {
		f, err := os.CreateTemp(dir, "result-")
		if err != nil {
			return "", err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		h := sha1.New()
		if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), f.Close()
	}
}

// resetPeakRSS clears the process's VmHWM (Linux ≥ 4.0), so that the next
// peakRSS reads the peak since.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process's VmHWM in MiB.
func peakRSS() float64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func loadAverage() string {
	l, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(l))[:min(3, len(strings.Fields(string(l))))], " ")
}

func BenchmarkOCISaveDocker(b *testing.B) {
	mib := 1024
	if v, err := strconv.Atoi(os.Getenv("BUILDD_AGENT_OCI_BENCH")); err == nil && v > 0 {
		mib = v
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("BUILDD_AGENT_OCI_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	t := ociBenchTarget(b)
	ociBenchBuild(b, t, mib)
	size, _ := strconv.ParseFloat(strings.TrimSpace(ociBenchRun(b, t, "docker image inspect --format '{{.Size}}' "+ociBenchImage)), 64)
	layers := strings.TrimSpace(ociBenchRun(b, t, "docker image inspect --format '{{len .RootFS.Layers}}' "+ociBenchImage))
	b.Logf("image: %.0f MiB in %s layers; load average before: %s", size/(1<<20), layers, loadAverage())
	ctx := context.Background()
	m := &OCIManager{args: OCIArgs{Name: ociBenchImage}}
	dir := b.TempDir()
	var floor, ours []time.Duration
	var peak float64
	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			runFloor := func() {
				start := time.Now()
				ociBenchRun(b, t, "docker save "+ociBenchImage+" | gzip > /dev/null")
				floor = append(floor, time.Since(start))
			}
			runOurs := func() {
				var log strings.Builder
				env := &Env{Log: &log, AddWaitingFile: ociBenchStore(dir)}
				cb := &ContainerBuild{Env: env, Log: &log, Target: t}
				resetPeakRSS()
				start := time.Now()
				if f := m.gather(ctx, cb); f != nil {
					b.Fatalf("gather: %v\n%s", f.Err, log.String())
				}
				ours = append(ours, time.Since(start))
				peak = max(peak, peakRSS())
			}
			// Interleaved, each side first in turn.
			if r%2 == 0 {
				runFloor()
				runOurs()
			} else {
				runOurs()
				runFloor()
			}
			b.Logf("round %d: docker save | gzip %s, ours %s", r+1, floor[len(floor)-1].Round(time.Millisecond), ours[len(ours)-1].Round(time.Millisecond))
		}
	}
	b.StopTimer()
	bf, bo := bestOf(floor), bestOf(ours)
	b.ReportMetric(bf.Seconds(), "floor-s")
	b.ReportMetric(bo.Seconds(), "ours-s")
	b.ReportMetric(bo.Seconds()/bf.Seconds(), "x-floor")
	b.ReportMetric(peak, "peak-RSS-MiB")
	b.ReportMetric(size/(1<<20), "image-MiB")
	b.Logf("%.0f MiB, %s layers: docker save | gzip %s, ours %s (%.2f×), peak RSS %.0f MiB; load average after: %s",
		size/(1<<20), layers, bf.Round(time.Millisecond), bo.Round(time.Millisecond), bo.Seconds()/bf.Seconds(), peak, loadAverage())
}

// bestOf is the fastest run: noise on a shared machine only adds time.
func bestOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}

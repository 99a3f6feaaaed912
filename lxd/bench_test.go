package lxd

// Benchmarks against raw LXD in the same run (make bench: -benchtime 1x, so
// each does its own inner iterations). Each reports the agent's time, the
// floor's time and their ratio (x-floor).

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/klauspost/compress/gzip"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

const (
	benchRounds        = 2
	firstCommandRounds = 2 // two container lifecycles each, plus one naive
)

// phase logs one step's duration when BUILDD_AGENT_BENCH_PHASES is set.
func phase(b *testing.B, what string, since time.Time) {
	if os.Getenv("BUILDD_AGENT_BENCH_PHASES") != "" {
		b.Logf("%s: %s", what, time.Since(since).Round(time.Millisecond))
	}
}

// benchHost makes a Host with its own Instance: nothing is cached for it.
func benchHost(b *testing.B, addr int) (*Host, Config, lxdclient.InstanceServer) {
	cfg := testConfig(b, addr)
	cfg.Instance = "bench-" + uniqueID()
	if os.Getenv("BUILDD_AGENT_BENCH_PHASES") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h := newTestHost(b, cfg)
	return h, cfg, rawClient(b)
}

// best is the fastest of the runs: on a shared machine noise only ever adds
// time, so the minimum is the steadiest estimate of both sides.
func best(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}

func rawExec(ctx context.Context, c lxdclient.InstanceServer, name string, argv ...string) (int, error) {
	code, _, err := rawExecOutput(ctx, c, name, argv...)
	return code, err
}

func rawExecOutput(ctx context.Context, c lxdclient.InstanceServer, name string, argv ...string) (int, string, error) {
	var out bytes.Buffer
	done := make(chan bool)
	op, err := c.ExecInstance(name, api.InstanceExecPost{Command: argv, WaitForWS: true},
		&lxdclient.InstanceExecArgs{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &out, DataDone: done})
	if err != nil {
		return -1, "", err
	}
	if err := op.WaitContext(ctx); err != nil {
		return -1, "", err
	}
	<-done
	ret, _ := op.Get().Metadata["return"].(float64)
	return int(ret), out.String(), nil
}

// BenchmarkFirstCommand (a): from "chroot cached as image" to "first command
// ran". Agent: Create (cached image) + Start (boot and readiness) + Run
// `true`. Floors, by hand with the raw client: create the same container from
// the alias + start + exec `systemctl is-system-running --wait` + exec
// `true` (the same work: a build must not start before boot is done), and the
// naive create + start + exec `true` that does not wait for boot.
func BenchmarkFirstCommand(b *testing.B) {
	h, cfg, raw := benchHost(b, 110)
	ctx := context.Background()
	img := chrootImage(b)
	spec := target.Spec{BuildID: "bench-a", Series: "bookworm", Arch: "amd64"}
	if _, err := h.ensureImage(ctx, img, spec.Series, spec.Arch, nil); err != nil {
		b.Fatal(err)
	}
	id, err := readHostIdentity(ctx, "/etc")
	if err != nil {
		b.Fatal(err)
	}
	alias := h.aliasName(spec.Series, spec.Arch)
	rawName := "raw-" + cfg.NamePrefix
	rawConfig := map[string]string{
		labelInstance: cfg.Instance, "security.nesting": "true",
		"raw.lxc": rawLXC(h.net, id.hostname, false),
	}
	rawRun := func(waitBoot bool) time.Duration {
		start := time.Now()
		op, err := raw.CreateInstance(api.InstancesPost{
			Name: rawName, Type: api.InstanceTypeContainer,
			Source:      api.InstanceSource{Type: "image", Alias: alias},
			InstancePut: api.InstancePut{Profiles: []string{cfg.Profile}, Config: rawConfig},
		})
		if err == nil {
			err = op.Wait()
		}
		if err != nil {
			b.Fatal(err)
		}
		phase(b, "raw create", start)
		t := time.Now()
		op, err = raw.UpdateInstanceState(rawName, api.InstanceStatePut{Action: "start", Timeout: -1}, "")
		if err == nil {
			err = op.Wait()
		}
		if err != nil {
			b.Fatal(err)
		}
		phase(b, "raw start", t)
		t = time.Now()
		if waitBoot {
			// The answer, not the exit status: "degraded", "starting" and
			// "cannot connect to the bus" all exit 1.
			for {
				_, out, err := rawExecOutput(ctx, raw, rawName, "systemctl", "is-system-running", "--wait")
				if s := strings.TrimSpace(out); err == nil && (s == "running" || s == "degraded") {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		phase(b, "raw boot wait", t)
		if code, err := rawExec(ctx, raw, rawName, "true"); err != nil || code != 0 {
			b.Fatalf("raw exec: %d %v", code, err)
		}
		d := time.Since(start)
		if err := h.deleteContainer(ctx, rawName); err != nil {
			b.Fatal(err)
		}
		return d
	}
	agentRun := func() time.Duration {
		start := time.Now()
		tgt, err := h.Factory()(ctx, spec, target.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := tgt.Create(ctx, img); err != nil {
			b.Fatal(err)
		}
		phase(b, "agent create", start)
		t := time.Now()
		if err := tgt.Start(ctx); err != nil {
			b.Fatal(err)
		}
		phase(b, "agent start+ready", t)
		if code, err := tgt.Run(ctx, target.Command{Args: []string{"true"}}); err != nil || code != 0 {
			b.Fatalf("agent run: %d %v", code, err)
		}
		d := time.Since(start)
		if err := h.deleteContainer(ctx, tgt.(*Container).Name()); err != nil {
			b.Fatal(err)
		}
		return d
	}
	var agent, floor, naive []time.Duration
	b.ResetTimer()
	for range b.N {
		for r := range firstCommandRounds {
			// Alternate the order so drift in the machine's load hits both.
			if r%2 == 0 {
				agent = append(agent, agentRun())
				floor = append(floor, rawRun(true))
			} else {
				floor = append(floor, rawRun(true))
				agent = append(agent, agentRun())
			}
		}
		naive = append(naive, rawRun(false))
	}
	b.StopTimer()
	b.ReportMetric(best(agent).Seconds(), "agent-s")
	b.ReportMetric(best(floor).Seconds(), "raw-ready-s")
	b.ReportMetric(best(naive).Seconds(), "raw-naive-s")
	b.ReportMetric(float64(best(agent))/float64(best(floor)), "x-floor")
	b.ReportMetric(float64(best(agent))/float64(best(naive)), "x-naive")
}

// BenchmarkImport (b): first import of the chroot tarball. Agent: streaming
// conversion of the gzip'd Launchpad tarball straight into LXD. Floor:
// `lxc image import` of the same image already prepared as an uncompressed
// unified tarball (prepared outside the timed region).
func BenchmarkImport(b *testing.B) {
	h, _, _ := benchHost(b, 111)
	ctx := context.Background()
	img := chrootImage(b)
	props := map[string]string{"architecture": "amd64", "series": "bookworm", labelInstance: h.cfg.Instance, labelSHA1: img.SHA1}
	meta := imageMetadata{Architecture: "x86_64", Properties: props}
	prepared := filepath.Join(b.TempDir(), "unified.tar")
	f, err := os.Create(prepared)
	if err != nil {
		b.Fatal(err)
	}
	src, err := os.Open(img.Path)
	if err != nil {
		b.Fatal(err)
	}
	// Floor's image differs by one property, so both can exist at once.
	floorMeta := meta
	floorMeta.Properties = map[string]string{"architecture": "amd64", "series": "bookworm", labelInstance: h.cfg.Instance, labelSHA1: img.SHA1, "floor": "1"}
	if err := convertChroot(f, src, floorMeta); err != nil {
		b.Fatal(err)
	}
	src.Close()
	f.Close()
	fi, _ := os.Stat(prepared)
	// The same image gzip'd, as image tarballs are usually shipped: LXD
	// then hashes fewer bytes but decompresses on every container create.
	preparedGz := prepared + ".gz"
	if err := gzipFile(preparedGz, prepared); err != nil {
		b.Fatal(err)
	}
	deleteImage := func(fp string) {
		op, err := h.srv.DeleteImage(fp)
		if err := waitOp(ctx, op, err); err != nil {
			b.Fatal(err)
		}
	}
	agentRun := func() time.Duration {
		start := time.Now()
		fp, err := h.importChroot(ctx, img.Path, img.SHA1, meta, nil)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		deleteImage(fp)
		return d
	}
	floorRun := func(prepared string) time.Duration {
		start := time.Now()
		out, err := exec.Command("lxc", "image", "import", prepared).CombinedOutput()
		if err != nil {
			b.Fatalf("lxc image import: %v: %s", err, out)
		}
		d := time.Since(start)
		fp, err := h.cachedImage(img.SHA1)
		if err != nil || fp == "" {
			b.Fatalf("imported image not found: %v", err)
		}
		deleteImage(fp)
		return d
	}
	var agent, floor, floorGz []time.Duration
	b.ResetTimer()
	for range b.N {
		for r := range benchRounds {
			if r%2 == 0 {
				agent = append(agent, agentRun())
				floor = append(floor, floorRun(prepared))
			} else {
				floor = append(floor, floorRun(prepared))
				agent = append(agent, agentRun())
			}
			floorGz = append(floorGz, floorRun(preparedGz))
		}
	}
	b.StopTimer()
	b.ReportMetric(best(agent).Seconds(), "agent-s")
	b.ReportMetric(best(floor).Seconds(), "lxc-import-tar-s")
	b.ReportMetric(best(floorGz).Seconds(), "lxc-import-gz-s")
	b.ReportMetric(float64(fi.Size())/(1<<20), "image-MiB")
	b.ReportMetric(float64(best(agent))/float64(best(floor)), "x-floor")
	b.ReportMetric(float64(best(agent))/float64(best(floorGz)), "x-floor-gz")
}

// BenchmarkWarmImage (c): the second build on the same chroot. The first
// ensureImage imports; the second finds the image by the chroot's SHA-1 and
// skips the import (the reference re-imports every build).
func BenchmarkWarmImage(b *testing.B) {
	h, _, _ := benchHost(b, 112)
	ctx := context.Background()
	img := chrootImage(b)
	b.ResetTimer()
	var cold, warm time.Duration
	for range b.N {
		start := time.Now()
		if _, err := h.ensureImage(ctx, img, "bookworm", "amd64", nil); err != nil {
			b.Fatal(err)
		}
		cold += time.Since(start)
		start = time.Now()
		if _, err := h.ensureImage(ctx, img, "bookworm", "amd64", nil); err != nil {
			b.Fatal(err)
		}
		warm += time.Since(start)
	}
	b.StopTimer()
	imports := h.Imports()
	if imports != 1 {
		b.Errorf("%d imports for two builds on the same chroot, want 1", imports)
	}
	b.ReportMetric(float64(imports), "imports")
	b.ReportMetric(cold.Seconds()/float64(b.N), "cold-s")
	b.ReportMetric(warm.Seconds()/float64(b.N), "warm-s")
	b.ReportMetric(float64(cold)/float64(warm), "x-saved")
}

func gzipFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return out.Close()
}

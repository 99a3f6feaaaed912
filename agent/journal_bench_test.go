package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
)

// BenchmarkJournalWrite is the cost of journalling one transition: the
// builder's snapshot, its encoding and the atomic write (temporary file,
// fsync, rename, fsync of the directory) of a WAITING record with a
// snap build's filemap and extras. The floor, measured in the same run, is
// a plain os.WriteFile of the same bytes without fsync: what the journal
// costs beyond it is the durability.
func BenchmarkJournalWrite(b *testing.B) {
	dir := b.TempDir()
	bl := newBuilder(builderDeps{
		cfg:     &Config{Builder: BuilderConfig{Architectures: []string{"amd64"}}},
		logger:  slog.New(slog.DiscardHandler),
		cache:   newMemCache(),
		log:     &memLog{},
		journal: newJournal(dir),
	})
	bd := &build{id: "SNAPBUILD-123456", tag: "snap", started: time.Now(), owned: map[string]int64{},
		result: builders.BuildOK, proxyEndpoint: "http://10.0.0.1:8080/tokens/abc"}
	for i := range 4 {
		sum := sumOf([]byte(fmt.Sprint(i)))
		bd.files = append(bd.files, Member{fmt.Sprintf("hello_1.0_amd64.%d.snap", i), sum})
		bd.owned[sum] = time.Now().UnixNano()
	}
	bd.extras = Struct{{"revision_id", "0123456789abcdef0123456789abcdef01234567"}}
	bl.cur, bl.state = bd, BuilderWaiting
	bl.mu.Lock()
	data, err := json.Marshal(bl.snapshotLocked())
	bl.mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	floorPath := filepath.Join(dir, "floor.json")
	const n = 50
	measure := func(f func()) time.Duration {
		start := time.Now()
		for range n {
			f()
		}
		return time.Since(start) / n
	}
	journal := func() time.Duration { return measure(bl.persist) }
	floor := func() time.Duration {
		return measure(func() {
			if err := os.WriteFile(floorPath, data, 0o644); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.ResetTimer()
	for range b.N {
		best := bestOf(b, 3, floor, journal)
		b.ReportMetric(float64(best[1].Microseconds()), "µs/transition")
		b.ReportMetric(float64(best[0].Microseconds()), "floor-µs")
		b.ReportMetric(best[1].Seconds()/best[0].Seconds(), "x-floor")
		b.ReportMetric(float64(len(data)), "record-bytes")
	}
	if rec, err := bl.journal.read(); err != nil || rec.State != BuilderWaiting {
		b.Fatalf("journal after the benchmark: %+v, %v", rec, err)
	}
}

// BenchmarkSweep is the start-up sweep of a killed build's 280 MB home: a
// synthetic tree of 20 000 files of 14 000 bytes in 200 directories (the
// shape of an unpacked chroot: many small files). The floor, in the same
// run, is `rm -rf` of the same tree. The tree is made anew, and synced, before
// each timed removal.
func BenchmarkSweep(b *testing.B) {
	dir := b.TempDir()
	home := filepath.Join(dir, "builds")
	block := make([]byte, 14000)
	mkTree := func() {
		for d := range 200 {
			sub := filepath.Join(home, "build-SWEEP-1", "chroot", fmt.Sprintf("d%03d", d))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
			for f := range 100 {
				if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", f)), block, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
		syncFS(b)
	}
	a := &Agent{cfg: &Config{Builder: BuilderConfig{StateDir: dir, BuildHome: home}}, logger: slog.New(slog.DiscardHandler)}
	sweep := func() time.Duration {
		mkTree()
		start := time.Now()
		if err := a.Sweep(b.Context()); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	floor := func() time.Duration {
		mkTree()
		start := time.Now()
		if out, err := exec.Command("rm", "-rf", filepath.Join(home, "build-SWEEP-1")).CombinedOutput(); err != nil {
			b.Fatalf("rm -rf: %v %s", err, out)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for range b.N {
		best := bestOf(b, 1, floor, sweep)
		b.ReportMetric(float64(best[1].Milliseconds()), "sweep-ms")
		b.ReportMetric(float64(best[0].Milliseconds()), "floor-rm-ms")
		b.ReportMetric(best[1].Seconds()/best[0].Seconds(), "x-floor")
	}
}

func syncFS(b *testing.B) {
	if err := exec.Command("sync").Run(); err != nil {
		b.Fatal(err)
	}
}

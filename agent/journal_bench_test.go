package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
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

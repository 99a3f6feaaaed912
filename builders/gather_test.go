package builders

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// gatherTarget is a fakeTarget whose CopyOut of anything but a regular
// file blocks for ever, ignoring ctx, as open(2) of a FIFO does (in LXD's
// file API as in any plain open). listAs overrides the type ListDir
// reports (a file swapped after listing); sizes overrides the apparent
// size Stat and ListDir report (sparse files); blockRegular makes CopyOut
// of regular files block too.
type gatherTarget struct {
	*fakeTarget
	listAs       map[string]fs.FileMode
	sizes        map[string]int64
	blockRegular bool

	mu     sync.Mutex
	opened []string
}

func (g *gatherTarget) info(p string, fi target.FileInfo) target.FileInfo {
	if n, ok := g.sizes[p]; ok {
		fi.Size = n
	}
	return fi
}

func (g *gatherTarget) Stat(ctx context.Context, p string) (target.FileInfo, error) {
	fi, err := g.fakeTarget.Stat(ctx, p)
	return g.info(path.Clean(p), fi), err
}

func (g *gatherTarget) ListDir(ctx context.Context, p string) ([]target.FileInfo, error) {
	infos, err := g.fakeTarget.ListDir(ctx, p)
	for i := range infos {
		full := path.Join(p, infos[i].Name)
		if m, ok := g.listAs[full]; ok {
			infos[i].Mode = m
		}
		infos[i] = g.info(full, infos[i])
	}
	return infos, err
}

func (g *gatherTarget) CopyOut(ctx context.Context, p string, w io.Writer) error {
	g.mu.Lock()
	g.opened = append(g.opened, p)
	g.mu.Unlock()
	g.fakeTarget.mu.Lock()
	f := g.fakeTarget.files[p]
	g.fakeTarget.mu.Unlock()
	if f != nil && (!f.mode.IsRegular() || g.blockRegular) {
		select {} // a blocking open that nothing interrupts
	}
	return g.fakeTarget.CopyOut(ctx, p, w)
}

func (g *gatherTarget) openedPaths() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.opened...)
}

// gatherWithin runs GatherResults with a bound against a hang (a safety
// net that turns a hang into a failure, not a timing claim).
func gatherWithin(t *testing.T, ctx context.Context, b *ContainerBuild, dir string, extra ...string) *Failure {
	t.Helper()
	done := make(chan *Failure, 1)
	go func() {
		done <- b.GatherResults(ctx, dir, func(name string) bool { return strings.HasSuffix(name, ".snap") }, extra...)
	}()
	select {
	case f := <-done:
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("GatherResults hangs")
		return nil
	}
}

func newGatherBuild(t *testing.T, limit int64) (*ContainerBuild, *gatherTarget, *fakeEnv) {
	ft := newFakeTarget()
	ft.mkdirAll("/build/out")
	ft.put("/build/out/good.snap", "SNAP", 0o644)
	g := &gatherTarget{fakeTarget: ft, listAs: map[string]fs.FileMode{}, sizes: map[string]int64{}}
	fe := newFakeEnv(ft)
	fe.Config.ResultFileBytes = limit
	b := NewContainerBuild(&fe.Env, Request{BuildID: "G-1"}, CommonArgs{}, nil, nil)
	b.Target = g
	return b, g, fe
}

func addFIFO(ft *fakeTarget, p string) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.files[p] = &fakeFile{mode: fs.ModeNamedPipe | 0o644}
}

// TestGatherResultsNeverOpensNonRegular: a FIFO result, however it is
// found, is skipped without being opened, and gathering ends.
func TestGatherResultsNeverOpensNonRegular(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prep  func(g *gatherTarget)
		extra []string
	}{
		{"fifo listed as a fifo", func(g *gatherTarget) { addFIFO(g.fakeTarget, "/build/out/evil.snap") }, nil},
		{"fifo listed as a regular file (swapped after the listing)", func(g *gatherTarget) {
			addFIFO(g.fakeTarget, "/build/out/evil.snap")
			g.listAs["/build/out/evil.snap"] = 0o644
		}, nil},
		{"fifo as an extra path", func(g *gatherTarget) { addFIFO(g.fakeTarget, "/build/evil.tar.gz") }, []string{"/build/evil.tar.gz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, g, fe := newGatherBuild(t, 0)
			tc.prep(g)
			if f := gatherWithin(t, context.Background(), b, "/build/out", tc.extra...); f != nil {
				t.Fatalf("GatherResults = %v, log:\n%s", f, fe.logText())
			}
			for _, p := range g.openedPaths() {
				if strings.Contains(p, "evil") {
					t.Errorf("CopyOut opened %s", p)
				}
			}
			if _, ok := fe.waiting["good.snap"]; !ok || len(fe.waiting) != 1 {
				t.Errorf("results = %v, want good.snap only", fe.waitOrder)
			}
			if !strings.Contains(fe.logText(), "evil") || !strings.Contains(fe.logText(), "not a regular file") {
				t.Errorf("log does not say the FIFO was skipped:\n%s", fe.logText())
			}
		})
	}
}

// TestGatherResultsSizeLimit: a result over result_file_bytes by its
// apparent size (a sparse 1 TiB file) fails the build as PACKAGEFAIL
// before a byte is copied, with a line in the build log.
func TestGatherResultsSizeLimit(t *testing.T) {
	b, g, fe := newGatherBuild(t, 1<<20)
	g.fakeTarget.put("/build/out/huge.snap", "sparse", 0o644)
	g.sizes["/build/out/huge.snap"] = 1 << 40
	f := gatherWithin(t, context.Background(), b, "/build/out")
	if f == nil || f.Status != BuildPackageFail {
		t.Fatalf("GatherResults = %v, want PACKAGEFAIL", f)
	}
	if !errors.Is(f, ErrResultTooLarge) {
		t.Errorf("failure %v does not wrap ErrResultTooLarge", f)
	}
	for _, p := range g.openedPaths() {
		if p == "/build/out/huge.snap" {
			t.Errorf("CopyOut opened the oversized result")
		}
	}
	if _, ok := fe.waiting["huge.snap"]; ok {
		t.Errorf("oversized result stored")
	}
	if !strings.Contains(fe.logText(), "huge.snap is 1099511627776 bytes, over this builder's limit of 1048576 bytes ([limits] result_file_bytes)") {
		t.Errorf("log does not explain the limit:\n%s", fe.logText())
	}
}

// TestGatherResultsEndsWithContext: a backend whose CopyOut blocks and
// ignores ctx does not hold gathering after an abort.
func TestGatherResultsEndsWithContext(t *testing.T) {
	b, g, fe := newGatherBuild(t, 0)
	g.blockRegular = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(g.openedPaths()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	f := gatherWithin(t, ctx, b, "/build/out")
	if f == nil {
		t.Fatalf("GatherResults succeeded with a copy that never ended; log:\n%s", fe.logText())
	}
}

// TestSnapDoesNotHashFIFOs: snapcraft's *.snap outputs are hashed in the
// build (sha512sum, as the reference); a FIFO named *.snap is not, since
// reading it would block the build until abort.
func TestSnapDoesNotHashFIFOs(t *testing.T) {
	installSeams(t)
	ft, fe, res := runSnap(t, baseArgs(), func(ft *fakeTarget, fe *fakeEnv) {
		inner := ft.onRun
		ft.onRun = func(c recordedCommand) fakeRun {
			r := inner(c)
			if len(c.Args) == 1 && c.Args[0] == "snapcraft" {
				addFIFO(ft, "/build/hello/evil.snap")
			}
			if len(c.Args) == 2 && c.Args[0] == "sha512sum" && c.Args[1] == "evil.snap" {
				return fakeRun{err: errors.New("sha512sum of a FIFO would block for ever")}
			}
			return r
		}
	})
	if res.Status != BuildOK {
		t.Fatalf("status = %s, log:\n%s", res.Status, fe.logText())
	}
	for _, a := range ft.argvs() {
		if strings.Contains(a, "evil.snap") {
			t.Errorf("ran %q", a)
		}
	}
	if _, ok := fe.waiting["evil.snap"]; ok {
		t.Errorf("FIFO gathered")
	}
}

// TestGatherResultsStall: a copy that delivers nothing (the file was
// swapped for a FIFO after the lstat, and the backend's open blocks)
// ends after ResultStallTimeout rather than at abort.
func TestGatherResultsStall(t *testing.T) {
	defer func(d time.Duration) { ResultStallTimeout = d }(ResultStallTimeout)
	ResultStallTimeout = 50 * time.Millisecond
	b, g, fe := newGatherBuild(t, 0)
	g.blockRegular = true
	f := gatherWithin(t, context.Background(), b, "/build/out")
	if f == nil || f.Status != BuildPackageFail || !strings.Contains(f.Error(), "no data for 50ms") {
		t.Fatalf("GatherResults = %v, want PACKAGEFAIL after the stall; log:\n%s", f, fe.logText())
	}
}

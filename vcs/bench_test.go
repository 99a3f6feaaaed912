package vcs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/gitserver"
)

// writeBigRepo writes a git fast-import stream: a first commit with files
// files (100 per directory, ~1 KiB of source-like text each), then
// commits-1 commits changing 10 files each, on refs/heads/main, and an
// annotated tag v1.0 at the tip.
func writeBigRepo(w io.Writer, files, commits int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	content := func(i, version int) string {
		var b []byte
		n := 10 + rng.IntN(40)
		for l := range n {
			b = fmt.Appendf(b, "func f%d_%d(x int) int { return x*%d + %d } // v%d\n", i, l, rng.IntN(1000), rng.IntN(1000), version)
		}
		return string(b)
	}
	path := func(i int) string { return fmt.Sprintf("src/d%03d/file%05d.go", i/100, i) }
	when := int64(1700000000)
	for c := range commits {
		fmt.Fprintf(bw, "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n", when+int64(c))
		msg := fmt.Sprintf("commit %d", c)
		fmt.Fprintf(bw, "data %d\n%s\n", len(msg), msg)
		if c == 0 {
			for i := range files {
				data := content(i, 0)
				fmt.Fprintf(bw, "M 100644 inline %s\ndata %d\n%s\n", path(i), len(data), data)
			}
			continue
		}
		for range 10 {
			i := rng.IntN(files)
			data := content(i, c)
			fmt.Fprintf(bw, "M 100644 inline %s\ndata %d\n%s\n", path(i), len(data), data)
		}
	}
	msg := "release 1.0"
	fmt.Fprintf(bw, "tag v1.0\nfrom refs/heads/main\ntagger Bench <bench@example.com> %d +0000\ndata %d\n%s\n", when+int64(commits), len(msg), msg)
	return bw.Flush()
}

// newBigRepo makes the repository on srv and packs it (with a bitmap) so
// that the server's cost per clone is what a real forge's would be.
func newBigRepo(tb testing.TB, srv *gitserver.Server, name string, files, commits int, repack bool) *gitserver.Repo {
	tb.Helper()
	r := srv.NewRepo(tb, name)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBigRepo(pw, files, commits)) }()
	r.FastImport(tb, pr)
	if repack {
		r.BareGit(tb, "repack", "-a", "-d", "-b", "-q")
	}
	return r
}

// addCommit adds one commit changing one file on main, as a push would.
func addCommit(tb testing.TB, r *gitserver.Repo, n int) {
	tb.Helper()
	data := fmt.Sprintf("new content %d\n", n)
	stream := fmt.Sprintf("commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata 3\nnew\nfrom refs/heads/main^0\nM 100644 inline src/d000/file00000.go\ndata %d\n%s\n",
		1800000000+n, len(data), data)
	r.FastImport(tb, stringsReader(stream))
}

type stringReader struct {
	s string
	i int
}

func (r *stringReader) Read(p []byte) (int, error) {
	if r.i >= len(r.s) {
		return 0, io.EOF
	}
	n := copy(p, r.s[r.i:])
	r.i += n
	return n, nil
}

func stringsReader(s string) io.Reader { return &stringReader{s: s} }

// worktreeTimes collects, from a checkout's log, the time spent writing
// the worktree ("Checked out ... (N files in 1.23s)"), superproject only.
type worktreeTimes struct{ d []time.Duration }

var filesInRE = regexp.MustCompile(`^Checked out .* files in ([0-9.]+)s\)`)

func (w *worktreeTimes) Write(p []byte) (int, error) {
	if m := filesInRE.FindSubmatch(p); m != nil {
		if f, err := strconv.ParseFloat(string(m[1]), 64); err == nil {
			w.d = append(w.d, time.Duration(f*float64(time.Second)))
		}
	}
	return len(p), nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// timePair times a and b alternately (a, b, a, b, ...) so that a change
// in the machine's load hits both alike, and returns their medians.
func timePair(rounds int, setup func(i int), a, b func(i int)) (time.Duration, time.Duration) {
	var da, db []time.Duration
	for i := range rounds {
		if setup != nil {
			setup(2 * i)
		}
		start := time.Now()
		a(i)
		da = append(da, time.Since(start))
		if setup != nil {
			setup(2*i + 1)
		}
		start = time.Now()
		b(i)
		db = append(db, time.Since(start))
	}
	return median(da), median(db)
}

func gitCLI(b *testing.B, args ...string) {
	b.Helper()
	cmd := exec.Command("git", args...)
	cmd.Env = gitserver.IsolatedEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// BenchmarkCheckout: a 10k-file, 1k-commit repository over smart HTTP from
// a local git http-backend. Each sub-benchmark measures its floor in the
// same run and reports the ratio; medians of several rounds.
func BenchmarkCheckout(b *testing.B) {
	srv := gitserver.Start(b)
	start := time.Now()
	r := newBigRepo(b, srv, "big", 10000, 1000, true)
	b.Logf("made the repository in %s", time.Since(start))
	url := r.URL()
	// Rounds per measurement (medians); BUILDD_BENCH_ROUNDS raises it on a
	// quiet machine. One round keeps `make bench` within a few minutes.
	rounds := 1
	if n, err := strconv.Atoi(os.Getenv("BUILDD_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}

	checkout := func(b *testing.B, path string, opts Options) func(int) {
		return func(int) {
			if _, err := Checkout(context.Background(), Source{Repository: url, Path: path}, filepath.Join(b.TempDir(), "src"), opts); err != nil {
				b.Fatal(err)
			}
		}
	}

	// Checkout of a tag, shallow, against `git clone --depth 1 --branch TAG`.
	b.Run("ShallowTag-vs-GitCLI", func(b *testing.B) {
		for range b.N {
			goT, gitT := timePair(rounds, nil, checkout(b, "refs/tags/v1.0", Options{Shallow: true}), func(int) {
				gitCLI(b, "clone", "-q", "--depth", "1", "--branch", "v1.0", url, filepath.Join(b.TempDir(), "src"))
			})
			b.ReportMetric(float64(goT.Milliseconds()), "ms-vcs")
			b.ReportMetric(float64(gitT.Milliseconds()), "ms-git-cli")
			b.ReportMetric(goT.Seconds()/gitT.Seconds(), "x-git-cli")
		}
	})

	// The same with the full history, against `git clone --branch TAG`.
	b.Run("FullTag-vs-GitCLI", func(b *testing.B) {
		for range b.N {
			goT, gitT := timePair(rounds, nil, checkout(b, "refs/tags/v1.0", Options{}), func(int) {
				gitCLI(b, "clone", "-q", "--branch", "v1.0", url, filepath.Join(b.TempDir(), "src"))
			})
			b.ReportMetric(float64(goT.Milliseconds()), "ms-vcs")
			b.ReportMetric(float64(gitT.Milliseconds()), "ms-git-cli")
			b.ReportMetric(goT.Seconds()/gitT.Seconds(), "x-git-cli")
		}
	})

	// A rebuild after one new commit from a warm mirror, against a cold
	// one (an empty mirror: the first build of a repository, a full clone).
	// Writing the 10k files costs both the same; the "fetch" metrics leave
	// it out (it is the time the checkout logs for writing the worktree).
	b.Run("MirrorWarm-vs-Cold", func(b *testing.B) {
		for range b.N {
			mirrors := b.TempDir()
			checkout(b, "", Options{MirrorDir: mirrors})(0)
			var warmLog, coldLog worktreeTimes
			n := 0
			warmT, coldT := timePair(rounds, func(int) { n++; addCommit(b, r, n) },
				checkout(b, "", Options{MirrorDir: mirrors, Log: &warmLog}),
				func(int) { checkout(b, "", Options{MirrorDir: b.TempDir(), Log: &coldLog})(0) })
			warmW, coldW := median(warmLog.d), median(coldLog.d)
			b.ReportMetric(float64(warmT.Milliseconds()), "ms-warm")
			b.ReportMetric(float64(coldT.Milliseconds()), "ms-cold")
			b.ReportMetric(coldT.Seconds()/warmT.Seconds(), "x-faster-than-cold")
			b.ReportMetric(float64(warmW.Milliseconds()), "ms-worktree-warm")
			b.ReportMetric(float64(coldW.Milliseconds()), "ms-worktree-cold")
			b.ReportMetric((coldT-coldW).Seconds()/(warmT-warmW).Seconds(), "x-fetch-faster-than-cold")
		}
	})
}

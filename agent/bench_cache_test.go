package agent

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const benchFileSize = 200 << 20

// benchFile writes a 200 MiB file of random bytes and returns its path and SHA-1.
func benchFile(b *testing.B, dir string) (string, string) {
	b.Helper()
	path := filepath.Join(dir, "input.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	h := sha1.New()
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for range benchFileSize / len(buf) {
		r.Read(buf)
		h.Write(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// bestOf runs each measurement rounds times, interleaved so that both see
// the same machine state, and returns the best (shortest) durations.
func bestOf(b *testing.B, rounds int, fs ...func() time.Duration) []time.Duration {
	best := make([]time.Duration, len(fs))
	for range rounds {
		for i, f := range fs {
			if d := f(); best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	return best
}

func mibPerSec(d time.Duration) float64 { return benchFileSize / (1 << 20) / d.Seconds() }

// BenchmarkEnsurePresent downloads 200 MiB from a loopback HTTP server into
// the cache; the floor is the same download piped through SHA-1 into a
// file by hand (what any downloader must at least do).
func BenchmarkEnsurePresent(b *testing.B) {
	dir := b.TempDir()
	src, sum := benchFile(b, dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, src)
	}))
	defer srv.Close()
	cache, err := OpenFileCache(filepath.Join(dir, "cache"))
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	floorDir := filepath.Join(dir, "floor")
	os.Mkdir(floorDir, 0o755)

	floor := func() time.Duration {
		start := time.Now()
		resp, err := http.Get(srv.URL + "/f")
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(floorDir, "out"))
		if err != nil {
			b.Fatal(err)
		}
		h := sha1.New()
		if _, err := io.CopyBuffer(io.MultiWriter(f, h), resp.Body, make([]byte, 256<<10)); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		f.Close()
		if hex.EncodeToString(h.Sum(nil)) != sum {
			b.Fatal("floor: digest mismatch")
		}
		d := time.Since(start)
		os.Remove(filepath.Join(floorDir, "out"))
		return d
	}
	agent := func() time.Duration {
		start := time.Now()
		if ok, info := cache.EnsurePresent(context.Background(), sum, srv.URL+"/f", "", ""); !ok || info != InfoDownload {
			b.Fatalf("EnsurePresent = %v, %q", ok, info)
		}
		d := time.Since(start)
		cache.Remove(sum)
		return d
	}
	b.ResetTimer()
	for range b.N {
		best := bestOf(b, 3, floor, agent)
		b.ReportMetric(mibPerSec(best[1]), "MiB/s")
		b.ReportMetric(mibPerSec(best[0]), "floor-MiB/s")
		b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "x-floor")
	}
}

// BenchmarkFileCacheServe fetches a 200 MiB result from /filecache/<sha1>;
// the floor is net/http's plain http.FileServer on the same file.
func BenchmarkFileCacheServe(b *testing.B) {
	dir := b.TempDir()
	src, _ := benchFile(b, dir)
	cache, err := OpenFileCache(filepath.Join(dir, "cache"))
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	sum, err := cache.StoreFile(src)
	if err != nil {
		b.Fatal(err)
	}
	os.Remove(src)
	ours := httptest.NewServer(cache.Handler(nil))
	defer ours.Close()
	plain := httptest.NewServer(http.FileServer(http.Dir(cache.Dir())))
	defer plain.Close()

	fetch := func(url string) func() time.Duration {
		return func() time.Duration {
			start := time.Now()
			resp, err := http.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != benchFileSize || resp.StatusCode != 200 {
				b.Fatalf("GET %s: %d bytes, %d, %v", url, n, resp.StatusCode, err)
			}
			return time.Since(start)
		}
	}
	b.ResetTimer()
	for range b.N {
		best := bestOf(b, 5, fetch(plain.URL+"/"+sum), fetch(ours.URL+"/filecache/"+sum))
		b.ReportMetric(mibPerSec(best[1]), "MiB/s")
		b.ReportMetric(mibPerSec(best[0]), "floor-MiB/s")
		b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "x-floor")
	}
}

// BenchmarkIdleRSS starts the real daemon (built here), lets it answer one
// status() call, waits, and reads its resident memory. Target: < 20 MB.
// The floor is a minimal net/http server answering the same request,
// measured the same way.
func BenchmarkIdleRSS(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "buildd-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/buildd-agent").CombinedOutput(); err != nil {
		b.Fatalf("cannot build buildd-agent: %v\n%s", err, out)
	}
	floorDir := filepath.Join(dir, "floor")
	os.Mkdir(floorDir, 0o755)
	os.WriteFile(filepath.Join(floorDir, "go.mod"), []byte("module floor\n"), 0o644)
	os.WriteFile(filepath.Join(floorDir, "main.go"), []byte(floorServer), 0o644)
	floorBin := filepath.Join(dir, "floor-server")
	build := exec.Command("go", "build", "-o", floorBin, ".")
	build.Dir = floorDir
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("cannot build the floor server: %v\n%s", err, out)
	}
	config := filepath.Join(dir, "c.toml")
	b.ResetTimer()
	for range b.N {
		port := freeBenchPort(b)
		os.WriteFile(config, fmt.Appendf(nil, "[builder]\nport = %d\nstate_dir = %q\nbackend = \"chroot\"\n", port, filepath.Join(dir, "state")), 0o644)
		rss, anon := idleRSS(b, port, bin, "run", "--config", config)
		port = freeBenchPort(b)
		floorRSS, _ := idleRSS(b, port, floorBin, fmt.Sprint(port))
		b.ReportMetric(float64(rss)/1e6, "MB-RSS")
		b.ReportMetric(float64(anon)/1e6, "MB-anon")
		b.ReportMetric(float64(floorRSS)/1e6, "floor-MB-RSS")
		b.ReportMetric(float64(rss)/float64(floorRSS), "x-floor")
		b.ReportMetric(float64(rss)/20e6, "x-target")
	}
}

// floorServer is the smallest HTTP server answering POST /rpc.
const floorServer = `package main

import (
	"io"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/rpc", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, "<?xml version='1.0'?><methodResponse><params><param><value><string>ok</string></value></param></params></methodResponse>")
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
`

func freeBenchPort(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// idleRSS starts a server, waits until it answers a status() call, lets it
// settle, and returns its VmRSS and RssAnon in bytes.
//
// VmRSS includes the executable's mapped pages (shared, clean page cache,
// mapped 64 KiB around each touched page); RssAnon is what the process
// itself holds.
func idleRSS(b *testing.B, port int, bin string, args ...string) (rss, anon int64) {
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/rpc", port)
	for i := 0; ; i++ {
		resp, err := http.Post(url, "text/xml", strings.NewReader(statusCall))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		if i > 1000 {
			b.Fatalf("%s does not answer: %v", bin, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	rss, err := procStatus(cmd.Process.Pid, "VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	anon, err = procStatus(cmd.Process.Pid, "RssAnon")
	if err != nil {
		b.Fatal(err)
	}
	return rss, anon
}

const statusCall = `<?xml version="1.0"?><methodCall><methodName>status</methodName><params/></methodCall>`

// procStatus reads a size field (VmRSS, RssAnon...) of /proc/PID/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

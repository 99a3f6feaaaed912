package agent

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rssBuild is a way of building the daemon and its floor.
type rssBuild struct {
	name  string   // metric prefix ("" for the shipped build)
	env   []string // added to the environment of go build
	flags []string // go build flags
}

// rssBuilds: the Debian package's binary (make deb: pure Go, static PIE,
// stripped); `make build`'s, which the README's `make run` starts (pure
// Go, not PIE, not stripped); and the .deb's without PIE, which shows what
// PIE costs (the
// dynamic loader writes its relocations into 2 MB of read-only-after-start
// data, which so becomes anonymous memory, and its 2 MB relocation table
// stays mapped). Each is measured beside a floor built the same way.
var rssBuilds = []rssBuild{
	{"", []string{"CGO_ENABLED=0"}, []string{"-trimpath", "-buildvcs=false", "-buildmode=pie", "-ldflags=-s -w"}},
	{"makebuild-", []string{"CGO_ENABLED=0"}, []string{"-trimpath"}},
	{"nopie-", []string{"CGO_ENABLED=0"}, []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}},
}

// rssRounds: each side runs this many times, interleaved, and the median
// (by VmRSS) is reported.
//
// Before each run the executable's pages are dropped from the page cache,
// so that it is read from disk as when a daemon starts at boot. How many
// pages a fault maps depends on the page cache: a file the linker has just
// written can sit in 2 MB folios, and then a fault maps 2 MB at once (for
// make build's binary that was 2–3 MB more RSS than the same file read
// from disk).
const rssRounds = 3

// BenchmarkIdleRSS starts the real daemon, `buildd-agent run --config`, on
// the embedded default configuration with a temporary state directory,
// loopback ports and an instance name of its own (backend LXD, as shipped:
// when LXD is not there the agent serves without it, and the benchmark
// says so), lets it answer one status() call, waits for it to settle, and
// reads its resident memory as ps and top show it: VmRSS, which counts the
// executable's pages mapped from the page cache (RssFile) as well as the
// memory the process itself holds (RssAnon). Target: < 20 MB.
//
// The floor is a minimal net/http server answering the same request, built
// the same way and measured the same way, so the ratio says how much the
// agent adds to what any Go HTTP daemon costs.
func BenchmarkIdleRSS(b *testing.B) {
	dir := b.TempDir()
	floorDir := filepath.Join(dir, "floor")
	os.Mkdir(floorDir, 0o755)
	os.WriteFile(filepath.Join(floorDir, "go.mod"), []byte("module floor\n"), 0o644)
	os.WriteFile(filepath.Join(floorDir, "main.go"), []byte(floorServer), 0o644)
	type bins struct{ agent, floor string }
	built := make([]bins, len(rssBuilds))
	for i, bld := range rssBuilds {
		built[i] = bins{filepath.Join(dir, bld.name+"buildd-agent"), filepath.Join(dir, bld.name+"floor-server")}
		goBuild(b, bld, "../cmd/buildd-agent", built[i].agent, "")
		goBuild(b, bld, ".", built[i].floor, floorDir)
	}
	config := filepath.Join(dir, "c.toml")
	b.ResetTimer()
	for range b.N {
		lxdUp := true
		for i, bld := range rssBuilds {
			var agent, floor []rssSample
			for range rssRounds {
				port := freeBenchPort(b)
				os.WriteFile(config, fmt.Appendf(nil, "[builder]\nport = %d\nstate_dir = %q\n[proxy]\nport = %d\n[lxd]\ninstance = \"rssbench\"\n",
					port, filepath.Join(dir, "state"), freeBenchPort(b)), 0o644)
				dropPageCache(b, built[i].agent)
				s, log := idleRSS(b, port, built[i].agent, "run", "--config", config)
				agent = append(agent, s)
				if strings.Contains(log, "build targets unavailable") {
					lxdUp = false
				}
				port = freeBenchPort(b)
				dropPageCache(b, built[i].floor)
				s, _ = idleRSS(b, port, built[i].floor, strconv.Itoa(port))
				floor = append(floor, s)
			}
			a, f := medianRSS(agent), medianRSS(floor)
			p := bld.name
			b.ReportMetric(float64(a.rss)/1e6, p+"MB-RSS")
			b.ReportMetric(float64(a.anon)/1e6, p+"MB-anon")
			b.ReportMetric(float64(a.file)/1e6, p+"MB-file")
			b.ReportMetric(float64(f.rss)/1e6, p+"floor-MB-RSS")
			b.ReportMetric(float64(f.anon)/1e6, p+"floor-MB-anon")
			b.ReportMetric(float64(f.file)/1e6, p+"floor-MB-file")
			b.ReportMetric(float64(a.rss)/float64(f.rss), p+"x-floor")
			b.ReportMetric(float64(a.rss)/20e6, p+"x-target")
		}
		if !lxdUp {
			b.Log("LXD is not available here: the agent was measured without its LXD backend set up")
		}
	}
}

// goBuild builds pkg (in dir, "" for the test's) into out the way bld says.
func goBuild(b *testing.B, bld rssBuild, pkg, out, dir string) {
	b.Helper()
	cmd := exec.Command("go", append(append([]string{"build"}, bld.flags...), "-o", out, pkg)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), bld.env...)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s %v: %v\n%s", pkg, bld.flags, err, o)
	}
}

// dropPageCache writes path out and drops its pages from the page cache
// (they are not mapped: the previous run has exited).
func dropPageCache(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatalf("fadvise %s: %v", path, err)
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

// rssSample is one process's resident memory in bytes: VmRSS, and its
// anonymous and file-backed parts.
type rssSample struct{ rss, anon, file int64 }

func medianRSS(s []rssSample) rssSample {
	s = slices.Clone(s)
	slices.SortFunc(s, func(x, y rssSample) int { return int(x.rss - y.rss) })
	return s[len(s)/2]
}

// idleRSS starts a server, waits until it answers a status() call, lets it
// settle, reads its resident memory, stops it with SIGTERM (the agent
// removes what it set up: firewall rules on the LXD bridge) and returns the
// sample and what the server wrote on stderr.
func idleRSS(b *testing.B, port int, bin string, args ...string) (rssSample, string) {
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() string {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		return stderr.String()
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/rpc", port)
	for i := 0; ; i++ {
		resp, err := http.Post(url, "text/xml", strings.NewReader(statusCall))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		if i > 1000 {
			b.Fatalf("%s does not answer: %v\n%s", bin, err, stop())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	var s rssSample
	for _, f := range []struct {
		name string
		v    *int64
	}{{"VmRSS", &s.rss}, {"RssAnon", &s.anon}, {"RssFile", &s.file}} {
		v, err := procStatus(cmd.Process.Pid, f.name)
		if err != nil {
			stop()
			b.Fatal(err)
		}
		*f.v = v
	}
	return s, stop()
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

package proxy

// The setup the proxy benchmarks share: squid with basic auth, the builder
// proxy alone in a child process, a bare relay beside it, and the CPU and
// latency figures each side is measured with.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/squidtest"
)

type benchWorld struct {
	squid    *squidtest.Server
	squidPid int
	auth     string // Proxy-Authorization for squid direct
	proxy    *proxyProcess
	haproxy  *haproxyProcess // nil when haproxy is not installed
}

func newBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	s := squidtest.Start(b, squidtest.Options{Users: map[string]string{testUser: testPass}})
	w := &benchWorld{
		squid: s, proxy: startProxyProcess(b, s.URL(testUser)),
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass)),
	}
	pid, err := os.ReadFile(filepath.Join(s.Dir, "squid.pid"))
	if err != nil {
		b.Fatalf("squid's pid: %v", err)
	}
	w.squidPid, _ = strconv.Atoi(strings.TrimSpace(string(pid)))
	w.haproxy = startHAProxy(b, s.Addr, w.auth)
	return w
}

// cpuSnap is the CPU time used so far by the parties of a run.
type cpuSnap struct{ proxy, squid, self, haproxy time.Duration }

func (w *benchWorld) cpu() cpuSnap {
	return cpuSnap{proxy: w.proxy.cpu(), squid: procCPU(w.proxy.b, w.squidPid), self: selfCPU(), haproxy: w.haproxy.cpu(w.proxy.b)}
}

func (s cpuSnap) sub(o cpuSnap) cpuSnap {
	return cpuSnap{proxy: s.proxy - o.proxy, squid: s.squid - o.squid, self: s.self - o.self, haproxy: s.haproxy - o.haproxy}
}

func (s cpuSnap) add(o cpuSnap) cpuSnap {
	return cpuSnap{proxy: s.proxy + o.proxy, squid: s.squid + o.squid, self: s.self + o.self, haproxy: s.haproxy + o.haproxy}
}

// procCPU is a process's user+system CPU time (all threads) from
// /proc/PID/stat, in USER_HZ (10 ms) ticks: runs last seconds.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// selfCPU is this process's CPU time (the clients and the origin).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latencies collects per-request times; p returns a percentile.
type latencies []time.Duration

func (l latencies) p(pct int) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*pct/100)]
}

func µs(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// proxyProcess is the builder proxy alone in a child process (this test
// binary running TestHelperProxyProcess), so that its CPU time and memory
// are its own, not the benchmark clients'. Its access lines go to a file,
// as a build log's do.
type proxyProcess struct {
	b     *testing.B
	url   string
	addr  string
	relay string // a bare TCP relay to squid in the same process: the cost of any extra hop
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startProxyProcess(b *testing.B, upstream string) *proxyProcess {
	b.Helper()
	args := []string{"-test.run=^TestHelperProxyProcess$", "-test.bench=^$"}
	if prof := os.Getenv("BUILDD_PROXY_BENCH_CPUPROFILE"); prof != "" {
		// Profile the proxy process alone: BUILDD_PROXY_BENCH_CPUPROFILE=/tmp/p.prof
		args = append(args, "-test.cpuprofile="+prof)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "BUILDD_PROXY_HELPER_UPSTREAM="+upstream,
		"BUILDD_PROXY_HELPER_LOG="+filepath.Join(b.TempDir(), "build.log"))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pp := &proxyProcess{b: b, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	if !pp.out.Scan() || !strings.HasPrefix(pp.out.Text(), "http://") {
		b.Fatalf("helper: %q", pp.out.Text())
	}
	pp.url = pp.out.Text()
	pp.addr = hostPortOf(pp.url)
	if !pp.out.Scan() || !strings.HasPrefix(pp.out.Text(), "relay ") {
		b.Fatalf("helper: %q", pp.out.Text())
	}
	pp.relay = strings.TrimPrefix(pp.out.Text(), "relay ")
	return pp
}

// stats returns the helper's heap in use, goroutines and VmRSS (kB).
func (pp *proxyProcess) stats() (heap, goroutines, rss int64) {
	io.WriteString(pp.stdin, "stats\n")
	if !pp.out.Scan() {
		pp.b.Fatal("helper died")
	}
	fmt.Sscan(pp.out.Text(), &heap, &goroutines, &rss)
	return
}

// cpu is the helper's user+system CPU time so far.
func (pp *proxyProcess) cpu() time.Duration { return procCPU(pp.b, pp.cmd.Process.Pid) }

// raiseNoFile lifts the soft RLIMIT_NOFILE to need (up to the hard limit).
func raiseNoFile(b *testing.B, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Cur >= need {
		return
	}
	rl.Cur = min(need, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < need {
		b.Fatalf("RLIMIT_NOFILE %d < %d and cannot raise it: %v", rl.Cur, need, err)
	}
}

// TestHelperProxyProcess is the builder proxy alone in a process of its
// own, for the benchmarks: it prints its URL and a bare relay's address,
// then answers "stats" lines on stdin until EOF.
func TestHelperProxyProcess(t *testing.T) {
	if os.Getenv("BUILDD_PROXY_HELPER_UPSTREAM") == "" {
		t.Skip("helper process for the proxy benchmarks")
	}
	var log io.Writer
	if path := os.Getenv("BUILDD_PROXY_HELPER_LOG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		defer f.Close()
		log = f
	}
	p, err := Start(context.Background(), Config{Upstream: os.Getenv("BUILDD_PROXY_HELPER_UPSTREAM"), ListenAddr: "127.0.0.1:0", Log: log})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println(p.URL())
	fmt.Println("relay " + startRelay(p.up.hostPort))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println(memStats())
	}
	p.Stop(context.Background())
}

// startRelay forwards every connection to upstream byte for byte (splice
// both ways, half-closes passed on): the least an extra hop can cost.
func startRelay(upstream string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					c.Close()
					return
				}
				done := make(chan struct{})
				go func() {
					io.Copy(u, c)
					u.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(c, u)
				c.(*net.TCPConn).CloseWrite()
				<-done
				c.Close()
				u.Close()
			}()
		}
	}()
	return l.Addr().String()
}

// memStats: "heapInuseBytes goroutines vmRSSkB".
func memStats() string {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return fmt.Sprintf("%d %d %d", ms.HeapInuse, runtime.NumGoroutine(), vmRSS())
}

func vmRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

package proxy

// Benchmarks of the builder proxy against floors measured in the same run:
// the same client talking to the same squid directly (what a build tool able
// to authenticate would get). They need squid; run with
//
//	go test -run '^$' -bench . -benchtime 1x ./proxy
//
// Each benchmark does its own inner rounds so that b.N=1 gives a figure.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/squidtest"
)

type benchWorld struct {
	squid *squidtest.Server
	auth  string // Proxy-Authorization for squid direct
	proxy *proxyProcess
}

func newBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	s := squidtest.Start(b, squidtest.Options{Users: map[string]string{testUser: testPass}})
	return &benchWorld{
		squid: s, proxy: startProxyProcess(b, s.URL(testUser)),
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass)),
	}
}

// proxyProcess is the builder proxy alone in a child process (this test
// binary running TestHelperProxyProcess), so that its CPU time and memory
// are its own, not the benchmark clients'.
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
	cmd.Env = append(os.Environ(), "BUILDD_PROXY_HELPER_UPSTREAM="+upstream)
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
func (pp *proxyProcess) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pp.cmd.Process.Pid))
	if err != nil {
		pp.b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// sourceServer: a client sends an 8-byte big-endian length, the server
// sends that many bytes and closes.
func sourceServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	chunk := make([]byte, 1<<20)
	io.ReadFull(patternReader(1, int64(len(chunk))), chunk)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [8]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				n := int64(binary.BigEndian.Uint64(hdr[:]))
				for n > 0 {
					m := min(n, int64(len(chunk)))
					if _, err := c.Write(chunk[:m]); err != nil {
						return
					}
					n -= m
				}
			}()
		}
	}()
	return l.Addr().String()
}

// tunnelRead opens a CONNECT tunnel through proxyAddr and reads n bytes.
func tunnelRead(b *testing.B, proxyAddr, auth, target string, n int64) time.Duration {
	start := time.Now()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(c, "Proxy-Authorization: %s\r\n", auth)
	}
	io.WriteString(c, "\r\n")
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("CONNECT via %s: %v %v", proxyAddr, err, resp)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	c.Write(hdr[:])
	got, err := io.Copy(io.Discard, br)
	if err != nil || got != n {
		b.Fatalf("tunnel via %s: read %d of %d: %v", proxyAddr, got, n, err)
	}
	return time.Since(start)
}

// BenchmarkConnectThroughput: one CONNECT tunnel, client → builder proxy →
// squid → origin, against client → squid → origin.
func BenchmarkConnectThroughput(b *testing.B) {
	w := newBenchWorld(b)
	src := sourceServer(b)
	const size = 256 << 20
	const rounds = 5
	var best [3]time.Duration
	var cpu [3]time.Duration
	for i := 0; i < b.N; i++ {
		// Interleaved rounds, best of each: the machine's other load hits all.
		for round := 0; round < rounds; round++ {
			for k, via := range []struct{ addr, auth string }{
				{w.squid.Addr, w.auth}, {w.proxy.relay, w.auth}, {w.proxy.addr, ""},
			} {
				cpu0 := w.proxy.cpu()
				d := tunnelRead(b, via.addr, via.auth, src, size)
				cpu[k] += w.proxy.cpu() - cpu0
				if best[k] == 0 || d < best[k] {
					best[k] = d
				}
			}
		}
	}
	rate := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }
	gib := float64(b.N*rounds*size) / (1 << 30)
	b.ReportMetric(rate(best[0]), "MiB/s-squid-direct")
	b.ReportMetric(rate(best[1]), "MiB/s-via-bare-relay")
	b.ReportMetric(rate(best[2]), "MiB/s-via-proxy")
	b.ReportMetric(rate(best[2])/rate(best[0]), "x-floor")
	b.ReportMetric(rate(best[2])/rate(best[1]), "x-bare-relay")
	// CPU spent in the helper process per GiB (splice): load-independent.
	b.ReportMetric(float64(cpu[2].Milliseconds())/gib, "proxy-CPU-ms/GiB")
	b.ReportMetric(float64(cpu[1].Milliseconds())/gib, "relay-CPU-ms/GiB")
}

// BenchmarkSmallGETs: requests/s for 100-byte GETs with 1, 16 and 256
// concurrent keep-alive clients, via the builder proxy against squid direct.
func BenchmarkSmallGETs(b *testing.B) {
	w := newBenchWorld(b)
	body := strings.Repeat("x", 100)
	origin := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, body)
	}))
	defer origin.Close()
	direct, _ := url.Parse(w.squid.URL(testUser))
	via, _ := url.Parse(w.proxy.url)
	relay, _ := url.Parse("http://" + w.proxy.relay)
	relay.User = direct.User
	for _, conc := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("clients=%d", conc), func(b *testing.B) {
			total := 1000
			if conc > 1 {
				total = 3000
			}
			run := func(pu *url.URL) float64 {
				tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: conc, MaxIdleConns: conc, DisableCompression: true}
				defer tr.CloseIdleConnections()
				cl := &http.Client{Transport: tr}
				get := func() {
					resp, err := cl.Get(origin.URL + "/small")
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n != 100 {
						b.Fatalf("via %s: %s %d bytes", pu.Host, resp.Status, n)
					}
				}
				// Warm the connections up.
				var wg sync.WaitGroup
				for range conc {
					wg.Add(1)
					go func() { defer wg.Done(); get() }()
				}
				wg.Wait()
				var left atomic.Int64
				left.Store(int64(total))
				start := time.Now()
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for left.Add(-1) >= 0 {
							get()
						}
					}()
				}
				wg.Wait()
				return float64(total) / time.Since(start).Seconds()
			}
			var best [3]float64
			var cpu [3]time.Duration
			const rounds = 4
			for i := 0; i < b.N; i++ {
				// Interleaved rounds, best of each: the machine's other load hits all.
				for round := 0; round < rounds; round++ {
					for k, pu := range []*url.URL{direct, relay, via} {
						cpu0 := w.proxy.cpu()
						best[k] = max(best[k], run(pu))
						cpu[k] += w.proxy.cpu() - cpu0
					}
				}
			}
			reqs := float64(b.N * rounds * (total + conc))
			b.ReportMetric(best[0], "req/s-squid-direct")
			b.ReportMetric(best[1], "req/s-via-bare-relay")
			b.ReportMetric(best[2], "req/s-via-proxy")
			b.ReportMetric(best[2]/best[0], "x-floor")
			b.ReportMetric(best[2]/best[1], "x-bare-relay")
			// CPU spent in the helper process per request (warm-up included).
			b.ReportMetric(float64(cpu[2].Microseconds())/reqs, "proxy-CPU-µs/req")
			b.ReportMetric(float64(cpu[1].Microseconds())/reqs, "relay-CPU-µs/req")
		})
	}
}

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
// own, for BenchmarkIdleTunnels to measure its memory: it prints its URL,
// then answers "stats" lines on stdin until EOF.
func TestHelperProxyProcess(t *testing.T) {
	if os.Getenv("BUILDD_PROXY_HELPER_UPSTREAM") == "" {
		t.Skip("helper process for BenchmarkIdleTunnels")
	}
	p, err := Start(context.Background(), Config{Upstream: os.Getenv("BUILDD_PROXY_HELPER_UPSTREAM"), ListenAddr: "127.0.0.1:0"})
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

// BenchmarkIdleTunnels: 1000 concurrent idle CONNECT tunnels through the
// builder proxy (in its own process) and squid, each checked with an echo
// when opened and again after all are open; reports the proxy's memory.
func BenchmarkIdleTunnels(b *testing.B) {
	const tunnels = 1000
	raiseNoFile(b, 8192)
	s := squidtest.Start(b, squidtest.Options{Users: map[string]string{testUser: testPass}})
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	pp := startProxyProcess(b, s.URL(testUser))
	proxyAddr, stats := pp.addr, pp.stats
	ping := func(c net.Conn, br *bufio.Reader, i int) error {
		msg := fmt.Sprintf("ping %d\n", i)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			return fmt.Errorf("echo %q: %v", got, err)
		}
		return nil
	}
	for i := 0; i < b.N; i++ {
		// Warm up: one tunnel, then baseline.
		conns := make([]net.Conn, tunnels)
		readers := make([]*bufio.Reader, tunnels)
		heap0, g0, rss0 := stats()
		var failed atomic.Int64
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for t := range tunnels {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := net.Dial("tcp", proxyAddr)
				if err != nil {
					failed.Add(1)
					return
				}
				fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo.Addr(), echo.Addr())
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
				if err != nil || resp.StatusCode != 200 || ping(c, br, t) != nil {
					failed.Add(1)
					c.Close()
					return
				}
				conns[t], readers[t] = c, br
			}()
		}
		wg.Wait()
		time.Sleep(500 * time.Millisecond) // let the proxy settle
		heap1, g1, rss1 := stats()
		for t, c := range conns {
			if c != nil && ping(c, readers[t], t) != nil {
				failed.Add(1)
			}
		}
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		if f := failed.Load(); f > 0 {
			b.Fatalf("%d of %d tunnels failed", f, tunnels)
		}
		b.ReportMetric(tunnels, "tunnels-ok")
		b.ReportMetric(float64(rss1-rss0)/1024, "MiB-RSS-delta")
		b.ReportMetric(float64(rss1-rss0)/tunnels, "KiB-RSS/tunnel")
		b.ReportMetric(float64(heap1-heap0)/tunnels/1024, "KiB-heap/tunnel")
		b.ReportMetric(float64(rss1)/1024, "MiB-RSS-total")
		b.ReportMetric(float64(g1-g0)/tunnels, "goroutines/tunnel")
	}
}

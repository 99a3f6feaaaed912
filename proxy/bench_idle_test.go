package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/squidtest"
)

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

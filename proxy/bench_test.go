package proxy

// Benchmarks of the builder proxy against floors measured in the same run:
// the same client talking to the same squid (basic auth) directly, which is
// what a build tool able to authenticate would get. They need squid; run
//
//	go test -run '^$' -bench . -benchtime 1x ./proxy
//
// Each benchmark does its own inner rounds so that b.N=1 gives a figure;
// the sides (squid direct, a bare relay, the builder proxy, and HAProxy
// as a TCP relay and as an HTTP proxy when it is installed) alternate
// within every round so that the machine's other load hits all of them.
//
// What the metrics mean:
//
//	ratio-to-squid        best rate via the proxy / best rate direct to squid (goal ≥ 0.9)
//	ratio-relay-to-squid  the same for a bare byte relay: what any extra hop costs
//	ratio-haproxy-{tcp,http}-to-squid
//	                      the same for HAProxy in front of squid, as a TCP relay (splice)
//	                      and as an HTTP proxy adding squid's credentials with
//	                      pooled keep-alive connections (the builder proxy's job):
//	                      what a mature C event-loop proxy gets on the same machine
//	p50-µs-*, p99-µs-*    latency of one request (GETs) or one tunnel set-up (CONNECT)
//	*-cpu-µs/req, *-cpu-ms/GiB
//	                      CPU time (user+system, from /proc/PID/stat and getrusage)
//	                      per request or per GiB of: the proxy process, squid and the
//	                      client+origin process, in the direct runs (squid, client)
//	                      and the proxy runs (proxy); load-independent
//	cpu-bound-ratio       (squid+client CPU direct) / (squid+client+proxy CPU via the
//	                      proxy): the ratio when the 2 cores, not latency, are the limit

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	io.WriteString(c, req+"\r\n")
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

// side is one way of reaching squid.
type side struct {
	name       string
	addr, auth string // CONNECT
	url        *url.URL
}

func (w *benchWorld) sides() []side {
	direct, _ := url.Parse(w.squid.URL(testUser))
	via, _ := url.Parse(w.proxy.url)
	relay, _ := url.Parse("http://" + w.proxy.relay)
	relay.User = direct.User
	sides := []side{
		{name: "direct", addr: w.squid.Addr, auth: w.auth, url: direct},
		{name: "relay", addr: w.proxy.relay, auth: w.auth, url: relay},
		{name: "proxy", addr: w.proxy.addr, url: via},
	}
	if w.haproxy == nil {
		return sides
	}
	return append(sides,
		side{name: "haproxy-tcp", addr: w.haproxy.tcp, auth: w.auth, url: &url.URL{Scheme: "http", Host: w.haproxy.tcp, User: direct.User}},
		side{name: "haproxy-http", addr: w.haproxy.http, url: &url.URL{Scheme: "http", Host: w.haproxy.http}})
}

const (
	sideDirect = iota
	sideRelay
	sideProxy
	sideHAProxyTCP  // when haproxy is installed
	sideHAProxyHTTP // when haproxy is installed
	nSides
)

// haproxySides are the indices of the HAProxy sides in sides: none when
// haproxy is not installed.
func haproxySides(sides []side) []int {
	if len(sides) < nSides {
		return nil
	}
	return []int{sideHAProxyTCP, sideHAProxyHTTP}
}

// reportCPU reports the CPU cost per unit of work and the CPU-bound ratio.
func reportCPU(b *testing.B, sides []side, cpu [nSides]cpuSnap, units float64, scale time.Duration, unit string) {
	per := func(d time.Duration) float64 { return float64(d) / float64(scale) / units }
	d, p := cpu[sideDirect], cpu[sideProxy]
	b.ReportMetric(per(p.proxy), "proxy-cpu-"+unit)
	b.ReportMetric(per(cpu[sideRelay].proxy), "relay-cpu-"+unit)
	b.ReportMetric(per(d.squid), "squid-cpu-"+unit)
	b.ReportMetric(per(d.self), "client-cpu-"+unit)
	for _, k := range haproxySides(sides) {
		b.ReportMetric(per(cpu[k].haproxy), sides[k].name+"-cpu-"+unit)
	}
	if all := p.proxy + p.squid + p.self; all > 0 {
		b.ReportMetric(float64(d.squid+d.self)/float64(all), "cpu-bound-ratio")
	}
}

// BenchmarkConnectThroughput: one CONNECT tunnel reading 256 MiB,
// client → builder proxy → squid → origin, against client → squid →
// origin; then the set-up latency of small tunnels (connect, CONNECT,
// 200, 100 bytes back) on each side.
func BenchmarkConnectThroughput(b *testing.B) {
	w := newBenchWorld(b)
	src := sourceServer(b)
	sides := w.sides()
	const size = 256 << 20
	const rounds = 5
	const setups = 300
	var best [nSides]time.Duration
	var cpu [nSides]cpuSnap
	var setup [nSides]latencies
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			for k, s := range sides {
				c0 := w.cpu()
				d := tunnelRead(b, s.addr, s.auth, src, size)
				cpu[k] = cpu[k].add(w.cpu().sub(c0))
				if best[k] == 0 || d < best[k] {
					best[k] = d
				}
			}
		}
		for range setups {
			for k, s := range sides {
				setup[k] = append(setup[k], tunnelRead(b, s.addr, s.auth, src, 100))
			}
		}
	}
	rate := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }
	b.ReportMetric(rate(best[sideDirect]), "MiB/s-squid-direct")
	b.ReportMetric(rate(best[sideRelay]), "MiB/s-via-bare-relay")
	b.ReportMetric(rate(best[sideProxy]), "MiB/s-via-proxy")
	b.ReportMetric(rate(best[sideProxy])/rate(best[sideDirect]), "ratio-to-squid")
	b.ReportMetric(rate(best[sideRelay])/rate(best[sideDirect]), "ratio-relay-to-squid")
	for _, k := range haproxySides(sides) {
		b.ReportMetric(rate(best[k])/rate(best[sideDirect]), "ratio-"+sides[k].name+"-to-squid")
	}
	reportCPU(b, sides, cpu, float64(b.N*rounds*size)/(1<<30), time.Millisecond, "ms/GiB")
	b.ReportMetric(µs(setup[sideDirect].p(50)), "p50-µs-direct")
	b.ReportMetric(µs(setup[sideDirect].p(99)), "p99-µs-direct")
	b.ReportMetric(µs(setup[sideProxy].p(50)), "p50-µs-proxy")
	b.ReportMetric(µs(setup[sideProxy].p(99)), "p99-µs-proxy")
}

// BenchmarkSmallGETs: requests/s for 100-byte GETs with 1, 16 and 64
// concurrent keep-alive clients, via the builder proxy against squid
// direct, with per-request latency and CPU.
func BenchmarkSmallGETs(b *testing.B) {
	w := newBenchWorld(b)
	body := strings.Repeat("x", 100)
	origin := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, body)
	}))
	defer origin.Close()
	sides := w.sides()
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", conc), func(b *testing.B) {
			total := 1500
			if conc > 1 {
				total = 4000
			}
			run := func(pu *url.URL) (float64, latencies) {
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
				lat := make([]latencies, conc)
				start := time.Now()
				for g := range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						l := make(latencies, 0, 2*total/conc)
						for left.Add(-1) >= 0 {
							t0 := time.Now()
							get()
							l = append(l, time.Since(t0))
						}
						lat[g] = l
					}()
				}
				wg.Wait()
				rate := float64(total) / time.Since(start).Seconds()
				var all latencies
				for _, l := range lat {
					all = append(all, l...)
				}
				return rate, all
			}
			var best [nSides]float64
			var cpu [nSides]cpuSnap
			var lat [nSides]latencies
			const rounds = 4
			for i := 0; i < b.N; i++ {
				for round := 0; round < rounds; round++ {
					for k, s := range sides {
						c0 := w.cpu()
						r, l := run(s.url)
						cpu[k] = cpu[k].add(w.cpu().sub(c0))
						best[k] = max(best[k], r)
						lat[k] = append(lat[k], l...)
					}
				}
			}
			b.ReportMetric(best[sideDirect], "req/s-squid-direct")
			b.ReportMetric(best[sideRelay], "req/s-via-bare-relay")
			b.ReportMetric(best[sideProxy], "req/s-via-proxy")
			b.ReportMetric(best[sideProxy]/best[sideDirect], "ratio-to-squid")
			b.ReportMetric(best[sideRelay]/best[sideDirect], "ratio-relay-to-squid")
			for _, k := range haproxySides(sides) {
				b.ReportMetric(best[k]/best[sideDirect], "ratio-"+sides[k].name+"-to-squid")
			}
			// Per request, warm-up included.
			reportCPU(b, sides, cpu, float64(b.N*rounds*(total+conc)), time.Microsecond, "µs/req")
			b.ReportMetric(µs(lat[sideDirect].p(50)), "p50-µs-direct")
			b.ReportMetric(µs(lat[sideDirect].p(99)), "p99-µs-direct")
			b.ReportMetric(µs(lat[sideProxy].p(50)), "p50-µs-proxy")
			b.ReportMetric(µs(lat[sideProxy].p(99)), "p99-µs-proxy")
		})
	}
}

package proxy

// HAProxy beside the builder proxy in the benchmarks: an independent,
// mature event-loop proxy written in C, in front of the same squid, so
// that what one more hop costs on this machine is measured with a program
// that is not ours.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

type haproxyProcess struct {
	tcp  string // mode tcp, splice: a relay to squid
	http string // mode http: adds squid's Proxy-Authorization, reuses connections
	pid  int
}

// startHAProxy starts haproxy with one thread (as the builder proxy's
// benchmark helper gets the same 2 cores, more threads only add wake-ups),
// or returns nil when it is not installed.
func startHAProxy(b *testing.B, squidAddr, auth string) *haproxyProcess {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Log("haproxy not installed: no HAProxy sides (tests/setup.sh installs it)")
		return nil
	}
	h := &haproxyProcess{tcp: freeLoopbackAddr(b), http: freeLoopbackAddr(b)}
	cfg := fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tcp
  mode tcp
  option splice-auto
  bind %[1]s
  default_backend squid-tcp
backend squid-tcp
  mode tcp
  option splice-auto
  server squid %[3]s
frontend http
  mode http
  option http-keep-alive
  bind %[2]s
  http-request set-header Proxy-Authorization "%[4]s"
  default_backend squid-http
backend squid-http
  mode http
  http-reuse always
  server squid %[3]s
`, h.tcp, h.http, squidAddr, auth)
	path := filepath.Join(b.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("cannot start haproxy: %v", err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h.pid = cmd.Process.Pid
	for _, addr := range []string{h.tcp, h.http} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("haproxy does not listen on %s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return h
}

// cpu is haproxy's user+system CPU time so far (0 without haproxy).
func (h *haproxyProcess) cpu(b *testing.B) time.Duration {
	if h == nil {
		return 0
	}
	return procCPU(b, h.pid)
}

// freeLoopbackAddr is a loopback address nobody listens on right now.
func freeLoopbackAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

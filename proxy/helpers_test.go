package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/squidtest"
)

// The job's credentials in tests: characters that need percent-encoding in
// a URL, to check that the Basic credentials are the decoded ones.
const (
	testUser = "buildjob-1234"
	testPass = "s3cr3t+t0k/en:w@rd%x"
)

// patternReader yields a deterministic pseudo-random stream.
func patternReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(&prng{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, n)
}

type prng struct{ r *rand.Rand }

func (p *prng) Read(b []byte) (int, error) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := p.r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for ; i < len(b); i++ {
		b[i] = byte(p.r.Uint32())
	}
	return len(b), nil
}

func hashOf(r io.Reader) (string, int64) {
	h := sha256.New()
	n, _ := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n
}

// originHandler is the test origin behind squid:
//
//	GET  /size/N     N pattern bytes (seed N) with Content-Length
//	GET  /chunked/N  the same without Content-Length (chunked)
//	POST /echo       "sha256 length transfer-encoding" of the request body
//	GET  /headers    the request headers as received, one "Name: value" a line
//	GET  /ws         WebSocket handshake (101) then echoes raw bytes
func originHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/size/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.PathValue("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, patternReader(uint64(n), n))
	})
	mux.HandleFunc("/chunked/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.PathValue("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.(http.Flusher).Flush()
		io.Copy(w, patternReader(uint64(n), n))
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		sum, n := hashOf(r.Body)
		fmt.Fprintf(w, "%s %d %s", sum, n, strings.Join(r.TransferEncoding, ","))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Hop-Resp")
		w.Header().Set("X-Hop-Resp", "must not reach the client")
		w.Header().Set("X-End-To-End", "kept")
		for name, vs := range r.Header {
			for _, v := range vs {
				fmt.Fprintf(w, "%s: %s\n", name, v)
			}
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !isWebSocket(r.Header) {
			http.Error(w, "not a websocket handshake", http.StatusBadRequest)
			return
		}
		key := r.Header.Get("Sec-WebSocket-Key")
		h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(h[:]))
		rw.Flush()
		buf := make([]byte, 4096)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				rw.Write(buf[:n])
				rw.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	return mux
}

// world is one test's real setup: origins, an authenticated squid in front
// of them, a revocation endpoint, and the builder proxy with its logs.
type world struct {
	t          *testing.T
	origin     *httptest.Server
	tlsOrigin  *httptest.Server
	squid      *squidtest.Server
	upstream   string // proxy_url
	revocation *revocationServer
	buildLog   *testenv.SyncBuffer
	agentLog   *testenv.SyncBuffer
	proxy      *Proxy
}

type revocationServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string // "METHOD Authorization"
}

func (r *revocationServer) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func newRevocationServer(t testing.TB) *revocationServer {
	rs := &revocationServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.calls = append(rs.calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		rs.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rs.Close)
	return rs
}

func newOrigins(t testing.TB) (*httptest.Server, *httptest.Server) {
	origin := httptest.NewServer(originHandler())
	tlsOrigin := httptest.NewTLSServer(originHandler())
	// Silence "TLS handshake error" noise from probes.
	tlsOrigin.Config.ErrorLog = slogDiscardLog()
	t.Cleanup(origin.Close)
	t.Cleanup(tlsOrigin.Close)
	return origin, tlsOrigin
}

// newWorld starts everything; cfg tweaks the proxy's config before Start.
func newWorld(t *testing.T, tweak func(*Config)) *world {
	t.Helper()
	w := &world{t: t, buildLog: &testenv.SyncBuffer{}, agentLog: &testenv.SyncBuffer{}}
	w.origin, w.tlsOrigin = newOrigins(t)
	w.squid = squidtest.Start(t, squidtest.Options{Users: map[string]string{testUser: testPass, "other": "other-secret-9876"}})
	w.upstream = w.squid.URL(testUser)
	w.revocation = newRevocationServer(t)
	cfg := Config{
		Upstream:           w.upstream,
		RevocationEndpoint: w.revocation.URL + "/tokens/" + testUser,
		ListenAddr:         "127.0.0.1:0",
		Log:                w.buildLog,
		Logger:             slog.New(slog.NewTextHandler(w.agentLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy = p
	t.Cleanup(func() {
		p.Stop(context.Background())
		w.checkNoSecrets()
		if t.Failed() {
			t.Logf("build log:\n%s\nagent log:\n%s\nsquid cache.log:\n%s", w.buildLog, w.agentLog, tail(w.squid.CacheLog(), 3000))
		}
	})
	return w
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkNoSecrets: no form of the job's credentials in either log.
func (w *world) checkNoSecrets() {
	w.t.Helper()
	for _, s := range w.proxy.Secrets() {
		for name, log := range map[string]string{"build log": w.buildLog.String(), "agent log": w.agentLog.String()} {
			if strings.Contains(log, s) {
				w.t.Errorf("%s contains the secret %q", name, s)
			}
		}
	}
}

// client is an HTTP client using the builder proxy, trusting the TLS origin.
func (w *world) client() *http.Client {
	pu, _ := url.Parse(w.proxy.URL())
	tr := w.tlsOrigin.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(pu)
	tr.DisableCompression = true
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func slogDiscardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// rawConnect opens a CONNECT tunnel through proxyAddr and returns the
// connection after the answer, with any bytes read past it.
func rawConnect(t testing.TB, proxyAddr, target, auth string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rawconnect\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(c, "Proxy-Authorization: %s\r\n", auth)
	}
	io.WriteString(c, "\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s via %s: %v", target, proxyAddr, err)
	}
	return c, br, resp
}

func hostPortOf(rawURL string) string {
	u, _ := url.Parse(rawURL)
	return u.Host
}

type urlURL = url.URL

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

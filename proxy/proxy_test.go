package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Bodies of 64 KiB and 100 MiB go both ways byte for byte through
// client → builder proxy → squid (basic auth) → origin.
func TestBodiesThroughSquid(t *testing.T) {
	w := newWorld(t, nil)
	cl := w.client()
	sizes := []int64{64 << 10, 100 << 20}
	for _, n := range sizes {
		for _, path := range []string{"size", "chunked"} {
			t.Run(fmt.Sprintf("GET %s %d", path, n), func(t *testing.T) {
				resp, err := cl.Get(fmt.Sprintf("%s/%s/%d", w.origin.URL, path, n))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %s", resp.Status)
				}
				got, gotN := hashOf(resp.Body)
				want, _ := hashOf(patternReader(uint64(n), n))
				if got != want || gotN != n {
					t.Fatalf("got %d bytes sha256 %s, want %d bytes %s", gotN, got, n, want)
				}
			})
		}
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("POST %d chunked=%v", n, chunked), func(t *testing.T) {
				var body io.Reader = patternReader(uint64(n+1), n)
				req, _ := http.NewRequest(http.MethodPost, w.origin.URL+"/echo", body)
				if chunked {
					req.ContentLength = -1
					req.Body = io.NopCloser(body) // hide the length: chunked
				} else {
					req.ContentLength = n
				}
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				want, _ := hashOf(patternReader(uint64(n+1), n))
				fields := strings.Fields(string(b))
				if resp.StatusCode != 200 || len(fields) < 2 || fields[0] != want || fields[1] != fmt.Sprint(n) {
					t.Fatalf("status %s, origin saw %q, want %s %d", resp.Status, b, want, n)
				}
				if chunked && (len(fields) < 3 || fields[2] != "chunked") {
					t.Errorf("origin did not receive a chunked body: %q", b)
				}
			})
		}
	}
	// One access line per request, in the reference's format.
	lines := strings.Split(strings.TrimSpace(w.buildLog.String()), "\n")
	re := regexp.MustCompile(`^\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(GET|POST) http://127\.0\.0\.1:\d+/\S+ HTTP/1\.1" 200 \d+ "-" "Go-http-client/1\.1"$`)
	if len(lines) != 8 {
		t.Errorf("%d access lines, want 8:\n%s", len(lines), w.buildLog)
	}
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("access line %q does not match %s", l, re)
		}
	}
	if !strings.Contains(w.buildLog.String(), fmt.Sprintf(" 200 %d ", 100<<20)) {
		t.Errorf("no access line with %d bytes:\n%s", 100<<20, w.buildLog)
	}
}

func TestConnectToHTTPSOrigin(t *testing.T) {
	w := newWorld(t, nil)
	cl := w.client()
	for i := 0; i < 2; i++ {
		resp, err := cl.Get(w.tlsOrigin.URL + "/size/100000")
		if err != nil {
			t.Fatal(err)
		}
		got, n := hashOf(resp.Body)
		resp.Body.Close()
		want, _ := hashOf(patternReader(100000, 100000))
		if resp.StatusCode != 200 || got != want || n != 100000 {
			t.Fatalf("status %s, %d bytes, hash ok %v", resp.Status, n, got == want)
		}
	}
	cl.Transport.(*http.Transport).CloseIdleConnections()
	// The tunnel's access line is written when it closes.
	waitFor(t, func() bool {
		return strings.Contains(w.buildLog.String(), `"CONNECT `+hostPortOf(w.tlsOrigin.URL)+` HTTP/1.1" 200 `)
	}, w.buildLog.String)
}

func waitFor(t *testing.T, cond func() bool, show func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met; state:\n%s", show())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	w := newWorld(t, nil)
	c, err := net.Dial("tcp", hostPortOf(w.proxy.URL()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		w.origin.URL, hostPortOf(w.origin.URL))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake answer %s %v", resp.Status, resp.Header)
	}
	for _, msg := range []string{"hello over the upgraded connection", strings.Repeat("x", 10000)} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo: %v %q", err, truncate(string(buf), 40))
		}
	}
	c.Close()
	waitFor(t, func() bool { return strings.Contains(w.buildLog.String(), `/ws HTTP/1.1" 101 `) }, w.buildLog.String)
}

func TestWrongCredentialsReachClientAs407(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Upstream = strings.Replace(c.Upstream, "s3cr3t", "wrong", 1) })
	resp, err := w.client().Get(w.origin.URL + "/size/10")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("plain HTTP: status %s, want 407", resp.Status)
	}
	_, _, cresp := rawConnect(t, hostPortOf(w.proxy.URL()), hostPortOf(w.tlsOrigin.URL), "")
	body, _ := io.ReadAll(cresp.Body)
	if cresp.StatusCode != http.StatusProxyAuthRequired || len(body) == 0 {
		t.Errorf("CONNECT: status %s body %d bytes, want squid's 407 page", cresp.Status, len(body))
	}
	waitFor(t, func() bool {
		return strings.Count(w.buildLog.String(), `" 407 `) == 2
	}, w.buildLog.String)
}

func TestUpstreamDownGives502(t *testing.T) {
	// A port nothing listens on.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	w := newWorld(t, func(c *Config) { c.Upstream = "http://" + testUser + ":" + "s3cr3t%2Bt0k%2Fen%3Aw%40rd%25x@" + dead })
	resp, err := w.client().Get(w.origin.URL + "/size/10?token=qt0ken&n=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), dead) {
		t.Errorf("plain HTTP: %s %q, want 502 naming %s", resp.Status, body, dead)
	}
	// The page names what the client asked for (goproxy empties
	// RequestURI), without a token in its query.
	if want := "GET " + w.origin.URL + "/size/10?token=xxxxx&n=1 "; !strings.Contains(string(body), want) {
		t.Errorf("plain HTTP 502 body %q does not name the target (want %q)", body, want)
	}
	if strings.Contains(string(body)+w.agentLog.String(), "qt0ken") {
		t.Errorf("the query token is in the 502 body or the agent log: %q", body)
	}
	_, _, cresp := rawConnect(t, hostPortOf(w.proxy.URL()), "example.invalid:443", "")
	cbody, _ := io.ReadAll(cresp.Body)
	if cresp.StatusCode != http.StatusBadGateway || !strings.Contains(string(cbody), dead) {
		t.Errorf("CONNECT: %s %q, want 502 naming %s", cresp.Status, cbody, dead)
	}
	for _, s := range w.proxy.Secrets() {
		if strings.Contains(string(body)+string(cbody), s) {
			t.Errorf("a 502 body contains the secret %q", s)
		}
	}
	waitFor(t, func() bool {
		return strings.Count(w.buildLog.String(), `" 502 `) == 2 && strings.Count(w.agentLog.String(), "upstream proxy failed") == 2
	}, func() string { return w.buildLog.String() + w.agentLog.String() })
}

func TestRevocationExactlyOnce(t *testing.T) {
	w := newWorld(t, nil)
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass))
	if err := w.proxy.CutOff(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.proxy.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.proxy.Stop(context.Background())
	calls := w.revocation.Calls()
	if len(calls) != 1 || calls[0] != "DELETE /tokens/"+testUser+" "+wantAuth {
		t.Fatalf("revocation calls %q, want one DELETE with %q", calls, wantAuth)
	}
	if got := strings.Count(w.buildLog.String(), "Revoking proxy token...\n"); got != 1 {
		t.Errorf("%d \"Revoking proxy token...\" lines in the build log:\n%s", got, w.buildLog)
	}
}

func TestStopRevokesAndClosesTunnels(t *testing.T) {
	w := newWorld(t, nil)
	c, br, resp := rawConnect(t, hostPortOf(w.proxy.URL()), hostPortOf(w.origin.URL), "")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	if err := w.proxy.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Error("tunnel still open after Stop")
	}
	if n := len(w.revocation.Calls()); n != 1 {
		t.Errorf("%d revocations, want 1", n)
	}
	if _, err := net.DialTimeout("tcp", hostPortOf(w.proxy.URL()), time.Second); err == nil {
		t.Error("still listening after Stop")
	}
}

func TestCutOffRefusesFurtherRequests(t *testing.T) {
	w := newWorld(t, nil)
	cl := w.client()
	resp, err := cl.Get(w.origin.URL + "/size/10")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("before cut-off: %v %v", err, resp)
	}
	resp.Body.Close()
	if err := w.proxy.CutOff(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The same keep-alive connection and a new one are both refused.
	for i := 0; i < 2; i++ {
		resp, err = cl.Get(w.origin.URL + "/size/10")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("after cut-off: %s, want 403", resp.Status)
		}
	}
	_, _, cresp := rawConnect(t, hostPortOf(w.proxy.URL()), hostPortOf(w.tlsOrigin.URL), "")
	if cresp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT after cut-off: %s, want 403", cresp.Status)
	}
	if n := len(w.revocation.Calls()); n != 1 {
		t.Errorf("%d revocations at cut-off, want 1", n)
	}
}

func TestKeepAliveToClients(t *testing.T) {
	w := newWorld(t, nil)
	cl := w.client()
	reused := 0
	for i := 0; i < 5; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", w.origin.URL+"/size/1000", nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if reused != 4 {
		t.Errorf("client connection reused %d times out of 4", reused)
	}
}

func TestRefusesClientsNotAllowed(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.AllowedClients = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")} })
	get := func(local string) (*http.Response, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		cl := w.client()
		cl.Transport.(*http.Transport).DialContext = d.DialContext
		return cl.Get(w.origin.URL + "/size/10")
	}
	if resp, err := get("127.0.0.1"); err == nil {
		resp.Body.Close()
		t.Errorf("client from 127.0.0.1 served: %s", resp.Status)
	}
	resp, err := get("127.0.0.2")
	if err != nil {
		t.Fatalf("client from 127.0.0.2: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("client from 127.0.0.2: %s", resp.Status)
	}
	if !strings.Contains(w.agentLog.String(), "refused a connection") {
		t.Errorf("refusal not in the agent log:\n%s", w.agentLog)
	}
}

// Hop-by-hop headers never cross the proxy; squid would drop most of them
// too, so this looks at what the builder proxy itself sends and answers,
// with a recording upstream in squid's place.
func TestHopByHopHeaders(t *testing.T) {
	var got http.Header
	var gotURI string
	fake := newRecordingUpstream(t, func(r *http.Request) { got, gotURI = r.Header.Clone(), r.RequestURI })
	p, err := Start(context.Background(), Config{Upstream: "http://" + testUser + ":s3cr3t%2Bt0k%2Fen%3Aw%40rd%25x@" + fake, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	c, err := net.Dial("tcp", hostPortOf(p.URL()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET http://origin.test:8080/path?q=1 HTTP/1.1\r\nHost: origin.test:8080\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"+
		"Upgrade: h2c\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n"+
		"Accept-Encoding: gzip\r\nX-End-To-End: yes\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotURI != "http://origin.test:8080/path?q=1" {
		t.Errorf("upstream got request-target %q", gotURI)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass))
	if got.Get("Proxy-Authorization") != wantAuth {
		t.Errorf("upstream got Proxy-Authorization %q, want %q", got.Get("Proxy-Authorization"), wantAuth)
	}
	for _, h := range []string{"X-Hop", "Keep-Alive", "Te", "Trailer", "Upgrade", "Proxy-Connection"} {
		if v := got.Values(h); len(v) > 0 {
			t.Errorf("upstream got hop-by-hop %s: %q", h, v)
		}
	}
	if got.Get("X-End-To-End") != "yes" || got.Get("Accept-Encoding") != "gzip" {
		t.Errorf("end-to-end headers lost: %v", got)
	}
	if resp.Header.Get("X-Hop-Resp") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("response headers: %v", resp.Header)
	}
	if resp.Close {
		t.Error("client connection not kept alive")
	}
}

// newRecordingUpstream is a fake upstream proxy: it answers every request
// itself with hop-by-hop headers that must not reach the client.
func newRecordingUpstream(t *testing.T, seen func(*http.Request)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen(r)
		w.Header().Set("Connection", "X-Hop-Resp")
		w.Header().Set("X-Hop-Resp", "1")
		w.Header().Set("Keep-Alive", "timeout=1")
		w.Header().Set("X-Kept", "yes")
		io.WriteString(w, "ok")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// A server that speaks first (ssh, smtp): its banner may arrive in the same
// read as squid's "200 Connection established" and must not be lost.
func TestConnectServerSpeaksFirst(t *testing.T) {
	w := newWorld(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	banner := "SSH-2.0-OpenSSH_9.2 test banner\r\n"
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				io.WriteString(c, banner)
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	for i := 0; i < 20; i++ {
		c, br, resp := rawConnect(t, hostPortOf(w.proxy.URL()), l.Addr().String(), "")
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %s", resp.Status)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil || line != banner {
			t.Fatalf("attempt %d: banner %q, %v", i, line, err)
		}
		io.WriteString(c, "ping\n")
		if l2, err := br.ReadString('\n'); err != nil || l2 != "ping\n" {
			t.Fatalf("echo %q %v", l2, err)
		}
		c.Close()
	}
}

// Two builds' proxies, each with its own credentials, side by side.
func TestNoSharedStateBetweenProxies(t *testing.T) {
	w := newWorld(t, nil)
	other, err := Start(context.Background(), Config{
		Upstream: w.squid.URL("other"), RevocationEndpoint: w.revocation.URL + "/tokens/other", ListenAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Proxy{w.proxy, other} {
		cl := w.client()
		cl.Transport.(*http.Transport).Proxy = func(*http.Request) (*urlURL, error) { return parseURL(p.URL()) }
		resp, err := cl.Get(w.origin.URL + "/size/10")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p.URL(), err, resp)
		}
		resp.Body.Close()
	}
	other.Stop(context.Background())
	w.proxy.Stop(context.Background())
	calls := w.revocation.Calls()
	want := []string{
		"DELETE /tokens/other Basic " + base64.StdEncoding.EncodeToString([]byte("other:other-secret-9876")),
		"DELETE /tokens/" + testUser + " Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass)),
	}
	if len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Errorf("revocations %q, want %q", calls, want)
	}
	// squid writes its access line when the transaction ends, maybe late.
	waitFor(t, func() bool {
		log := w.squid.AccessLog()
		return strings.Contains(log, " other ") && strings.Contains(log, " "+testUser+" ")
	}, w.squid.AccessLog)
}

// git through GIT_PROXY_COMMAND sends its request, half-closes, then reads
// the pack. squid drops a tunnel whose client half-closes (shown here as
// the floor), so the builder proxy keeps the upstream side open.
func TestConnectClientHalfClose(t *testing.T) {
	w := newWorld(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				time.Sleep(200 * time.Millisecond) // the client's FIN arrives first
				io.WriteString(c, "reply to "+line)
			}()
		}
	}()
	fetch := func(proxyAddr, auth string) string {
		c, br, resp := rawConnect(t, proxyAddr, l.Addr().String(), auth)
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT via %s: %s", proxyAddr, resp.Status)
		}
		io.WriteString(c, "want pack\n")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(br)
		return string(got)
	}
	direct := fetch(w.squid.Addr, "Basic "+base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass)))
	t.Logf("squid direct after a client half-close: %q", direct)
	if got := fetch(hostPortOf(w.proxy.URL()), ""); got != "reply to want pack\n" {
		t.Errorf("via the builder proxy after a client half-close: %q", got)
	}
}

// A client that closes while the server waits for its end: the server
// learns it once the tunnel was idle for halfCloseIdle.
func TestConnectClientGoneServerWaiting(t *testing.T) {
	w := newWorld(t, nil)
	w.proxy.up.halfCloseIdle.Store(int64(300 * time.Millisecond))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ended := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c) // until EOF
		c.Close()
		close(ended)
	}()
	c, _, resp := rawConnect(t, hostPortOf(w.proxy.URL()), l.Addr().String(), "")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	io.WriteString(c, "bye\n")
	c.Close()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the server never saw the end of the tunnel")
	}
	waitFor(t, func() bool {
		return strings.Contains(w.buildLog.String(), `"CONNECT `+l.Addr().String()+` HTTP/1.1" 200 `)
	}, w.buildLog.String)
}

package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/google/go-cmp/cmp"
)

// newTestAgent is a real Agent (real file cache and build log in a
// temporary directory) behind a real HTTP server.
func newTestAgent(t *testing.T, mutate func(*Config)) (*Agent, *httptest.Server) {
	t.Helper()
	cfg := &Config{}
	cfg.Builder.Architectures = []string{"amd64"}
	cfg.Builder.StateDir = t.TempDir()
	cfg.Builder.AbortTimeout.Duration = 5 * time.Second
	cfg.Limits.RequestBodyBytes = 64 << 10
	if mutate != nil {
		mutate(cfg)
	}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(tLogWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return a, srv
}

// rpcPost is the build master's side of one call.
func rpcPost(t *testing.T, url, method string, params ...any) (any, error) {
	t.Helper()
	body, err := AppendRequest(nil, method, params...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: HTTP %s", method, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	return DecodeResponse(resp.Body)
}

func TestHTTPSurface(t *testing.T) {
	_, srv := newTestAgent(t, nil)
	for _, path := range []string{"/rpc", "/rpc/", "/rpc/anything/below"} {
		v, err := rpcPost(t, srv.URL+path, "echo", "x")
		if err != nil || !cmp.Equal(v, any([]any{"x"})) {
			t.Errorf("%s: echo = %v, %v", path, v, err)
		}
	}
	for _, method := range []string{"GET", "PUT", "HEAD"} {
		req, _ := http.NewRequest(method, srv.URL+"/rpc", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s /rpc: %s, Allow %q", method, resp.Status, resp.Header.Get("Allow"))
		}
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /: %s", resp.Status)
	}
}

func TestHTTPFaults(t *testing.T) {
	a, srv := newTestAgent(t, nil)
	defer func() {
		rec := httptest.NewRecorder()
		a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, want := range []string{
			`buildd_agent_rpc_calls_total{method="unknown",outcome="fault"} 4`,
			`buildd_agent_rpc_calls_total{method="status",outcome="fault"} 1`,
			`buildd_agent_rpc_calls_total{method="ensurepresent",outcome="fault"} 1`,
		} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	}()
	tests := []struct {
		name, body string
		code       int
		msg        string
	}{
		{"unknown method", rpcCallDoc("nope", ""), 8001, "procedure nope not found"},
		{"malformed", "<methodCall>", 8002, "Can't deserialize input: "},
		{"garbage", "\x00\x01binary", 8002, "Can't deserialize input: "},
		{"entity", "<!DOCTYPE a [<!ENTITY b SYSTEM 'file:///etc/passwd'>]><methodCall><methodName>echo</methodName><params><param><value>&b;</value></param></params></methodCall>",
			8002, "Can't deserialize input: DOCTYPE"},
		{"wrong arity", rpcCallDoc("status", rpcParam("x")), 8002, "status: takes no parameters, got 1"},
		{"wrong type", rpcCallDoc("ensurepresent", rpcParam("<int>1</int>")+rpcParam("<nil/>")+rpcParam("<nil/>")+rpcParam("<nil/>")), 8002,
			"ensurepresent: parameter 1 (sha1sum) must be a string, got int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/rpc", "text/xml", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			_, err = DecodeResponse(resp.Body)
			f := faultOf(t, err)
			if f.Code != tt.code || !strings.HasPrefix(f.String, tt.msg) {
				t.Errorf("fault %d %q, want %d %q…", f.Code, f.String, tt.code, tt.msg)
			}
		})
	}
}

func TestHTTPBodyLimit(t *testing.T) {
	_, srv := newTestAgent(t, func(c *Config) { c.Limits.RequestBodyBytes = 1000 })
	big := rpcCallDoc("echo", rpcParam(strings.Repeat("x", 2000)))
	// With a Content-Length, and chunked (no length known in advance).
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(strings.NewReader(big))
		}
		req, _ := http.NewRequest("POST", srv.URL+"/rpc", body)
		if chunked {
			req.ContentLength = -1
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked=%v: %s, want 413", chunked, resp.Status)
		}
	}
	// Just under the limit is fine.
	ok := rpcCallDoc("echo", rpcParam(strings.Repeat("x", 800)))
	if v, err := rpcPost(t, srv.URL+"/rpc", "echo", strings.Repeat("x", 800)); err != nil || len(ok) > 1000 {
		t.Errorf("echo under the limit: %v, %v", v, err)
	}
}

func TestHTTPMethodPanicIsAFault(t *testing.T) {
	h := &rpcHandler{
		methods:  map[string]method{"boom": func(*http.Request, []any) (any, error) { panic("kaboom") }},
		maxBody:  1 << 20,
		logError: func(string, ...any) {},
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	_, err := rpcPost(t, srv.URL, "boom")
	if f := faultOf(t, err); f.Code != 8002 || f.String != "boom: internal error" {
		t.Errorf("fault = %v", f)
	}
	h.methods["bad"] = func(*http.Request, []any) (any, error) { return make(chan int), nil }
	_, err = rpcPost(t, srv.URL, "bad")
	if f := faultOf(t, err); f.Code != 8002 || !strings.HasPrefix(f.String, "Can't serialize output: ") {
		t.Errorf("fault = %v", f)
	}
}

// A whole build through HTTP with the real file cache and build log.
func TestAgentBuildOverHTTP(t *testing.T) {
	a, srv := newTestAgent(t, nil)
	rpc := srv.URL + "/rpc"
	registerManager(t, "fake", func(req builders.Request) *funcManager {
		return &funcManager{run: func(ctx context.Context, env *builders.Env) builders.Result {
			fmt.Fprintln(env.Log, "proxy is http://user:s3cr3t-pw@proxy.test:3128/")
			fmt.Fprintln(env.Log, "token tok-abcdef1234 in use")
			if _, err := env.AddWaitingFile("hello.snap", strings.NewReader("snap contents")); err != nil {
				panic(err)
			}
			env.SetStatus("revision_id", "cafe")
			return builders.Result{Status: builders.BuildOK}
		}}
	})
	// The chroot must be in the cache: serve it and ensurepresent it.
	chroot := []byte("chroot bytes")
	lib := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(chroot) }))
	defer lib.Close()
	v, err := rpcPost(t, rpc, "ensurepresent", sumOf(chroot), lib.URL+"/chroot.tar.gz", "", "")
	if err != nil || !cmp.Equal(v, any([]any{true, "Download"})) {
		t.Fatalf("ensurepresent = %v, %v", v, err)
	}
	args := map[string]any{"series": "noble", "build_url": "https://lp.test/b/1", "api_token": "tok-abcdef1234"}
	v, err = rpcPost(t, rpc, "build", "SNAPBUILD-1", "fake", sumOf(chroot), map[string]any{}, args)
	if err != nil || !cmp.Equal(v, any([]any{BuilderBuilding, "SNAPBUILD-1"})) {
		t.Fatalf("build = %v, %v", v, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var st map[string]any
	for {
		v, err := rpcPost(t, rpc, "status")
		if err != nil {
			t.Fatal(err)
		}
		st = v.(map[string]any)
		if st["builder_status"] == BuilderWaiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	sum := sumOf([]byte("snap contents"))
	want := map[string]any{"builder_status": BuilderWaiting, "builder_version": Version, "build_id": "SNAPBUILD-1",
		"build_status": "BuildStatus.OK", "filemap": map[string]any{"hello.snap": sum}, "dependencies": "", "revision_id": "cafe"}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Fatalf("status (-want +got):\n%s", diff)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/filecache/" + sum); code != 200 || body != "snap contents" {
		t.Errorf("result: %d %q", code, body)
	}
	code, buildlog := get("/filecache/buildlog")
	if code != 200 || !strings.HasPrefix(buildlog, "https://lp.test/b/1\n") || strings.Contains(buildlog, "s3cr3t-pw") || strings.Contains(buildlog, "tok-abcdef1234") {
		t.Errorf("build log: %d %q", code, buildlog)
	}
	v, err = rpcPost(t, rpc, "clean")
	if err != nil || v != BuilderIdle {
		t.Fatalf("clean = %v, %v", v, err)
	}
	if code, _ := get("/filecache/" + sum); code != 404 {
		t.Errorf("result still served after clean: %d", code)
	}
	if code, _ := get("/filecache/" + sumOf(chroot)); code != 200 {
		t.Errorf("chroot gone after clean: %d", code)
	}
	_ = a
	code, metrics := get("/metrics")
	for _, want := range []string{
		`buildd_agent_rpc_calls_total{method="build",outcome="ok"} 1`,
		`buildd_agent_rpc_calls_total{method="ensurepresent",outcome="ok"} 1`,
		`buildd_agent_rpc_calls_total{method="clean",outcome="ok"} 1`,
		`buildd_agent_builds_total{manager="fake",status="BuildStatus.OK"} 1`,
		`buildd_agent_building 0`,
		`buildd_agent_info{version="` + Version + `"} 1`,
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (HTTP %d) lacks %s", code, want)
		}
	}
}

func TestServeShutdown(t *testing.T) {
	cfg := &Config{}
	cfg.Builder.Architectures = []string{"amd64"}
	cfg.Builder.StateDir = t.TempDir()
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	if v, err := rpcPost(t, "http://"+ln.Addr().String()+"/rpc", "echo"); err != nil || !cmp.Equal(v, any([]any{})) {
		t.Errorf("echo = %v, %v", v, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if err := a.Close(); err != nil {
		t.Error(err)
	}
	if _, err := New(&Config{}, Options{}); err == nil {
		t.Error("New with no architectures succeeded")
	}
}

// buildd-manager's Twisted xmlrpc.Proxy speaks HTTP/1.0, one connection
// per call: the server must answer and close.
func TestHTTP10ConnectionPerCall(t *testing.T) {
	_, srv := newTestAgent(t, nil)
	body, _ := AppendRequest(nil, "status")
	for range 3 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /rpc HTTP/1.0\r\nUser-Agent: Twisted/XMLRPClib\r\nHost: %s\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s",
			strings.TrimPrefix(srv.URL, "http://"), len(body), body)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		raw, err := io.ReadAll(conn) // until the server closes
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		head, payload, ok := strings.Cut(string(raw), "\r\n\r\n")
		if !ok || !strings.HasPrefix(head, "HTTP/1.0 200 OK") || !strings.Contains(head, "Content-Type: text/xml; charset=utf-8") {
			t.Fatalf("response head: %q", head)
		}
		v, err := DecodeResponse(strings.NewReader(payload))
		if err != nil || v.(map[string]any)["builder_status"] != BuilderIdle {
			t.Errorf("status over HTTP/1.0 = %v, %v", v, err)
		}
	}
}

// A client that stops sending its body half way loses the connection; it
// does not hold a server goroutine for ever.
func TestHTTPSlowBody(t *testing.T) {
	h := &rpcHandler{methods: map[string]method{}, maxBody: 1 << 20, logError: func(string, ...any) {}, bodyTimeout: 100 * time.Millisecond}
	srv := httptest.NewServer(h)
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<methodCall>")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net, not a timing claim
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the server kept the stalled connection: %v", err)
	}
	if len(raw) > 0 && !strings.HasPrefix(string(raw), "HTTP/1.1 400") {
		t.Errorf("response to a stalled body: %q", raw)
	}
}

package agent

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// memCache is an in-memory resultCache.
type memCache struct {
	mu      sync.Mutex
	files   map[string][]byte
	removed []string
	touched map[string]int64 // ModTime per sum (0 if never set)
	// ensureGate, if set, blocks EnsurePresent until closed.
	ensureGate chan struct{}
	ensureIn   chan struct{}
}

func newMemCache() *memCache {
	return &memCache{files: map[string][]byte{}, touched: map[string]int64{}}
}

func sumOf(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

func (c *memCache) put(b []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := sumOf(b)
	c.files[sum] = b
	return sum
}

func (c *memCache) EnsurePresent(ctx context.Context, sum, url, user, password string) (bool, string) {
	if c.ensureIn != nil {
		c.ensureIn <- struct{}{}
	}
	if c.ensureGate != nil {
		select {
		case <-c.ensureGate:
		case <-ctx.Done():
			return false, "Error accessing Librarian: " + ctx.Err().Error()
		}
	}
	if c.Has(sum) {
		return true, "Cache"
	}
	if url == "" {
		return false, "No URL"
	}
	return false, "Error accessing Librarian: fake"
}

func (c *memCache) Has(sum string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.files[sum]
	return ok
}

func (c *memCache) Path(sum string) string { return "/cache/" + sum }

func (c *memCache) Store(r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	return c.put(b), nil
}

// StoreResult is Store with a limit and the cache's dedup: a file already
// there is kept and not Created.
func (c *memCache) StoreResult(r io.Reader, limit int64) (StoredFile, error) {
	if limit > 0 {
		r = io.LimitReader(r, limit+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return StoredFile{}, err
	}
	if limit > 0 && int64(len(b)) > limit {
		return StoredFile{}, ErrTooLarge
	}
	sum := sumOf(b)
	created := !c.Has(sum)
	c.put(b)
	mt, _ := c.ModTime(sum)
	return StoredFile{SHA1: sum, Size: int64(len(b)), Created: created, MTime: mt}, nil
}

// ModTime is constant for a file (the fake has no ensurepresent touches
// unless a test sets touched).
func (c *memCache) ModTime(sum string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[sum]; !ok {
		return 0, false
	}
	return c.touched[sum], true
}

func (c *memCache) Remove(sum string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removed = append(c.removed, sum)
	delete(c.files, sum)
	return nil
}

// memLog is an in-memory buildLogger.
type memLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	secrets []string
	resets  int
	removed int
}

func (l *memLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *memLog) AddSecret(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, s)
}

func (l *memLog) Tail() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return bytes.Clone(b)
}

func (l *memLog) Flush() error { return nil }

func (l *memLog) Reset() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
	l.secrets = nil
	l.resets++
	return nil
}

func (l *memLog) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
	l.removed++
	return nil
}

func (l *memLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// recTarget records KillProcesses.
type recTarget struct {
	mu     sync.Mutex
	kills  int
	killed chan struct{}
}

func (t *recTarget) Create(context.Context, target.Image) error { return nil }
func (t *recTarget) Start(context.Context) error                { return nil }
func (t *recTarget) Run(context.Context, target.Command) (int, error) {
	return 0, nil
}
func (t *recTarget) CopyIn(context.Context, io.Reader, string, int, int, fs.FileMode) error {
	return nil
}
func (t *recTarget) CopyOut(context.Context, string, io.Writer) error              { return nil }
func (t *recTarget) CopyTreeIn(context.Context, io.Reader, string, int, int) error { return nil }
func (t *recTarget) Stat(context.Context, string) (target.FileInfo, error) {
	return target.FileInfo{}, target.ErrNotExist
}
func (t *recTarget) ListDir(context.Context, string) ([]target.FileInfo, error) { return nil, nil }
func (t *recTarget) KillProcesses(context.Context) error {
	t.mu.Lock()
	t.kills++
	t.mu.Unlock()
	if t.killed != nil {
		close(t.killed)
		t.killed = nil
	}
	return nil
}
func (t *recTarget) Stop(context.Context) error   { return nil }
func (t *recTarget) Remove(context.Context) error { return nil }
func (t *recTarget) ProxyHost() string            { return "127.0.0.1" }

func (t *recTarget) killCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kills
}

// funcManager runs a function given by the test.
type funcManager struct {
	run      func(ctx context.Context, env *builders.Env) builders.Result
	useFetch bool
	endpoint string
}

func (m *funcManager) Run(ctx context.Context, env *builders.Env) builders.Result {
	return m.run(ctx, env)
}

func (m *funcManager) ProxyInfo() (bool, string) { return m.useFetch, m.endpoint }

// registerManager registers a manager tag for the test's duration. The
// factory refuses a build without a string "series", as real ones do.
func registerManager(t *testing.T, tag string, mk func(req builders.Request) *funcManager) {
	t.Helper()
	builders.Register(tag, func(req builders.Request) (builders.Manager, error) {
		if _, ok := req.Args["series"].(string); !ok {
			return nil, &builders.ArgError{Arg: "series", Reason: "missing or not a string"}
		}
		return mk(req), nil
	})
	t.Cleanup(func() { builders.Unregister(tag) })
}

type testBuilder struct {
	*Builder
	cache  *memCache
	log    *memLog
	target *recTarget
	chroot string
}

func newTestBuilder(t *testing.T, abortTimeout time.Duration) *testBuilder {
	t.Helper()
	cfg := &Config{}
	cfg.Builder.Architectures = []string{"amd64", "i386"}
	cfg.Builder.Backend = "fake"
	cfg.Builder.AbortTimeout.Duration = abortTimeout
	tb := &testBuilder{cache: newMemCache(), log: &memLog{}, target: &recTarget{}}
	tb.chroot = tb.cache.put([]byte("chroot tarball"))
	tb.Builder = newBuilder(builderDeps{
		cfg:    cfg,
		logger: slog.New(slog.NewTextHandler(tLogWriter{t}, nil)),
		cache:  tb.cache,
		log:    tb.log,
		targets: map[string]target.Factory{
			"fake": func(ctx context.Context, spec target.Spec, opts target.Options) (target.Target, error) {
				return tb.target, nil
			},
		},
	})
	t.Cleanup(func() { tb.shutdown(5 * time.Second) })
	return tb
}

// tLogWriter sends the agent log to t.Log.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// rpc calls a method the way the HTTP handler does.
func (tb *testBuilder) rpc(method string, params ...any) (any, error) {
	m, ok := tb.methods()[method]
	if !ok {
		return nil, errors.New("no such method " + method)
	}
	if params == nil {
		params = []any{}
	}
	v, err := m(httptest.NewRequest("POST", "/rpc", nil), params)
	if pre, ok := v.(preEncoded); ok {
		return DecodeResponse(bytes.NewReader(pre))
	}
	return normalise(v), err
}

// normalise turns the encoder's convenience types into what a client
// decodes, by a round trip through the codec.
func normalise(v any) any {
	if v == nil {
		return nil
	}
	doc, err := AppendResponse(nil, v)
	if err != nil {
		panic(err)
	}
	out, err := DecodeResponse(bytes.NewReader(doc))
	if err != nil {
		panic(err)
	}
	return out
}

func (tb *testBuilder) status(t *testing.T) map[string]any {
	t.Helper()
	v, err := tb.rpc("status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return v.(map[string]any)
}

// waitState waits for the builder to reach state; the bound is a safety
// net against a hang, not a timing assertion.
func (tb *testBuilder) waitState(t *testing.T, state string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for tb.State() != state {
		if time.Now().After(deadline) {
			t.Fatalf("builder is %s; still not %s", tb.State(), state)
		}
		time.Sleep(time.Millisecond)
	}
}

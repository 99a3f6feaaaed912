package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func newHealthAgent(t *testing.T, minFree int64, probes map[string]Probe) *Agent {
	t.Helper()
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.Builder.StateDir = dir
	cfg.Builder.FileCacheDir = filepath.Join(dir, "filecache")
	cfg.Builder.BuildHome = dir
	cfg.Limits.MinFreeBytes = minFree
	targets := map[string]target.Factory{"chroot": nil}
	for name := range probes {
		targets[name] = nil
	}
	a, err := New(cfg, Options{Targets: targets, Probes: probes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name     string
		minFree  int64
		probes   map[string]Probe
		method   string
		code     int
		backends map[string]bool
		errText  string
	}{
		{"healthy", 1, map[string]Probe{"lxd": func(context.Context) error { return nil }}, "GET", 200,
			map[string]bool{"lxd": true, "chroot": true}, ""},
		{"lxd down", 1, map[string]Probe{"lxd": func(context.Context) error { return errors.New("LXD does not answer: connection refused") }}, "GET", 503,
			map[string]bool{"lxd": false, "chroot": true}, "connection refused"},
		{"probe hangs", 1, map[string]Probe{"lxd": func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}, "GET", 503,
			map[string]bool{"lxd": false, "chroot": true}, "deadline"},
		{"disk short", 1 << 62, nil, "GET", 503, map[string]bool{"chroot": true}, ""},
		{"no min free", 0, nil, "HEAD", 200, map[string]bool{"chroot": true}, ""},
		{"post", 1, nil, "POST", 405, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newHealthAgent(t, tc.minFree, tc.probes)
			rec := httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, "/healthz", nil))
			if rec.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.method != "GET" {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var h Health
			if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if h.State != "IDLE" || h.Version != Version || h.Healthy != (tc.code == 200) {
				t.Errorf("health = %+v", h)
			}
			if len(h.Disk) != 2 || h.Disk[0].FreeBytes == 0 {
				t.Errorf("disk = %+v, want the file cache's and build home's free space", h.Disk)
			}
			for name, ok := range tc.backends {
				if h.Backends[name].Reachable != ok {
					t.Errorf("backend %s = %+v, want reachable %v", name, h.Backends[name], ok)
				}
			}
			if tc.errText != "" && !strings.Contains(h.Backends["lxd"].Error, tc.errText) {
				t.Errorf("lxd error %q, want %q", h.Backends["lxd"].Error, tc.errText)
			}
		})
	}
}

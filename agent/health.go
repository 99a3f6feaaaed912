package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Probe checks that a build backend can be used now (the LXD daemon
// answers); nil means it can.
type Probe func(ctx context.Context) error

// probeTimeout bounds one backend probe: a hung daemon makes /healthz
// report it unreachable rather than hang the monitor.
const probeTimeout = 5 * time.Second

// Health is what /healthz answers, for monitoring and readiness checks.
type Health struct {
	// Healthy is false when a backend is unreachable or a directory's file
	// system is short of [limits] min_free_bytes (HTTP 503 then).
	Healthy bool `json:"healthy"`
	// State is the builder's state without the "BuilderStatus." prefix.
	State   string `json:"state"`
	Version string `json:"version"`
	// Backends by name ("lxd", "chroot").
	Backends map[string]BackendHealth `json:"backends"`
	// Disk is the free space of the file cache's and build home's file
	// systems.
	Disk         []DiskHealth `json:"disk"`
	MinFreeBytes int64        `json:"min_free_bytes"`
}

// BackendHealth is one backend's probe.
type BackendHealth struct {
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// DiskHealth is the free space where one of the agent's directories is.
type DiskHealth struct {
	Path      string `json:"path"`
	FreeBytes uint64 `json:"free_bytes"`
	Error     string `json:"error,omitempty"`
}

// Health runs the probes (concurrently, each bounded) and reads the free
// space of the agent's directories.
func (a *Agent) Health(ctx context.Context) Health {
	h := Health{
		Healthy:      true,
		State:        shortState(a.builder.State()),
		Version:      Version,
		Backends:     map[string]BackendHealth{},
		MinFreeBytes: a.builder.limits.Load().MinFreeBytes,
	}
	names := make([]string, 0, len(a.targets))
	for name := range a.targets {
		names = append(names, name)
	}
	for name := range a.probes {
		if _, ok := a.targets[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		probe := a.probes[name]
		if probe == nil {
			// A backend with nothing to reach (chroot) is there when its
			// factory is.
			h.Backends[name] = BackendHealth{Reachable: true}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			bh := BackendHealth{Reachable: true}
			if err := probe(pctx); err != nil {
				bh = BackendHealth{Error: err.Error()}
			}
			mu.Lock()
			h.Backends[name] = bh
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, bh := range h.Backends {
		if !bh.Reachable {
			h.Healthy = false
		}
	}
	seen := map[string]bool{}
	for _, dir := range []string{a.cfg.Builder.FileCacheDir, a.cfg.Builder.BuildHome} {
		if dir == "" || seen[dir] {
			continue
		}
		seen[dir] = true
		d := DiskHealth{Path: dir}
		free, err := a.builder.freeSpace(dir)
		if err != nil {
			d.Error = err.Error()
			h.Healthy = false
		} else {
			d.FreeBytes = free
			if h.MinFreeBytes > 0 && free < uint64(h.MinFreeBytes) {
				h.Healthy = false
			}
		}
		h.Disk = append(h.Disk, d)
	}
	return h
}

// healthHandler serves Health as JSON: 200 when healthy, 503 otherwise,
// so that a plain HTTP check (systemd, a load balancer, Nagios) needs no
// JSON parsing.
func (a *Agent) healthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := a.Health(r.Context())
		body, err := json.MarshalIndent(h, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !h.Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write(append(body, '\n'))
	})
}

// Package agent is the builder daemon Launchpad's buildd-manager drives:
// the XML-RPC surface of launchpad-buildd on /rpc, the file cache on
// /filecache/, and the builder state machine behind them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// Options are what the command line gives the agent besides its config.
type Options struct {
	// Logger is the agent's own log (not the build log); nil discards.
	Logger *slog.Logger
	// Targets are the configured target backends by name ("lxd",
	// "chroot"); managers reach them through Env.NewTarget.
	Targets map[string]target.Factory
	// Probes check the backends' reachability for /healthz, by backend
	// name; a name without a target (LXD failed to set up) is reported
	// unreachable when its probe fails. Nil: every target is reachable.
	Probes map[string]Probe
	// Prepare, if set, is told of every file ensurepresent has (sha1,
	// path), so that a backend can start converting a chroot before
	// build() asks for it. It must return at once.
	Prepare func(sha1, path string)
}

// Agent is one builder: the HTTP server's handler, the file cache, the
// build log and the state machine.
type Agent struct {
	cfg     *Config
	logger  *slog.Logger
	cache   *FileCache
	log     *BuildLog
	builder *Builder
	metrics *metrics
	handler http.Handler
	targets map[string]target.Factory
	probes  map[string]Probe

	closeOnce sync.Once
}

// DefaultAbortTimeout is launchpad-buildd's abort watchdog.
const DefaultAbortTimeout = 120 * time.Second

// DefaultRequestBodyBytes caps an XML-RPC request when the config is silent.
const DefaultRequestBodyBytes = 1 << 20

// New opens the file cache and the build log named by cfg and makes an IDLE
// builder. It does not listen: Serve does.
func New(cfg *Config, opts Options) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("cannot create agent: no configuration")
	}
	if len(cfg.Builder.Architectures) == 0 || cfg.Builder.Architectures[0] == "" {
		return nil, errors.New("cannot create agent: [builder] architectures is empty")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cacheDir := cfg.Builder.FileCacheDir
	if cacheDir == "" {
		if cfg.Builder.StateDir == "" {
			return nil, errors.New("cannot create agent: neither [builder] state_dir nor file_cache_dir is set")
		}
		cacheDir = filepath.Join(cfg.Builder.StateDir, "filecache")
	}
	cache, err := OpenFileCache(cacheDir, WithLogger(logger), WithDownloadLimit(cfg.Limits.DownloadBytes))
	if err != nil {
		return nil, fmt.Errorf("cannot open file cache %q: %w", cacheDir, err)
	}
	// The log lives beside the cache, not in it: the cache directory
	// holds only SHA-1-named files, and the log is served from the
	// BuildLog itself as /filecache/buildlog.
	stateDir := cfg.Builder.StateDir
	if stateDir == "" {
		stateDir = filepath.Dir(cacheDir)
	}
	logPath := filepath.Join(stateDir, "buildlog")
	// The journal says whether a finished build (WAITING) survives this
	// restart, and with it its log, which must then not be truncated.
	jnl := newJournal(stateDir)
	rec := loadJournal(jnl, logger)
	openLog := OpenBuildLog
	if rec != nil && rec.State == BuilderWaiting && rec.Log == logPath {
		openLog = reopenBuildLog
	}
	blog, err := openLog(logPath, cfg.Limits.LogBytes)
	if err != nil {
		return nil, fmt.Errorf("cannot open build log %q: %w", logPath, err)
	}
	a := &Agent{
		cfg:     cfg,
		logger:  logger,
		cache:   cache,
		log:     blog,
		targets: opts.Targets,
		probes:  opts.Probes,
	}
	a.builder = newBuilder(builderDeps{
		cfg:     cfg,
		logger:  logger,
		cache:   cache,
		log:     blog,
		targets: opts.Targets,
		journal: jnl,
		prepare: opts.Prepare,
	})
	a.builder.restore(rec)
	// The restored state is the one on disk from now on (a BUILDING
	// record becomes IDLE, so that a second crash does not sweep twice).
	a.builder.persist()
	a.metrics = newMetrics(a.builder.State)
	a.builder.metrics = a.metrics
	a.handler = a.routes()
	return a, nil
}

// Handler is the agent's HTTP surface: /rpc (and anything under it, as
// with Twisted's leaf resource) and /filecache/.
func (a *Agent) Handler() http.Handler { return a.handler }

// MetricsHandler serves the agent's Prometheus metrics (also at /metrics
// on Handler), for a separate [builder] metrics_address listener.
func (a *Agent) MetricsHandler() http.Handler { return a.metrics.handler() }

// Builder is the agent's state machine (for the command line and tests).
func (a *Agent) Builder() *Builder { return a.builder }

// Serve answers HTTP on ln until ctx is cancelled, then shuts the server
// down gracefully (in-flight calls get a few seconds to finish). It
// returns nil after a shutdown caused by ctx.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// No WriteTimeout: ensurepresent legitimately takes as long as
		// the download does.
		IdleTimeout: 5 * time.Minute,
		ErrorLog:    slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	a.logger.Info("serving", "address", ln.Addr().String())
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return fmt.Errorf("cannot serve on %s: %w", ln.Addr(), err)
}

// Reload applies the values of cfg that can change while the agent runs
// (SIGHUP): [limits] result_file_bytes, result_total_bytes,
// download_bytes, min_free_bytes and [builder] shutdown_grace. The rest
// needs a restart.
func (a *Agent) Reload(cfg *Config) {
	a.builder.SetLimits(LimitsFromConfig(cfg))
	a.cache.SetDownloadLimit(cfg.Limits.DownloadBytes)
}

// Close stops a running build (its context is cancelled and its targets'
// processes killed, bounded), cancels downloads in flight and closes the
// build log (which stays in place). A restarted agent is
// IDLE, as launchpad-buildd is.
func (a *Agent) Close() error {
	var err error
	a.closeOnce.Do(func() {
		a.builder.shutdown(10 * time.Second)
		err = errors.Join(a.cache.Close(), a.log.Close())
	})
	return err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/internal/relocs"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/vcs"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

func newRunCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "Run the agent: serve /rpc and /filecache/ until SIGTERM or SIGINT",
		Long: "Run the agent daemon in the foreground. Without --config it uses the built-in\n" +
			"configuration (loopback only, state under /var/lib/buildd-agent, or under\n" +
			"$XDG_STATE_HOME for a user other than root).\n\n" +
			"SIGTERM or SIGINT stops it gracefully: it refuses new builds, waits up to\n" +
			"[builder] shutdown_grace for a running build to finish (still answering\n" +
			"status()), stops accepting connections, lets calls in flight finish, stops\n" +
			"the build if it still runs, and exits 0. A second signal kills it at once.\n" +
			"A finished build (WAITING) survives the restart. SIGHUP re-reads the\n" +
			"configuration file and applies [log] level, [limits] and shutdown_grace.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				if printProblems(cmd.ErrOrStderr(), configPath, err) {
					return errReported
				}
				return err
			}
			// The level is a LevelVar in front of the handler, so that
			// SIGHUP can change it.
			level := new(slog.LevelVar)
			level.Set(parseLevel(cfg.Log.Level))
			base := cfg.Log
			base.Level = "debug"
			logger := slog.New(levelHandler{newLogger(base, cmd.ErrOrStderr()).Handler(), level})
			// The Debian package's PIE keeps its 2 MB relocation table
			// resident for nothing once loaded (internal/relocs).
			if n, err := relocs.Release(); err != nil {
				logger.Debug("relocation table kept", "error", err)
			} else if n > 0 {
				logger.Debug("relocation table released", "bytes", n)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() {
				// After the first signal the default action is back: a
				// second one ends the process without waiting.
				<-ctx.Done()
				stop()
			}()
			reload := func() (*agent.Config, error) {
				c, err := loadConfig(configPath)
				if err != nil {
					return nil, err
				}
				level.Set(parseLevel(c.Log.Level))
				return c, nil
			}
			if err := runAgent(ctx, cfg, logger, reload); err != nil {
				logger.Error("agent failed", "error", err)
				return errReported
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "configuration file (default: the built-in configuration)")
	return cmd
}

// runAgent runs the daemon until ctx ends. reload re-reads the
// configuration on SIGHUP (nil: SIGHUP is not handled).
func runAgent(ctx context.Context, cfg *agent.Config, logger *slog.Logger, reload func() (*agent.Config, error)) error {
	b := cfg.Builder
	for _, dir := range []string{b.StateDir, b.FileCacheDir, b.BuildHome} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cannot create state directory: %w", err)
		}
	}
	// Listen first: a port in use is the most common failure, and nothing
	// else should have been started when it happens.
	addr := net.JoinHostPort(b.BindAddress, strconv.Itoa(b.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	defer ln.Close()

	// A backend that cannot be set up (LXD down, or a user without access
	// to it) does not stop the agent: like launchpad-buildd, it serves, and
	// the builds that need the backend fail with the reason.
	targets, probes, cleanupTargets, prepare, err := targetFactories(ctx, cfg, logger)
	if errors.Is(err, lxd.ErrCertificate) {
		// Wrong or untrusted certificates do not mend themselves: stop
		// here, with the reason, rather than serve a builder that fails
		// every build.
		return err
	}
	if err != nil {
		logger.Error("build targets unavailable; builds needing them will fail", "error", err)
		setupErr := err
		targets, cleanupTargets = nil, func() {}
		// /healthz reports the configured backend down, with the reason.
		probes = map[string]agent.Probe{b.Backend: func(context.Context) error { return setupErr }}
	}
	defer cleanupTargets()

	// A cache of its own for pruning, opened before the agent's: opening
	// removes temporary files, which must not be those of downloads in
	// flight. Prune only looks at complete, SHA-1-named files.
	pruneCache, err := agent.OpenFileCache(b.FileCacheDir)
	if err != nil {
		return fmt.Errorf("cannot open file cache: %w", err)
	}
	defer pruneCache.Close()

	a, err := agent.New(cfg, agent.Options{Logger: logger, Targets: targets, Probes: probes, Prepare: prepare})
	if err != nil {
		return err
	}
	defer a.Close()

	// Before the first build() can arrive: what a killed agent's build
	// left (build home, work directories, whatever managers registered)
	// would make the master's retry of the same build id fail.
	sweepStart := time.Now()
	if err := a.Sweep(ctx); err != nil {
		logger.Error("the start-up sweep left something behind", "error", err)
	}
	logger.Debug("start-up sweep", "duration", time.Since(sweepStart).String())

	// grace is [builder] shutdown_grace, as last loaded.
	var grace atomic.Int64
	grace.Store(int64(b.ShutdownGrace.Duration))
	if reload != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
				}
				sdNotify("RELOADING=1")
				c, err := reload()
				if err != nil {
					logger.Error("cannot reload the configuration; keeping the current one", "error", err)
				} else {
					a.Reload(c)
					grace.Store(int64(c.Builder.ShutdownGrace.Duration))
					logger.Info("configuration reloaded", "log_level", c.Log.Level,
						"result_file_bytes", c.Limits.ResultFileBytes, "result_total_bytes", c.Limits.ResultTotalBytes,
						"download_bytes", c.Limits.DownloadBytes, "min_free_bytes", c.Limits.MinFreeBytes,
						"shutdown_grace", c.Builder.ShutdownGrace.String())
				}
				sdNotify("READY=1")
			}
		}()
	}

	if b.FileCacheMaxAge.Duration > 0 {
		go pruneFileCache(ctx, pruneCache, b.FileCacheMaxAge.Duration, logger)
	}
	if b.GitMirrorMaxBytes > 0 {
		go pruneGitMirrors(ctx, builders.GitMirrorDir(b.StateDir), b.GitMirrorMaxBytes, logger)
	}
	if b.MetricsAddress != "" {
		stopMetrics, err := serveMetrics(b.MetricsAddress, logger)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	logger.Info("buildd-agent starting", "version", agent.Version, "address", ln.Addr().String(),
		"architectures", b.Architectures, "state_dir", b.StateDir, "backends", len(targets))
	for tag, err := range a.Builder().CheckManagers() {
		logger.Error("builds of this type will be refused until the host is fixed", "manager", tag, "error", err)
	}
	// The server runs until the build has been given its grace, not
	// until the signal: the master keeps seeing BUILDING and then WAITING.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- a.Serve(serveCtx, ln) }()
	if err := sdNotify("READY=1"); err != nil {
		logger.Warn("cannot notify systemd", "error", err)
	}
	select {
	case err := <-served:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		sdNotify("STOPPING=1")
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			a.Builder().Drain(time.Duration(grace.Load()))
		}()
		select {
		case <-drained:
		case err := <-served:
			if err != nil {
				return err
			}
		}
		logger.Info("stopping: finishing calls in flight")
		stopServing()
		if err := <-served; err != nil {
			return err
		}
	}
	logger.Info("stopping: ending any running build")
	if err := a.Close(); err != nil {
		return fmt.Errorf("cannot stop the agent cleanly: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// pruneFileCache removes cached files unused for maxAge, now and daily.
func pruneFileCache(ctx context.Context, cache *agent.FileCache, maxAge time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(24 * time.Hour)
	defer tick.Stop()
	for {
		if n, err := cache.Prune(maxAge); err != nil {
			logger.Warn("cannot prune the file cache", "error", err)
		} else if n > 0 {
			logger.Info("pruned the file cache", "removed", n, "max_age", maxAge.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pruneGitMirrors keeps the git mirror cache under maxBytes, now and daily
// (least recently used mirrors go first; one in use is skipped).
func pruneGitMirrors(ctx context.Context, dir string, maxBytes int64, logger *slog.Logger) {
	tick := time.NewTicker(24 * time.Hour)
	defer tick.Stop()
	for {
		if err := vcs.PruneMirrors(dir, maxBytes); err != nil && !errors.Is(err, os.ErrNotExist) {
			logger.Warn("cannot prune the git mirror cache", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// serveMetrics serves Prometheus metrics (Go runtime, process, and whatever
// the agent registers) on addr.
func serveMetrics(addr string, logger *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("metrics server failed", "error", err)
		}
	}()
	logger.Info("serving metrics", "address", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// sdNotify sends a state to systemd's notification socket if the unit is
// Type=notify ($NOTIFY_SOCKET set); it does nothing otherwise.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo // validated by the config
	}
	return l
}

// levelHandler filters records by a level that SIGHUP can change, in front
// of the handler newLogger makes (which is given the lowest level).
type levelHandler struct {
	h     slog.Handler
	level *slog.LevelVar
}

func (l levelHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.level.Level() && l.h.Enabled(ctx, lv)
}

func (l levelHandler) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }

func (l levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{l.h.WithAttrs(as), l.level}
}

func (l levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{l.h.WithGroup(name), l.level}
}

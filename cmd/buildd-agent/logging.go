package main

import (
	"io"
	"log/slog"

	"github.com/buildd-agent/buildd-agent/agent"
)

// newLogger makes the agent's own log per [log]: text or JSON lines on w
// (stderr: the journal under systemd, which adds its own timestamps but
// keeps ours for logs read elsewhere).
func newLogger(cfg agent.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		level = slog.LevelInfo // validated by the config; belt and braces
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

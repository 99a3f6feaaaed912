package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/agent"
)

// TestLevelHandlerReload: the level SIGHUP sets applies to the next record,
// on the handler newLogger makes and on loggers derived With attributes.
func TestLevelHandlerReload(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(parseLevel("info"))
	logger := slog.New(levelHandler{newLogger(agent.LogConfig{Level: "debug", Format: "text"}, &buf).Handler(), level})
	child := logger.With("build_id", "B-1")
	logger.Debug("hidden one")
	child.Debug("hidden two")
	logger.Info("shown one")
	level.Set(parseLevel("debug"))
	child.Debug("shown two")
	level.Set(parseLevel("error"))
	logger.Warn("hidden three")
	out := buf.String()
	for _, s := range []string{"shown one", "shown two"} {
		if !strings.Contains(out, s) {
			t.Errorf("%q missing from:\n%s", s, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("filtered records logged:\n%s", out)
	}
	if parseLevel("nonsense") != slog.LevelInfo {
		t.Errorf("an invalid level is not info")
	}
}
